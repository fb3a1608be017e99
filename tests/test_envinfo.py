"""Environment capture: real capture here, plus recorded outputs from machines we do not have."""

from __future__ import annotations

import json

from se_deploy.envinfo import (UNKNOWN, Probes, capture_environment, environment_rows, parse_cpuinfo,
                               parse_jetson_clocks, parse_nv_tegra_release, parse_nvidia_smi_query, parse_nvpmodel,
                               parse_tegrastats)

# Recorded on a Jetson AGX Orin 64GB, JetPack 6.1 (trimmed).
ORIN_MODEL = "NVIDIA Jetson AGX Orin Developer Kit\x00"
ORIN_RELEASE = "# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64, DATE: Fri Sep 13 04:36:44 UTC 2024\n"
ORIN_CPUINFO = """processor\t: 0
BogoMIPS\t: 62.50
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp uscat ilrcpc flagm paca pacg
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x1
CPU part\t: 0xd42
CPU revision\t: 1

processor\t: 1
BogoMIPS\t: 62.50
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp uscat ilrcpc flagm paca pacg
CPU implementer\t: 0x41
CPU part\t: 0xd42
"""
ORIN_MEMINFO = "MemTotal:       64335836 kB\nMemFree:        60000000 kB\n"
ORIN_NVPMODEL = "NV Power Mode: MAXN\n0\n"
ORIN_CLOCKS_LOCKED = """SOC family:tegra234  Machine:NVIDIA Jetson AGX Orin Developer Kit
Online CPUs: 0-11
cpu0: Online=1 Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=0 c7=0
cpu1: Online=1 Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=0 c7=0
GPU MinFreq=1300500000 MaxFreq=1300500000 CurrentFreq=1300500000
EMC MinFreq=204000000 MaxFreq=3199000000 CurrentFreq=3199000000 FreqOverride=1
DLA0_CORE:  Online=1 MinFreq=0 MaxFreq=1600000000 CurrentFreq=1600000000
NV Power Mode: MAXN
"""
ORIN_CLOCKS_DYNAMIC = ORIN_CLOCKS_LOCKED.replace("cpu1: Online=1 Governor=schedutil MinFreq=2201600",
                                                 "cpu1: Online=1 Governor=schedutil MinFreq=729600")
ORIN_TEGRASTATS = (
    "11-22-2026 10:00:00 RAM 2448/62841MB (lfb 6588x4MB) SWAP 0/31420MB (cached 0MB) "
    "CPU [1%@2201,0%@2201,3%@2201,0%@2201] EMC_FREQ 0%@3199 GR3D_FREQ 12%@[1300,1300] "
    "cpu@46.093C soc2@41.968C tj@46.5C VDD_GPU_SOC 2398mW/2398mW VDD_CPU_CV 399mW/399mW "
    "VIN_SYS_5V0 2523mW/2523mW VDDQ_VDD2_1V8AO 302mW/302mW VDD_IN 6930mW/6900mW\n"
    "11-22-2026 10:00:00 RAM 2450/62841MB (lfb"  # truncated by the timeout
)
XAVIER_TEGRASTATS = ("RAM 1800/7764MB (lfb 1x4MB) CPU [10%@1190,5%@1190] GR3D_FREQ 0%@114 "
                     "AO@38.5C GPU@37.5C POM_5V_IN 3000/3100 POM_5V_GPU 0/0 POM_5V_CPU 600/610\n")
SMI_QUERY = "NVIDIA H100 80GB HBM3, 550.54.15, 81559, 1980, 2619, 1980, 2619, 9.0, P0, 700.00, 34\n"
SMI_HEADER = "| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4     |\n"


class Recorded:
    """A machine described by recorded outputs; every other command or file is missing."""

    def __init__(self, commands: dict[str, str] | None = None, files: dict[str, str] | None = None):
        self.commands = commands or {}
        self.files = files or {}
        self.calls: list[tuple[tuple[str, ...], float]] = []

    def run(self, argv, timeout):
        self.calls.append((tuple(argv), timeout))
        return self.commands.get(argv[0])

    def read(self, path):
        return self.files.get(path)

    def probes(self, **kw) -> Probes:
        defaults = dict(run=self.run, read=self.read, package_version=lambda name: None,
                        tensorrt=lambda: {"version": UNKNOWN, "dla_cores": UNKNOWN, "import_error": "missing"},
                        ort_providers=lambda: None)
        defaults.update(kw)
        return Probes(**defaults)


def test_capture_on_this_machine_is_json_and_has_the_core_facts():
    env = capture_environment(tegrastats_s=0)
    json.dumps(env)  # JSON-ready
    assert env["cpu"]["logical_cpus"] != UNKNOWN and env["cpu"]["logical_cpus"] >= 1
    assert env["python"]["version"].count(".") == 2
    import onnxruntime

    assert env["packages"]["onnxruntime"] == onnxruntime.__version__
    assert "CPUExecutionProvider" in env["onnxruntime_providers"]
    assert isinstance(env["memory_gb"], float) and env["memory_gb"] > 0
    assert "probe_errors" not in env


def test_every_tool_missing_records_unknown_and_never_raises():
    rec = Recorded()
    env = capture_environment(probes=rec.probes())
    assert env["cpu"]["physical_cores"] == UNKNOWN
    assert env["memory_gb"] == UNKNOWN
    assert env["packages"]["torch"] == UNKNOWN
    assert env["onnxruntime_providers"] == UNKNOWN
    assert env["gpu"]["gpus"] == [] and env["gpu"]["cuda_driver_version"] == UNKNOWN
    assert env["gpu"]["cuda_toolkit_version"] == UNKNOWN
    assert env["jetson"]["is_jetson"] is False and env["jetson"]["power_mode"] == UNKNOWN
    assert env["tensorrt"]["dla_cores"] == UNKNOWN
    # A non-Jetson never runs the Jetson tools.
    assert not any(argv[0] in ("nvpmodel", "tegrastats", "jetson_clocks") for argv, _ in rec.calls)
    rows = dict(environment_rows(env))
    assert rows["GPU"] == "none found" and rows["DLA cores"] == UNKNOWN


def test_a_crashing_probe_is_recorded_not_raised():
    def boom():
        raise RuntimeError("driver exploded")

    env = capture_environment(probes=Recorded().probes(tensorrt=boom))
    assert env["tensorrt"] == UNKNOWN
    assert "driver exploded" in env["probe_errors"]["tensorrt"]
    assert env["cpu"]["arch"]  # the rest is still captured


def test_jetson_orin_from_recorded_outputs():
    rec = Recorded(
        commands={"nvpmodel": ORIN_NVPMODEL, "jetson_clocks": ORIN_CLOCKS_LOCKED, "tegrastats": ORIN_TEGRASTATS,
                  "dpkg-query": "6.1+b123", "/usr/local/cuda/bin/nvcc": "Cuda compilation tools, release 12.6, V12.6.68"},
        files={"/proc/device-tree/model": ORIN_MODEL, "/etc/nv_tegra_release": ORIN_RELEASE,
               "/proc/cpuinfo": ORIN_CPUINFO, "/proc/meminfo": ORIN_MEMINFO},
    )
    env = capture_environment(probes=rec.probes(
        tensorrt=lambda: {"version": "10.3.0", "dla_cores": 2, "import_error": None}), tegrastats_s=1.5)
    j = env["jetson"]
    assert j["is_jetson"] is True
    assert j["model"] == "NVIDIA Jetson AGX Orin Developer Kit"
    assert j["l4t"] == "36.4.0" and j["jetpack"] == "6.1+b123"
    assert j["power_mode"] == "MAXN" and j["power_mode_id"] == 0
    assert j["clocks"]["locked"] is True and j["clocks"]["gpu_cur_mhz"] == 1300.5
    assert j["tegrastats"]["power_total_mw"] == 6930
    assert j["tegrastats"]["gpu_load_pct"] == 12
    assert env["gpu"]["cuda_toolkit_version"] == "12.6"
    assert env["cpu"]["model"] == "Arm Cortex-A78AE"
    assert env["cpu"]["features"]["arm_dotprod"] and env["cpu"]["features"]["neon"]
    assert not env["cpu"]["features"]["avx2"]
    assert env["memory_gb"] == 61.36
    # tegrastats was bounded by the timeout we asked for.
    (ts_call,) = [c for c in rec.calls if c[0][0] == "tegrastats"]
    assert ts_call[1] == 1.5
    rows = dict(environment_rows(env))
    assert rows["Power mode"] == "MAXN (id 0)" and rows["Clocks locked"] == "True"
    assert rows["DLA cores"] == "2" and rows["tensorrt"] == "10.3.0"


def test_jetson_with_tools_missing_still_identifies_the_board():
    rec = Recorded(files={"/proc/device-tree/model": ORIN_MODEL})
    env = capture_environment(probes=rec.probes())
    j = env["jetson"]
    assert j["is_jetson"] is True and j["model"].startswith("NVIDIA Jetson AGX Orin")
    assert j["power_mode"] == UNKNOWN and j["clocks"] == {"locked": UNKNOWN} and j["tegrastats"] == UNKNOWN


def test_nvidia_smi_parsing():
    rec = Recorded(commands={"nvidia-smi": SMI_QUERY})
    env = capture_environment(probes=rec.probes(run=lambda argv, t: SMI_HEADER if len(argv) == 1 else rec.run(argv, t)))
    (gpu,) = env["gpu"]["gpus"]
    assert gpu["name"] == "NVIDIA H100 80GB HBM3" and gpu["driver"] == "550.54.15"
    assert gpu["sm_clock_mhz"] == 1980.0 and gpu["compute_capability"] == "9.0"
    assert env["gpu"]["cuda_driver_version"] == "12.4"
    rows = dict(environment_rows(env))
    assert "NVIDIA H100" in rows["GPU 0"]


def test_parsers_on_edge_cases():
    assert parse_jetson_clocks(ORIN_CLOCKS_DYNAMIC)["locked"] is False
    assert parse_jetson_clocks("permission denied") == {"locked": UNKNOWN}
    assert parse_nvpmodel("garbage") == {"name": UNKNOWN, "id": UNKNOWN}
    assert parse_nv_tegra_release("nothing") is None
    assert parse_tegrastats("") == {}
    old = parse_tegrastats(XAVIER_TEGRASTATS)
    assert old["power_total_mw"] == 3000 and old["power_rails_mw"]["POM_5V_CPU"] == {"now_mw": 600, "avg_mw": 610}
    assert old["temperatures_c"]["GPU"] == 37.5
    smi = parse_nvidia_smi_query("Tesla T4, 535.1, 15360, [N/A], 5000, 1590, 5001, 7.5, P8, 70.00, 40\n")
    assert smi[0]["sm_clock_mhz"] == UNKNOWN and smi[0]["max_sm_clock_mhz"] == 1590.0
    x86 = parse_cpuinfo("processor\t: 0\nmodel name\t: Intel Xeon\nflags\t: avx2 avx512f amx_int8 avx512_vnni\n"
                        "physical id\t: 0\ncore id\t: 0\n\nprocessor\t: 1\nmodel name\t: Intel Xeon\n"
                        "flags\t: avx2\nphysical id\t: 0\ncore id\t: 0\n")
    assert x86["model"] == "Intel Xeon" and x86["physical_cores"] == 1 and x86["processors"] == 2
    assert x86["features"]["amx_int8"] and x86["features"]["avx512_vnni"] and not x86["features"]["avx_vnni"]


def test_tegrastats_sampler_collects_lines_during_a_run_and_stops_the_tool():
    import sys
    import time

    from se_deploy.envinfo import TegrastatsSampler

    lines = [ORIN_TEGRASTATS.splitlines()[0], ORIN_TEGRASTATS.splitlines()[0].replace("VDD_IN 6930mW", "VDD_IN 7930mW")]
    # A stand-in for the tegrastats binary: prints recorded lines, then streams forever like the real one.
    script = f"import time\nfor l in {lines!r}:\n    print(l, flush=True)\nwhile True:\n    time.sleep(0.05)\n"
    sampler = TegrastatsSampler(command=[sys.executable, "-u", "-c", script])
    t0 = time.monotonic()
    with sampler as s:
        deadline = time.monotonic() + 20
        while len(s._lines) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert time.monotonic() - t0 < 25 and sampler._proc is None  # the endless tool was stopped
    summary = sampler.summary()
    assert summary["available"] is True and summary["samples"] == 2
    assert summary["power_mw"] == {"mean": 7430.0, "max": 7930}
    assert summary["gpu_load_pct_mean"] == 12.0
    assert summary["rails_mw_mean"]["VDD_GPU_SOC"] == 2398.0
    assert summary["temperatures_c_max"]["tj"] == 46.5


def test_tegrastats_sampler_without_the_tool_is_a_no_op():
    from se_deploy.envinfo import TegrastatsSampler

    with TegrastatsSampler(command=["no-such-tegrastats-binary"]) as s:
        pass
    assert s.summary() == {"available": False, "samples": 0}
