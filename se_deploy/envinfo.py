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

import importlib
import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
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


def parse_tegrastats(text: str) -> dict:
    """The last complete ``tegrastats`` line: RAM, CPU load, GPU load, temperatures, power rails.

    Handles both the current ``VDD_IN 4930mW/4930mW`` and the older ``POM_5V_IN 3000/3000``
    power formats.
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
    temps = {m.group(1): float(m.group(2)) for m in re.finditer(r"([A-Za-z0-9_]+)@(-?[\d.]+)C\b", line)}
    if temps:
        out["temperatures_c"] = temps
    rails = {m.group(1): {"now_mw": int(m.group(2)), "avg_mw": int(m.group(3))}
             for m in re.finditer(r"\b([A-Z][A-Z0-9_]+) (\d+)mW/(\d+)mW", line)}
    if not rails:
        rails = {m.group(1): {"now_mw": int(m.group(2)), "avg_mw": int(m.group(3))}
                 for m in re.finditer(r"\b((?:POM|VDD)_[A-Z0-9_]+) (\d+)/(\d+)\b", line)}
    if rails:
        out["power_rails_mw"] = rails
        total = rails.get("VDD_IN") or rails.get("POM_5V_IN")
        if total:
            out["power_total_mw"] = total["now_mw"]
    return out


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


def _gpu_section(p: Probes) -> dict:
    out: dict[str, Any] = {"gpus": [], "cuda_driver_version": UNKNOWN, "cuda_toolkit_version": UNKNOWN,
                           "nvidia_smi": False}
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
    model = (p.read("/proc/device-tree/model") or "").replace("\x00", "").strip()
    release = p.read("/etc/nv_tegra_release")
    is_jetson = bool(release) or "jetson" in model.lower() or "drive" in model.lower()
    out: dict[str, Any] = {"is_jetson": is_jetson, "model": model or UNKNOWN, "l4t": UNKNOWN,
                           "jetpack": UNKNOWN, "power_mode": UNKNOWN, "power_mode_id": UNKNOWN,
                           "clocks": {"locked": UNKNOWN}, "tegrastats": UNKNOWN}
    if not is_jetson:
        return out
    if release:
        out["l4t"] = parse_nv_tegra_release(release) or UNKNOWN
    jp = p.run(["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"], 10.0)
    if jp and jp.strip():
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
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
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
            rows.append((f"GPU {i}", f"{gpu.get('name')} (driver {gpu.get('driver')}, CC {gpu.get('compute_capability')}, "
                                     f"SM {gpu.get('sm_clock_mhz')}/{gpu.get('max_sm_clock_mhz')} MHz)"))
    else:
        rows.append(("GPU", "none found" if g("gpu", "nvidia_smi", default=False) is False else UNKNOWN))
    rows.append(("CUDA (driver / toolkit)", f"{g('gpu', 'cuda_driver_version')} / {g('gpu', 'cuda_toolkit_version')}"))
    rows.append(("DLA cores", str(g("tensorrt", "dla_cores"))))
    if g("jetson", "is_jetson", default=False):
        rows += [
            ("Jetson model", str(g("jetson", "model"))),
            ("L4T / JetPack", f"{g('jetson', 'l4t')} / {g('jetson', 'jetpack')}"),
            ("Power mode", f"{g('jetson', 'power_mode')} (id {g('jetson', 'power_mode_id')})"),
            ("Clocks locked", str(g("jetson", "clocks", "locked"))),
        ]
        power = g("jetson", "tegrastats", "power_total_mw")
        rows.append(("Board power (mW)", str(power)))
    return rows


__all__ = ["UNKNOWN", "Probes", "TegrastatsSampler", "capture_environment", "environment_rows", "parse_cpuinfo", "parse_jetson_clocks",
           "parse_nv_tegra_release", "parse_nvidia_smi_query", "parse_nvpmodel", "parse_tegrastats"]
