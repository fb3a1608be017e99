"""Capture the machine a result was measured on.

Every benchmark result carries this record, because a latency number means nothing
without the CPU, its instruction-set extensions, the thread count, the GPU clocks
and, on a Jetson, the power mode. Every probe is best effort: a missing tool, file
or package is recorded as ``"unknown"`` and capture never raises.

The command runner and file reader are injectable (:class:`Probes`), so the parsers
can be exercised with recorded outputs from machines we do not have (a Jetson,
a workstation with nvidia-smi).
"""

from __future__ import annotations

from se_deploy.errors import first_line

import contextlib
import importlib
import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from se_deploy._util import now_iso

UNKNOWN = "unknown"
ENV_SCHEMA_VERSION = 1

# CPU features that change which kernels onnxruntime / PyTorch pick for conv and INT8 GEMMs.
# Keys are the names se-deploy reports; values are the /proc/cpuinfo spellings (x86 "flags",
# Arm "Features") that imply them.
CPU_FEATURES: dict[str, tuple[str, ...]] = {
    "sse4_2": ("sse4_2",),
    "avx": ("avx",),
    "avx2": ("avx2",),
    "fma": ("fma",),
    "f16c": ("f16c",),
    "avx512f": ("avx512f",),
    "avx512bw": ("avx512bw",),
    "avx512_vnni": ("avx512_vnni",),
    "avx512_bf16": ("avx512_bf16",),
    "avx512_fp16": ("avx512_fp16",),
    "avx_vnni": ("avx_vnni",),
    "amx_tile": ("amx_tile",),
    "amx_int8": ("amx_int8",),
    "amx_bf16": ("amx_bf16",),
    "amx_fp16": ("amx_fp16",),
    "neon": ("asimd", "neon"),
    "arm_dotprod": ("asimddp",),
    "arm_fp16": ("asimdhp", "fphp"),
    "arm_i8mm": ("i8mm",),
    "arm_bf16": ("bf16",),
    "sve": ("sve",),
}

PACKAGES = ("numpy", "torch", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxscript", "onnxsim",
            "openvino", "tensorrt", "cuda-python", "pycuda")


# --------------------------------------------------------------------------- probes
def _run_command(argv: Sequence[str], timeout: float) -> str | None:
    """Run ``argv``; return its stdout, or None if the tool is missing or fails.

    A command stopped by the timeout still returns what it printed (``tegrastats``
    streams forever, so one bounded sample is all we ask of it).
    """
    if shutil.which(argv[0]) is None and not os.path.isfile(argv[0]):
        return None
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        out = e.stdout
        if isinstance(out, bytes):
            out = out.decode("utf-8", "replace")
        return out or None
    except (OSError, ValueError):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout


def _read_file(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(1 << 20).decode("utf-8", "replace")
    except OSError:
        return None


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
    except Exception:  # a broken dist-info is reported as unknown, never raised
        return None


def _tensorrt_probe() -> dict:
    """Import tensorrt (JetPack installs it without pip metadata) and ask for DLA cores."""
    out: dict[str, Any] = {"version": UNKNOWN, "dla_cores": UNKNOWN, "import_error": None}
    try:
        trt = importlib.import_module("tensorrt")
    except Exception as e:  # ImportError, or a stub wheel failing at import time
        out["import_error"] = f"{type(e).__name__}: {first_line(e)}".rstrip(": ")
        return out
    out["version"] = str(getattr(trt, "__version__", UNKNOWN))
    try:
        runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
        out["dla_cores"] = int(runtime.num_DLA_cores)
    except Exception:  # no GPU / driver: TensorRT imports but cannot create a runtime
        pass
    return out


@dataclass(frozen=True)
class Probes:
    """How the environment is read. Tests replace these with recorded outputs."""

    run: Callable[[Sequence[str], float], str | None] = _run_command
    read: Callable[[str], str | None] = _read_file
    package_version: Callable[[str], str | None] = _package_version
    tensorrt: Callable[[], dict] = _tensorrt_probe
    ort_providers: Callable[[], list[str] | None] = field(default=lambda: _ort_providers())
    cuda: Callable[[], dict] = field(default=lambda: _cuda_probe())


def _ort_providers() -> list[str] | None:
    try:
        import onnxruntime as ort

        return list(ort.get_available_providers())
    except Exception:
        return None


# --------------------------------------------------------------------------- parsers
def parse_cpuinfo(text: str) -> dict:
    """Model name, feature flags and core counts from /proc/cpuinfo (x86 or Arm)."""
    model = None
    flags: set[str] = set()
    cores: set[tuple[str, str]] = set()
    processors = 0
    phys = core = None
    arm_part = None
    for line in text.splitlines():
        if ":" not in line:
            if phys is not None and core is not None:
                cores.add((phys, core))
            phys = core = None
            continue
        key, _, val = line.partition(":")
        key, val = key.strip().lower(), val.strip()
        if key == "processor":
            processors += 1
        elif key in ("model name", "cpu model") and not model:
            model = val
        elif key == "hardware" and not model:
            model = val
        elif key == "cpu part" and arm_part is None:
            arm_part = val
        elif key in ("flags", "features"):
            flags.update(val.split())
        elif key == "physical id":
            phys = val
        elif key == "core id":
            core = val
    if phys is not None and core is not None:
        cores.add((phys, core))
    if not model and arm_part:
        model = _ARM_PARTS.get(arm_part.lower(), f"Arm CPU part {arm_part}")
    return {
        "model": model or UNKNOWN,
        "raw_flags": sorted(flags),
        "features": {name: any(f in flags for f in spellings) for name, spellings in CPU_FEATURES.items()},
        "physical_cores": len(cores) if cores else None,
        "processors": processors or None,
    }


# Arm "CPU part" ids of cores found in Jetson / DRIVE modules.
_ARM_PARTS = {"0xd42": "Arm Cortex-A78AE", "0xd4f": "Arm Neoverse V2", "0xd41": "Arm Cortex-A78",
              "0x004": "NVIDIA Carmel", "0xd07": "Arm Cortex-A57", "0xd08": "Arm Cortex-A72"}


def parse_meminfo(text: str) -> float | None:
    m = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.M)
    return round(int(m.group(1)) / 1024**2, 2) if m else None


def available_memory_bytes() -> int | None:
    """Memory a new allocation can get without swapping: MemAvailable (free plus reclaimable cache), else free
    pages; None when neither is known."""
    text = _read_file("/proc/meminfo") or ""
    m = re.search(r"^MemAvailable:\s+(\d+)\s*kB", text, re.M)
    if m:
        return int(m.group(1)) * 1024
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _num(s: str) -> float | None:
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


_SMI_FIELDS = ("name", "driver_version", "memory.total", "clocks.sm", "clocks.mem", "clocks.max.sm",
               "clocks.max.mem", "compute_cap", "pstate", "power.limit", "temperature.gpu")


def parse_nvidia_smi_query(text: str) -> list[dict]:
    """Rows of ``nvidia-smi --query-gpu=<_SMI_FIELDS> --format=csv,noheader,nounits``."""
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 2:
            continue
        parts += [""] * (len(_SMI_FIELDS) - len(parts))
        row = dict(zip(_SMI_FIELDS, parts))

        def val(key, numeric=True):
            v = row.get(key, "")
            if not v or "N/A" in v or "Not Supported" in v or v.startswith("["):
                return UNKNOWN
            if numeric:
                n = _num(v)
                return n if n is not None else UNKNOWN
            return v

        gpus.append({
            "name": val("name", False),
            "driver": val("driver_version", False),
            "memory_total_mib": val("memory.total"),
            "sm_clock_mhz": val("clocks.sm"),
            "mem_clock_mhz": val("clocks.mem"),
            "max_sm_clock_mhz": val("clocks.max.sm"),
            "max_mem_clock_mhz": val("clocks.max.mem"),
            "compute_capability": val("compute_cap", False),
            "pstate": val("pstate", False),
            "power_limit_w": val("power.limit"),
            "temperature_c": val("temperature.gpu"),
        })
    return gpus


def parse_smi_cuda_version(text: str) -> str | None:
    m = re.search(r"CUDA Version:\s*([\d.]+)", text)
    return m.group(1) if m else None


def parse_nvcc_version(text: str) -> str | None:
    m = re.search(r"release\s+([\d.]+)", text)
    return m.group(1) if m else None


def parse_nv_tegra_release(text: str) -> str | None:
    """``# R36 (release), REVISION: 4.3, ...`` -> ``36.4.3`` (the L4T version)."""
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def parse_nvpmodel(text: str) -> dict:
    """``nvpmodel -q`` prints ``NV Power Mode: MAXN`` then the mode id."""
    name = re.search(r"NV Power Mode:\s*(\S.*)", text)
    mode_id = None
    for line in text.splitlines():
        if line.strip().isdigit():
            mode_id = int(line.strip())
    return {"name": name.group(1).strip() if name else UNKNOWN, "id": mode_id if mode_id is not None else UNKNOWN}


def parse_jetson_clocks(text: str) -> dict:
    """``jetson_clocks --show``: clocks count as locked when every CPU and the GPU run min == max."""
    cpus = []
    for m in re.finditer(r"^cpu(\d+):.*?MinFreq=(\d+)\s+MaxFreq=(\d+)\s+CurrentFreq=(\d+)", text, re.M):
        cpus.append(tuple(int(x) for x in m.groups()[1:]))
    gpu = re.search(r"^GPU\s+MinFreq=(\d+)\s+MaxFreq=(\d+)\s+CurrentFreq=(\d+)", text, re.M)
    emc = re.search(r"^EMC\s+MinFreq=(\d+)\s+MaxFreq=(\d+)\s+CurrentFreq=(\d+)", text, re.M)
    if not cpus and not gpu:
        return {"locked": UNKNOWN}
    gpu_t = tuple(int(x) for x in gpu.groups()) if gpu else None
    locked = all(mn == mx for mn, mx, _ in cpus) and (gpu_t is None or gpu_t[0] == gpu_t[1])
    out: dict[str, Any] = {"locked": locked}
    if cpus:
        out["cpu_cur_mhz_max"] = max(c for _, _, c in cpus) / 1000.0
        out["cpu_max_mhz"] = max(mx for _, mx, _ in cpus) / 1000.0
    if gpu_t:
        out["gpu_cur_mhz"] = gpu_t[2] / 1e6
        out["gpu_max_mhz"] = gpu_t[1] / 1e6
    if emc:
        out["emc_cur_mhz"] = int(emc.group(3)) / 1e6
    return out


#: tegrastats reports a sensor that is powered off as -256C (AGX Orin CV0/CV1/CV2 and GPU when idle).
_TEMP_OFF = -256.0
#: Rails that measure the whole board input; where none is present (AGX Orin) no total is claimed.
_TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")


def parse_tegrastats(text: str) -> dict:
    """The last complete ``tegrastats`` line: RAM, CPU load, GPU load, temperatures, power rails.

    Handles the JetPack 6 form ``VDD_GPU_SOC 2340mW/2340mW`` (now/average), the JetPack 7.2
    form with three values (``5139mW/5139mW/5139mW``), lower-case ``cpu@52.968C/52.968C``
    temperatures, and the pre-JetPack-5 form without units (``VDD_IN 5297/5297``, ``POM_5V_IN
    3000/3000``). Sensors reported as -256C are off and left out, and so are ``NC`` (not
    connected) rails. ``power_total_mw`` is the board input rail (``VDD_IN``, ``POM_5V_IN``);
    boards without one (AGX Orin) get ``power_rails_sum_mw``, the sum of the rails shown, which
    is not the board's total draw.
    """
    lines = text.splitlines()
    if len(lines) > 1 and not text.endswith("\n"):
        lines = lines[:-1]  # the sample was cut mid-line by the timeout
    lines = [ln.strip() for ln in lines if "RAM" in ln]
    if not lines:
        return {}
    line = lines[-1]
    out: dict[str, Any] = {"raw": line}
    ram = re.search(r"RAM (\d+)/(\d+)MB", line)
    if ram:
        out["ram_used_mb"], out["ram_total_mb"] = int(ram.group(1)), int(ram.group(2))
    cpu = re.search(r"CPU \[([^\]]*)\]", line)
    if cpu:
        loads = [int(m.group(1)) for m in re.finditer(r"(\d+)%@", cpu.group(1))]
        out["cpu_load_pct"] = loads
    gr3d = re.search(r"GR3D_FREQ (\d+)%", line)
    if gr3d:
        out["gpu_load_pct"] = int(gr3d.group(1))
    gpu_freq = re.search(r"GR3D_FREQ \d+%@\[?(\d+)", line)
    if gpu_freq:
        out["gpu_freq_mhz"] = int(gpu_freq.group(1))
    temps = {m.group(1): float(m.group(2)) for m in re.finditer(r"([A-Za-z0-9_]+)@(-?[\d.]+)C\b", line)}
    temps = {k: v for k, v in temps.items() if v != _TEMP_OFF}
    if temps:
        out["temperatures_c"] = temps
    rails = {m.group(1): {"now_mw": int(m.group(2)), "avg_mw": int(m.group(3))}
             for m in re.finditer(r"\b([A-Z][A-Z0-9_]+) (\d+)mW/(\d+)mW", line)}
    if not rails:
        rails = {m.group(1): {"now_mw": int(m.group(2)), "avg_mw": int(m.group(3))}
                 for m in re.finditer(r"\b((?:POM|VDD)_[A-Z0-9_]+) (\d+)/(\d+)\b", line)}
    rails.pop("NC", None)
    if rails:
        out["power_rails_mw"] = rails
        total = next((rails[r] for r in _TOTAL_RAILS if r in rails), None)
        if total:
            out["power_total_mw"] = total["now_mw"]
        else:
            out["power_rails_sum_mw"] = sum(r["now_mw"] for r in rails.values())
    return out


# --------------------------------------------------------------------------- Jetson releases
#: L4T release -> JetPack (rbonghi/jetson_stats ``jtop/core/jetson_variables.py`` NVIDIA_JETPACK, the JP5-JP7
#: part; a real excerpt is in tests/fixtures/real/jetson/).
JETPACK_BY_L4T = {
    "39.2.0": "7.2", "38.4.0": "7.1", "38.2.2": "7.0", "38.2.1": "7.0", "38.2.0": "7.0",
    "36.5.0": "6.2.2", "36.4.7": "6.2.1", "36.4.4": "6.2.1", "36.4.3": "6.2", "36.4.2": "6.1 (rev1)", "36.4.0": "6.1",
    "36.3.0": "6.0", "36.2.0": "6.0 DP",
    "35.6.4": "5.1.6", "35.6.3": "5.1.5", "35.6.2": "5.1.5", "35.6.1": "5.1.5", "35.6.0": "5.1.4",
    "35.5.0": "5.1.3", "35.4.1": "5.1.2", "35.3.1": "5.1.1", "35.2.1": "5.1", "35.1.0": "5.0.2",
}
#: L4T major.minor (or one exact release) -> (TensorRT shipped, Python of the Ubuntu release). Sources: JetPack release notes as quoted
#: in NVIDIA/DL4AGX#67 (JetPack 6.0: 8.6.2), pytorch/TensorRT#3453 (6.1: 10.3), jetson_stats#603 (L4T 36.4.3:
#: TensorRT 10.3.0.30), NVlabs/FoundationStereo#208 and jetson_stats#820 (L4T 38.2.2 / 38.4.0: 10.13.3.9),
#: cyrusbehr/YOLOv8-TensorRT-CPP#67 (JetPack 5.1.x: 8.5.2), OE4T/meta-tegra PR 2224/2243 (L4T 39.2: 10.16).
TENSORRT_BY_L4T = {
    "35.1": ("8.4.1", "3.8"), "35.2": ("8.5.2", "3.8"), "35.3": ("8.5.2", "3.8"), "35.4": ("8.5.2", "3.8"),
    "35.5": ("8.5.2", "3.8"), "35.6": ("8.5.2", "3.8"),
    "36.2": ("8.6.2", "3.10"), "36.3": ("8.6.2", "3.10"), "36.4": ("10.3.0", "3.10"), "36.5": ("10.3.0", "3.10"),
    "38.2": ("10.13.3", "3.12"), "38.4": ("10.13.3", "3.12"),
    # JetPack 7.2 itself only: 7.2.2 and later ship TensorRT 11, under L4T numbers not on record here
    "39.2.0": ("10.16", "3.12"),
}
#: Tegra SoC (device-tree ``compatible``) -> (family, CUDA compute capability).
TEGRA_SOCS = {"tegra264": ("Thor", "11.0"), "tegra234": ("Orin", "8.7"), "tegra194": ("Xavier", "7.2"),
              "tegra186": ("TX2", "6.2"), "tegra210": ("Nano/TX1", "5.3")}


def jetson_release(l4t: str | None) -> dict:
    """What an L4T release means: its JetPack, the TensorRT and Python it ships (``unknown`` for a release
    se-deploy has no record of)."""
    out: dict[str, Any] = {"l4t": l4t or UNKNOWN, "jetpack": UNKNOWN, "tensorrt": UNKNOWN, "python": UNKNOWN}
    if not l4t:
        return out
    parts = l4t.split(".")
    full = ".".join((parts + ["0", "0"])[:3])
    out["jetpack"] = JETPACK_BY_L4T.get(full, UNKNOWN)
    trt = TENSORRT_BY_L4T.get(full) or TENSORRT_BY_L4T.get(".".join(parts[:2]))
    if trt:
        out["tensorrt"], out["python"] = trt
    return out


def parse_device_tree_compatible(text: str) -> str | None:
    """The Tegra SoC (``tegra234``) from ``/proc/device-tree/compatible`` (NUL-separated entries, which
    reports often print run together: ``nvidia,p3737-0000+p3701-0000nvidia,tegra234nvidia,tegra23x``)."""
    m = re.findall(r"tegra(\d{3})(?!x)", text or "")
    return f"tegra{m[0]}" if m else None


# --------------------------------------------------------------------------- capture
def _cpu_section(p: Probes) -> dict:
    info = parse_cpuinfo(p.read("/proc/cpuinfo") or "")
    if info["model"] == UNKNOWN:
        info["model"] = platform.processor() or UNKNOWN
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    logical = info.pop("processors") or os.cpu_count()
    return {
        "model": info["model"],
        "arch": platform.machine() or UNKNOWN,
        "logical_cpus": logical or UNKNOWN,
        "physical_cores": info["physical_cores"] or UNKNOWN,
        "usable_cpus": usable or UNKNOWN,
        "features": info["features"],
        "flags": sorted(n for n, on in info["features"].items() if on),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", UNKNOWN),
    }


def _cuda_probe() -> dict:
    """The CUDA devices as CUDA itself reports them (cuda-python, else pycuda), with the real error when the
    driver cannot be used. On a Jetson this, not nvidia-smi, is where the GPU is found."""
    out: dict[str, Any] = {"binding": None, "device_count": UNKNOWN, "devices": [], "error": None}
    try:
        try:
            from cuda.bindings import runtime as rt
        except ImportError:
            from cuda import cudart as rt  # cuda-python < 12.6
    except Exception:
        rt = None
    if rt is not None:
        out["binding"] = "cuda-python"
        err, n = rt.cudaGetDeviceCount()
        if err == rt.cudaError_t.cudaSuccess:
            out["device_count"] = int(n)
            for i in range(int(n)):
                e, prop = rt.cudaGetDeviceProperties(i)
                if e == rt.cudaError_t.cudaSuccess:
                    name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
                    out["devices"].append({"name": name.rstrip("\x00"),
                                           "compute_capability": f"{prop.major}.{prop.minor}"})
            return out
        if err == rt.cudaError_t.cudaErrorNoDevice:
            out["device_count"] = 0
            return out
        name = rt.cudaGetErrorName(err)
        name = name[-1] if isinstance(name, tuple) else name
        out["error"] = name.decode() if isinstance(name, bytes) else str(name)
    try:
        import pycuda.driver as drv
    except Exception:
        return out
    out["binding"] = "pycuda"
    try:
        drv.init()
        out["device_count"] = int(drv.Device.count())
        for i in range(out["device_count"]):
            d = drv.Device(i)
            out["devices"].append({"name": str(d.name()), "compute_capability": ".".join(map(str, d.compute_capability()))})
        out["error"] = None
    except Exception as e:
        out["error"] = (out["error"] + "; " if out["error"] else "") + f"pycuda: {first_line(e)}"
    return out


def _jetson_board(p: Probes) -> dict:
    """Whether this is a Jetson (``/etc/nv_tegra_release``, or a Jetson/DRIVE device-tree model), its model and SoC."""
    model = ""
    for path in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"):
        model = (p.read(path) or "").replace("\x00", "").strip()
        if model:
            break
    release = p.read("/etc/nv_tegra_release")
    soc = parse_device_tree_compatible(p.read("/proc/device-tree/compatible") or "")
    is_jetson = bool(release) or "jetson" in model.lower() or "drive" in model.lower()
    return {"is_jetson": is_jetson, "model": model or UNKNOWN, "release_text": release, "soc": soc}


def _gpu_section(p: Probes) -> dict:
    out: dict[str, Any] = {"gpus": [], "cuda_driver_version": UNKNOWN, "cuda_toolkit_version": UNKNOWN,
                           "nvidia_smi": False}
    board = _jetson_board(p)
    if board["is_jetson"]:
        # nvidia-smi on a Jetson reports "Orin (nvgpu)" with memory "Not Supported" (JetPack 6) or does not exist
        # (JetPack 5): the GPU comes from CUDA itself and the Tegra files; load and power from tegrastats.
        cuda = p.cuda()
        out["cuda"] = cuda
        family, cc = TEGRA_SOCS.get(board["soc"] or "", (UNKNOWN, UNKNOWN))
        devices = cuda.get("devices") or [{"name": family, "compute_capability": cc}]
        out["gpus"] = [{"name": d["name"], "compute_capability": d["compute_capability"], "integrated": True,
                        "source": "CUDA" if cuda.get("devices") else "device tree (Tegra SoC)"} for d in devices]
        out["detected_by"] = "CUDA device query and the Tegra device tree (nvidia-smi is not read on a Jetson)"
    else:
        q = p.run(["nvidia-smi", f"--query-gpu={','.join(_SMI_FIELDS)}", "--format=csv,noheader,nounits"], 10.0)
        if q:
            out["nvidia_smi"] = True
            out["gpus"] = parse_nvidia_smi_query(q)
            header = p.run(["nvidia-smi"], 10.0)
            if header:
                out["cuda_driver_version"] = parse_smi_cuda_version(header) or UNKNOWN
    for nvcc in ("nvcc", "/usr/local/cuda/bin/nvcc"):
        text = p.run([nvcc, "--version"], 10.0)
        if text and parse_nvcc_version(text):
            out["cuda_toolkit_version"] = parse_nvcc_version(text)
            break
    return out


def _jetson_section(p: Probes, tegrastats_s: float) -> dict:
    board = _jetson_board(p)
    release = board["release_text"]
    out: dict[str, Any] = {"is_jetson": board["is_jetson"], "model": board["model"], "soc": board["soc"] or UNKNOWN,
                           "l4t": UNKNOWN, "jetpack": UNKNOWN, "jetpack_tensorrt": UNKNOWN,
                           "jetpack_python": UNKNOWN, "power_mode": UNKNOWN, "power_mode_id": UNKNOWN,
                           "clocks": {"locked": UNKNOWN}, "tegrastats": UNKNOWN}
    if not board["is_jetson"]:
        return out
    if release:
        out["l4t"] = parse_nv_tegra_release(release) or UNKNOWN
    rel = jetson_release(out["l4t"] if out["l4t"] != UNKNOWN else None)
    out["jetpack"], out["jetpack_tensorrt"], out["jetpack_python"] = rel["jetpack"], rel["tensorrt"], rel["python"]
    jp = p.run(["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"], 10.0)
    if jp and jp.strip():
        out["jetpack_package"] = jp.strip()
        if out["jetpack"] == UNKNOWN:
            out["jetpack"] = jp.strip()
    nvp = p.run(["nvpmodel", "-q"], 10.0)
    if nvp:
        pm = parse_nvpmodel(nvp)
        out["power_mode"], out["power_mode_id"] = pm["name"], pm["id"]
    clocks = p.run(["jetson_clocks", "--show"], 10.0)
    if clocks:
        out["clocks"] = parse_jetson_clocks(clocks)
    if tegrastats_s > 0:
        # tegrastats never exits on its own: sample it for a bounded time.
        ts = p.run(["tegrastats", "--interval", str(max(100, int(tegrastats_s * 1000 / 2)))], tegrastats_s)
        if ts:
            out["tegrastats"] = parse_tegrastats(ts) or UNKNOWN
    return out


def _os_section() -> dict:
    distro = UNKNOWN
    try:
        rel = platform.freedesktop_os_release()
        distro = rel.get("PRETTY_NAME", UNKNOWN)
    except (OSError, AttributeError):
        pass
    return {"system": platform.system() or UNKNOWN, "kernel": platform.release() or UNKNOWN,
            "distro": distro, "platform": platform.platform()}


def capture_environment(*, probes: Probes | None = None, tegrastats_s: float = 1.0,
                        include_gpu: bool = True) -> dict:
    """Describe this machine as a JSON-ready dict. Missing pieces are ``"unknown"``; never raises.

    ``tegrastats_s`` bounds the Jetson power sample (0 skips it).
    """
    p = probes or Probes()
    env: dict[str, Any] = {"schema_version": ENV_SCHEMA_VERSION, "captured_at": now_iso()}

    sections: dict[str, Callable[[], Any]] = {
        "cpu": lambda: _cpu_section(p),
        "memory_gb": lambda: parse_meminfo(p.read("/proc/meminfo") or "") or UNKNOWN,
        "os": _os_section,
        "python": lambda: {"version": platform.python_version(), "implementation": platform.python_implementation(),
                           "executable": sys.executable},
        "packages": lambda: {name: p.package_version(name) or UNKNOWN for name in PACKAGES},
        "onnxruntime_providers": lambda: p.ort_providers() or UNKNOWN,
        "gpu": (lambda: _gpu_section(p)) if include_gpu else (lambda: {"gpus": [], "skipped": True}),
        "tensorrt": p.tensorrt,
        "jetson": lambda: _jetson_section(p, tegrastats_s),
    }
    for key, fn in sections.items():
        try:
            env[key] = fn()
        except Exception as e:  # one failing probe must not lose the rest of the record
            env[key] = UNKNOWN
            env.setdefault("probe_errors", {})[key] = f"{type(e).__name__}: {e}"
    return env


def _jetson_clocks_exe(which: Callable[[str], str | None] = shutil.which) -> str | None:
    found = which("jetson_clocks")
    if found:
        return found
    return "/usr/bin/jetson_clocks" if os.path.isfile("/usr/bin/jetson_clocks") else None


@contextlib.contextmanager
def locked_clocks(enabled: bool, *, log: Callable[[str], None] = lambda msg: None,
                  run: Callable[..., Any] = subprocess.run, which: Callable[[str], str | None] = shutil.which,
                  is_root: Callable[[], bool] = lambda: os.geteuid() == 0):
    """Lock a Jetson's clocks at their maximum (``jetson_clocks``) for the block, and restore them after.

    The state before is saved with ``jetson_clocks --store FILE`` and put back with ``--restore FILE``,
    so the board is left as it was found. jetson_clocks needs root: it runs directly as root, else
    through ``sudo -n`` (no password prompt); where neither is permitted, or there is no jetson_clocks,
    one line says so and the block runs with the clocks as they are. Yields a dict recording what was
    done (``locked``, ``reason``, ``restored``), for the results.
    """
    state: dict[str, Any] = {"requested": enabled, "locked": False, "reason": None}
    if not enabled:
        yield state
        return
    exe = _jetson_clocks_exe(which)
    prefix: list[str] = [] if is_root() else ["sudo", "-n"]
    if exe is None:
        state["reason"] = "jetson_clocks not found (not a Jetson?)"
    elif prefix and (which("sudo") is None or run(["sudo", "-n", "true"], capture_output=True).returncode != 0):
        state["reason"] = ("jetson_clocks needs root: run as root, or allow it without a password (sudoers: "
                           f"{os.environ.get('USER', 'user')} ALL=(root) NOPASSWD: {exe})")
    if state["reason"] is not None:
        log(f"note: --lock-clocks not applied: {state['reason']}; clocks left as they are")
        yield state
        return
    fd, store = tempfile.mkstemp(prefix="se-deploy-clocks-", suffix=".conf")
    os.close(fd)
    try:
        saved = run([*prefix, exe, "--store", store], capture_output=True)
        locked = saved.returncode == 0 and run([*prefix, exe], capture_output=True).returncode == 0
        if not locked:
            state["reason"] = f"{exe} failed (exit code {saved.returncode})"
            log(f"note: --lock-clocks not applied: {state['reason']}; clocks left as they are")
        state["locked"] = locked
        try:
            yield state
        finally:
            if saved.returncode == 0:
                restored = run([*prefix, exe, "--restore", store], capture_output=True).returncode == 0
                state["restored"] = restored
                if not restored:
                    log(f"warning: {exe} --restore {store} failed: the clocks stay locked until reboot or "
                        f"'sudo {exe} --restore'")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(store)


class TegrastatsSampler:
    """Sample ``tegrastats`` in the background for the length of a run (Jetson power, GPU load).

    ``with TegrastatsSampler() as s: run(); s.summary()``. Where ``tegrastats`` is missing,
    the sampler does nothing and ``summary()`` says ``{"available": False}``.
    ``command`` replaces the tegrastats command line (tests drive it with a script that
    prints recorded lines).
    """

    def __init__(self, interval_ms: int = 500, command: Sequence[str] | None = None) -> None:
        self.command = list(command) if command else ["tegrastats", "--interval", str(int(interval_ms))]
        self.available = False
        self._lines: list[str] = []
        self._proc: subprocess.Popen | None = None
        self._thread = None

    def __enter__(self) -> "TegrastatsSampler":
        import threading

        if shutil.which(self.command[0]) is None and not os.path.isfile(self.command[0]):
            return self
        try:
            self._proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                          stdin=subprocess.DEVNULL, text=True, bufsize=1)
        except OSError:
            return self
        self.available = True
        self._thread = threading.Thread(target=self._read, args=(self._proc.stdout,), daemon=True)
        self._thread.start()
        return self

    def _read(self, stream) -> None:
        for line in stream:
            self._lines.append(line)

    def __exit__(self, *exc) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=2)
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._proc = None

    def summary(self) -> dict:
        """Mean and max board power, mean GPU load, mean per-rail power and peak temperatures."""
        samples = [parse_tegrastats(line + "\n") for line in self._lines]
        samples = [x for x in samples if x]
        if not self.available or not samples:
            return {"available": self.available, "samples": 0}
        out: dict[str, Any] = {"available": True, "samples": len(samples)}
        power = [x["power_total_mw"] for x in samples if "power_total_mw" in x]
        if power:
            out["power_mw"] = {"mean": sum(power) / len(power), "max": max(power)}
        else:  # no board-input rail (AGX Orin): the sum of the rails shown, which is not the total draw
            rails_sum = [x["power_rails_sum_mw"] for x in samples if "power_rails_sum_mw" in x]
            if rails_sum:
                out["rails_sum_mw"] = {"mean": sum(rails_sum) / len(rails_sum), "max": max(rails_sum)}
        gpu = [x["gpu_load_pct"] for x in samples if "gpu_load_pct" in x]
        if gpu:
            out["gpu_load_pct_mean"] = sum(gpu) / len(gpu)
        rails: dict[str, list[int]] = {}
        temps: dict[str, float] = {}
        for x in samples:
            for name, v in x.get("power_rails_mw", {}).items():
                rails.setdefault(name, []).append(v["now_mw"])
            for name, t in x.get("temperatures_c", {}).items():
                temps[name] = max(t, temps.get(name, t))
        if rails:
            out["rails_mw_mean"] = {k: sum(v) / len(v) for k, v in rails.items()}
        if temps:
            out["temperatures_c_max"] = temps
        return out


def environment_rows(env: dict) -> list[tuple[str, str]]:
    """A flat (label, value) table of the headline facts, for reports and ``doctor``."""

    def g(*keys, default=UNKNOWN):
        cur: Any = env
        for k in keys:
            if not isinstance(cur, dict) or k not in cur:
                return default
            cur = cur[k]
        return cur

    rows = [
        ("CPU", str(g("cpu", "model"))),
        ("CPU cores / threads", f"{g('cpu', 'physical_cores')} / {g('cpu', 'logical_cpus')} "
                                f"(usable {g('cpu', 'usable_cpus')})"),
        ("CPU features", ", ".join(g("cpu", "flags", default=[]) or []) or UNKNOWN),
        ("RAM (GB)", str(g("memory_gb"))),
        ("OS", f"{g('os', 'distro')} ({g('os', 'system')} {g('os', 'kernel')})"),
        ("Python", str(g("python", "version"))),
    ]
    for pkg in ("torch", "onnxruntime", "onnx", "numpy", "tensorrt"):
        rows.append((pkg, str(g("packages", pkg))))
    if g("tensorrt", "version") != UNKNOWN:
        rows[-1] = ("tensorrt", str(g("tensorrt", "version")))
    providers = g("onnxruntime_providers")
    rows.append(("onnxruntime providers", ", ".join(providers) if isinstance(providers, list) else str(providers)))
    gpus = g("gpu", "gpus", default=[]) or []
    if gpus:
        for i, gpu in enumerate(gpus):
            if gpu.get("integrated"):  # a Jetson: found through CUDA or the device tree, not nvidia-smi
                rows.append((f"GPU {i}", f"{gpu.get('name')} (CC {gpu.get('compute_capability')}, integrated; "
                                         f"{gpu.get('source')})"))
                continue
            rows.append((f"GPU {i}", f"{gpu.get('name')} (driver {gpu.get('driver')}, CC {gpu.get('compute_capability')}, "
                                     f"SM {gpu.get('sm_clock_mhz')}/{gpu.get('max_sm_clock_mhz')} MHz)"))
    else:
        rows.append(("GPU", "none found" if g("gpu", "nvidia_smi", default=False) is False else UNKNOWN))
    rows.append(("CUDA (driver / toolkit)", f"{g('gpu', 'cuda_driver_version')} / {g('gpu', 'cuda_toolkit_version')}"))
    rows.append(("DLA cores", str(g("tensorrt", "dla_cores"))))
    if g("jetson", "is_jetson", default=False):
        rows += [
            ("Jetson model", str(g("jetson", "model"))),
            ("L4T / JetPack", f"{g('jetson', 'l4t')} / {g('jetson', 'jetpack')} (ships TensorRT "
                              f"{g('jetson', 'jetpack_tensorrt')}, Python {g('jetson', 'jetpack_python')})"),
            ("Power mode", f"{g('jetson', 'power_mode')} (id {g('jetson', 'power_mode_id')})"),
            ("Clocks locked", str(g("jetson", "clocks", "locked"))),
        ]
        power = g("jetson", "tegrastats", "power_total_mw")
        if power == UNKNOWN and g("jetson", "tegrastats", "power_rails_sum_mw") != UNKNOWN:
            rows.append(("Rails shown by tegrastats (mW, sum)", str(g("jetson", "tegrastats", "power_rails_sum_mw"))))
        else:
            rows.append(("Board power (mW)", str(power)))
    return rows


__all__ = ["JETPACK_BY_L4T", "TEGRA_SOCS", "TENSORRT_BY_L4T", "UNKNOWN", "Probes", "TegrastatsSampler",
           "capture_environment", "environment_rows", "jetson_release", "locked_clocks", "parse_cpuinfo", "parse_device_tree_compatible",
           "parse_jetson_clocks", "parse_nv_tegra_release", "parse_nvidia_smi_query", "parse_nvpmodel",
           "parse_tegrastats"]
