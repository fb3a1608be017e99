"""Environment capture: real capture here, plus recorded outputs from machines we do not have."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from se_deploy.envinfo import (UNKNOWN, Probes, capture_environment, environment_rows, parse_cpuinfo,
                               parse_jetson_clocks, parse_nv_tegra_release, parse_nvidia_smi_query, parse_nvpmodel,
                               parse_tegrastats)

# Real files from Jetsons (sources in tests/fixtures/real/README.md)
JETSON = Path(__file__).resolve().parent / "fixtures" / "real" / "jetson"


def real(name: str) -> str:
    return (JETSON / name).read_text()


ORIN_MODEL = "NVIDIA Jetson AGX Orin Developer Kit\x00"  # as /proc/device-tree/model holds it: NUL-terminated
ORIN_RELEASE = real("nv_tegra_release_R36.4.3_first_lines_UNATTRIBUTED.txt")
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
ORIN_NVPMODEL = real("nvpmodel_q_agx_thor_jetpack-nixos_pr460.txt")  # no real Orin sample found; the format is shared
ORIN_CLOCKS_DYNAMIC = real("jetson_clocks_show_agx_orin_jp51_full_UNATTRIBUTED_catid_blog.txt")
# No real sample with locked clocks was found: this is the real output above with every MinFreq raised to its
# MaxFreq (and CurrentFreq with it), which is what jetson_clocks does to the CPU and GPU.
ORIN_CLOCKS_LOCKED = re.sub(r"MinFreq=(\d+) MaxFreq=(\d+) CurrentFreq=\d+", r"MinFreq=\2 MaxFreq=\2 CurrentFreq=\2",
                            ORIN_CLOCKS_DYNAMIC)
ORIN_TEGRASTATS = (real("tegrastats_agx_orin_64gb_jetson_exporter_issue14.txt").strip() + "\n"
                   + "04-11-2025 10:36:28 RAM 4321/62801MB (lfb")  # a second line cut by the timeout
XAVIER_TEGRASTATS = real("tegrastats_tx2_jp4_beszel_pr1631.txt")  # the pre-JetPack-5 form, without units
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
                        ort_providers=lambda: None,
                        cuda=lambda: {"binding": None, "device_count": UNKNOWN, "devices": [], "error": None})
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
                  "dpkg-query": "6.2+b77", "/usr/local/cuda/bin/nvcc": "Cuda compilation tools, release 12.6, V12.6.68",
                  "nvidia-smi": real("nvidia_smi_agx_orin_64gb_jp621_jetson-containers_issue1403.txt")},
        files={"/proc/device-tree/model": ORIN_MODEL, "/etc/nv_tegra_release": ORIN_RELEASE,
               "/proc/device-tree/compatible": "nvidia,p3737-0000+p3701-0000\x00nvidia,tegra234\x00nvidia,tegra23x\x00",
               "/proc/cpuinfo": ORIN_CPUINFO, "/proc/meminfo": ORIN_MEMINFO},
    )
    env = capture_environment(probes=rec.probes(
        tensorrt=lambda: {"version": "10.3.0", "dla_cores": 2, "import_error": None},
        cuda=lambda: {"binding": "cuda-python", "device_count": 1, "error": None,
                      "devices": [{"name": "Orin", "compute_capability": "8.7"}]}), tegrastats_s=1.5)
    j = env["jetson"]
    assert j["is_jetson"] is True and j["soc"] == "tegra234"
    assert j["model"] == "NVIDIA Jetson AGX Orin Developer Kit"
    assert j["l4t"] == "36.4.3" and j["jetpack"] == "6.2" and j["jetpack_tensorrt"] == "10.3.0"
    assert j["jetpack_python"] == "3.10" and j["jetpack_package"] == "6.2+b77"
    assert j["power_mode"] == "MAXN" and j["power_mode_id"] == 0
    assert j["clocks"]["locked"] is True and j["clocks"]["gpu_cur_mhz"] == 1300.5
    ts = j["tegrastats"]
    assert "power_total_mw" not in ts  # an AGX Orin has no board-input rail in tegrastats
    assert ts["power_rails_sum_mw"] == 2340 + 390 + 4025 + 301 and ts["gpu_load_pct"] == 0
    # the GPU comes from CUDA, never from nvidia-smi on a Jetson ("Orin (nvgpu)", memory "Not Supported")
    assert env["gpu"]["gpus"] == [{"name": "Orin", "compute_capability": "8.7", "integrated": True, "source": "CUDA"}]
    assert env["gpu"]["nvidia_smi"] is False and not any(argv[0] == "nvidia-smi" for argv, _ in rec.calls)
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
    assert rows["L4T / JetPack"] == "36.4.3 / 6.2 (ships TensorRT 10.3.0, Python 3.10)"
    assert rows["GPU 0"] == "Orin (CC 8.7, integrated; CUDA)"


def test_jetson_gpu_from_the_device_tree_when_cuda_cannot_tell():
    """JetPack 5 has no nvidia-smi, and CUDA may be unusable (cuda-python 13 on a CUDA 12 driver): the SoC says
    which GPU it is."""
    thor = real("jetson_raw_R38.2.0_agx_thor_jtop_error_log_issue711.txt")
    rec = Recorded(files={"/etc/nv_tegra_release": next(ln for ln in thor.splitlines() if ln.startswith("# R")),
                          "/proc/device-tree/compatible": "nvidia,p4071-0000+p3834-0008nvidia,p3834-0008nvidia,tegra264"})
    env = capture_environment(probes=rec.probes(cuda=lambda: {"binding": "cuda-python", "device_count": UNKNOWN,
                                                              "devices": [], "error": "cudaErrorInsufficientDriver"}))
    assert env["gpu"]["gpus"] == [{"name": "Thor", "compute_capability": "11.0", "integrated": True,
                                   "source": "device tree (Tegra SoC)"}]
    assert env["gpu"]["cuda"]["error"] == "cudaErrorInsufficientDriver"
    j = env["jetson"]
    assert (j["l4t"], j["jetpack"], j["jetpack_tensorrt"], j["jetpack_python"]) == ("38.2.0", "7.0", "10.13.3", "3.12")


@pytest.mark.parametrize("name, l4t, jetpack, trt", [
    ("nv_tegra_release_R35.3.1_orin_nano_jetson_stats_issue400.txt", "35.3.1", "5.1.1", "8.5.2"),
    ("nv_tegra_release_R36.3.0_full_UNATTRIBUTED.txt", "36.3.0", "6.0", "8.6.2"),
    ("nv_tegra_release_R36.4.3_first_lines_UNATTRIBUTED.txt", "36.4.3", "6.2", "10.3.0"),
])
def test_l4t_release_files_map_to_jetpack_and_tensorrt(name, l4t, jetpack, trt):
    from se_deploy.envinfo import jetson_release

    assert parse_nv_tegra_release(real(name)) == l4t
    rel = jetson_release(l4t)
    assert (rel["jetpack"], rel["tensorrt"]) == (jetpack, trt)


@pytest.mark.parametrize("name, l4t, jetpack, soc, model", [
    ("jetson_raw_R35.3.1_orin_nano_jtop_error_log_issue400.txt", "35.3.1", "5.1.1", "tegra234",
     "NVIDIA Orin Nano Developer Kit"),
    ("jetson_raw_R38.2.0_agx_thor_jtop_error_log_issue711.txt", "38.2.0", "7.0", "tegra264",
     "NVIDIA Jetson AGX Thor Developer Kit"),
    ("jetson_raw_R39.2.0_agx_orin_jp72_jtop_error_log_issue864.txt", "39.2.0", "7.2", None,
     "NVIDIA Jetson AGX Orin Developer Kit"),  # its compatible line was cut before the SoC entry
])
def test_jetson_identity_from_real_raw_files(name, l4t, jetpack, soc, model):
    """jtop's raw dumps: the release line (R39 dates read 'Mon Jun  1 09:28:48 PM UTC 2026'), the model and the
    device-tree compatible list as real boards hold them."""
    from se_deploy.envinfo import jetson_release, parse_device_tree_compatible

    text = real(name)
    lines = text.splitlines()
    model_line = lines[lines.index(next(ln for ln in lines if ln.endswith("devicetree/base/model")
                                        or ln.endswith("devicetree/base/model:"))) + 1]
    compatible = lines[lines.index(next(ln for ln in lines if "device-tree/compatible" in ln)) + 1]
    rec = Recorded(files={"/etc/nv_tegra_release": text[text.index("# R"):].splitlines()[0] + "\n",
                          "/sys/firmware/devicetree/base/model": model_line + "\x00",
                          "/proc/device-tree/compatible": compatible})
    j = capture_environment(probes=rec.probes(), tegrastats_s=0)["jetson"]
    assert j["is_jetson"] and j["l4t"] == l4t and j["jetpack"] == jetpack and j["model"] == model
    assert parse_device_tree_compatible(compatible) == soc and j["soc"] == (soc or UNKNOWN)
    assert jetson_release(l4t)["jetpack"] == jetpack


def test_jetson_release_tool_output_agrees_with_the_l4t_table():
    """jetson_release (jtop) printed the installed TensorRT on real boards: the table says the same."""
    from se_deploy.envinfo import jetson_release

    for name in ("jetson_release_L4T36.4.3_orin_nx_issue603.txt", "jetson_release_L4T38.4.0_agx_thor_issue820.txt"):
        text = real(name)
        l4t = re.search(r"L4T: ([\d.]+)", text).group(1)
        trt = re.search(r"TensorRT: ([\d.]+)", text).group(1)
        assert trt.startswith(jetson_release(l4t)["tensorrt"]), (name, trt)


def test_l4t_to_jetpack_table_matches_the_real_map():
    from se_deploy.envinfo import JETPACK_BY_L4T

    real_map = dict(re.findall(r'"(\d+\.\d+\.\d+)": "([^"]+)"', real("l4t_to_jetpack_map_jetson_stats_jetson_variables_py"
                                                                          "_excerpt.txt")))
    for l4t, jp in JETPACK_BY_L4T.items():
        assert real_map[l4t].split(" ")[0] == jp.split(" ")[0], l4t


@pytest.mark.parametrize("name, expected", [
    ("tegrastats_agx_orin_64gb_jetson_exporter_issue14.txt",
     {"ram_used_mb": 4321, "ram_total_mb": 62801, "gpu_load_pct": 0, "power_rails_sum_mw": 7056}),
    ("tegrastats_agx_orin_jp51_UNATTRIBUTED_catid_blog.txt", {"gpu_load_pct": 0, "power_rails_sum_mw": 7132}),
    ("tegrastats_agx_orin_jp72_r39.2_jetson_stats_test.txt",
     {"ram_used_mb": 20642, "gpu_load_pct": 12, "gpu_freq_mhz": 1300, "power_rails_sum_mw": 5139 + 3268 + 5500}),
    ("tegrastats_tx2_jp4_beszel_pr1631.txt", {"gpu_load_pct": 0, "power_total_mw": 5297}),
    ("tegrastats_nano_jp46_jetson_stats_issue187.txt", {"ram_used_mb": 1689, "gpu_load_pct": 0}),
])
def test_tegrastats_lines_from_real_boards(name, expected):
    got = parse_tegrastats(real(name))
    for k, v in expected.items():
        assert got[k] == v, (k, got.get(k))
    temps = got.get("temperatures_c", {})
    assert temps and all(t > -100 for t in temps.values())  # -256C marks a sensor that is off
    assert "NC" not in got.get("power_rails_mw", {})


def test_jetson_clocks_from_real_boards():
    full = parse_jetson_clocks(ORIN_CLOCKS_DYNAMIC)
    assert full["locked"] is False and full["gpu_max_mhz"] == 1300.5 and full["gpu_cur_mhz"] == 306.0
    assert full["emc_cur_mhz"] == 2133.0 and full["cpu_max_mhz"] == 2201.6
    for name in ("jetson_clocks_show_orin_nx_partial_orne-box_issue121.txt",
                 "jetson_clocks_show_agx_orin_jp5_partial_jetson_stats_issue381.txt"):
        assert parse_jetson_clocks(real(name))["locked"] is False  # CPUs scale (min < max)
    assert parse_jetson_clocks(ORIN_CLOCKS_LOCKED)["locked"] is True


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
    assert parse_jetson_clocks("permission denied") == {"locked": UNKNOWN}
    assert parse_nvpmodel("garbage") == {"name": UNKNOWN, "id": UNKNOWN}
    assert parse_nvpmodel(ORIN_NVPMODEL) == {"name": "MAXN", "id": 0}
    assert parse_nv_tegra_release("nothing") is None
    assert parse_tegrastats("") == {}
    old = parse_tegrastats(XAVIER_TEGRASTATS)
    assert old["power_total_mw"] == 5297 and old["power_rails_mw"]["VDD_SYS_CPU"] == {"now_mw": 1917, "avg_mw": 1917}
    assert old["temperatures_c"]["GPU"] == 39.5
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

    orin_nx = real("tegrastats_tx2_jp4_beszel_pr1631.txt").strip()  # a board with a VDD_IN (total) rail
    lines = [orin_nx, orin_nx.replace("VDD_IN 5297/5297", "VDD_IN 6297/6297")]
    # A stand-in for the tegrastats binary: prints recorded lines, then streams forever like the real one.
    script = f"import time\nfor l in {lines!r}:\n    print(l, flush=True)\nwhile True:\n    time.sleep(0.05)\n"
    sampler = TegrastatsSampler(command=[sys.executable, "-u", "-c", script])
    with sampler as s:
        tool = s._proc
        deadline = time.monotonic() + 20
        while len(s._lines) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert sampler._proc is None and tool.poll() is not None  # the endless tool was stopped, not left running
    summary = sampler.summary()
    assert summary["available"] is True and summary["samples"] == 2
    assert summary["power_mw"] == {"mean": 5797.0, "max": 6297}
    assert summary["gpu_load_pct_mean"] == 0.0
    assert summary["rails_mw_mean"]["VDD_SYS_GPU"] == 182.0
    assert summary["temperatures_c_max"]["thermal"] == 41.3


def test_tegrastats_sampler_on_a_board_without_a_total_rail_says_so():
    import sys

    from se_deploy.envinfo import TegrastatsSampler

    line = real("tegrastats_agx_orin_64gb_jetson_exporter_issue14.txt").strip()
    script = f"import time\nprint({line!r}, flush=True)\nwhile True:\n    time.sleep(0.05)\n"
    with TegrastatsSampler(command=[sys.executable, "-u", "-c", script]) as s:
        import time

        deadline = time.monotonic() + 20
        while not s._lines and time.monotonic() < deadline:
            time.sleep(0.05)
    summary = s.summary()
    assert "power_mw" not in summary and summary["rails_sum_mw"] == {"mean": 7056.0, "max": 7056}


def test_tegrastats_sampler_without_the_tool_is_a_no_op():
    from se_deploy.envinfo import TegrastatsSampler

    with TegrastatsSampler(command=["no-such-tegrastats-binary"]) as s:
        pass
    assert s.summary() == {"available": False, "samples": 0}


class _Runs:
    """Records the commands locked_clocks runs (jetson_clocks itself is never run here) and answers with exit codes."""

    def __init__(self, codes=None):
        self.calls, self.codes = [], codes or {}

    def __call__(self, argv, **kw):
        self.calls.append(list(argv))
        from types import SimpleNamespace

        key = next((k for k in self.codes if k in " ".join(argv)), None)
        return SimpleNamespace(returncode=self.codes.get(key, 0))


def _which(found=("jetson_clocks", "sudo")):
    return lambda name: f"/usr/bin/{name}" if name in found else None


def test_lock_clocks_stores_locks_and_restores():
    from se_deploy.envinfo import locked_clocks

    runs, notes = _Runs(), []
    with locked_clocks(True, log=notes.append, run=runs, which=_which(), is_root=lambda: True) as state:
        assert state["locked"] is True
        assert runs.calls[0][:2] == ["/usr/bin/jetson_clocks", "--store"] and runs.calls[1] == ["/usr/bin/jetson_clocks"]
    store = runs.calls[0][2]
    assert runs.calls[2] == ["/usr/bin/jetson_clocks", "--restore", store] and state["restored"] is True
    assert notes == [] and not Path(store).exists()


def test_lock_clocks_through_passwordless_sudo():
    from se_deploy.envinfo import locked_clocks

    runs = _Runs()
    with locked_clocks(True, run=runs, which=_which(), is_root=lambda: False) as state:
        pass
    assert runs.calls[0] == ["sudo", "-n", "true"] and runs.calls[1][:3] == ["sudo", "-n", "/usr/bin/jetson_clocks"]
    assert state["locked"] and state["restored"]


@pytest.mark.parametrize("which, codes, reason", [
    (_which(("sudo",)), {}, "jetson_clocks not found (not a Jetson?)"),
    (_which(), {"sudo -n true": 1}, "jetson_clocks needs root: run as root, or allow it without a password"),
    (_which(("jetson_clocks",)), {}, "jetson_clocks needs root"),
])
def test_lock_clocks_where_not_permitted_is_one_line_and_runs_unlocked(which, codes, reason):
    from se_deploy.envinfo import locked_clocks

    runs, notes = _Runs(codes), []
    with locked_clocks(True, log=notes.append, run=runs, which=which, is_root=lambda: False) as state:
        assert state["locked"] is False and state["reason"].startswith(reason)
    assert len(notes) == 1 and notes[0].startswith("note: --lock-clocks not applied: " + reason)
    assert not any("jetson_clocks" in " ".join(c) for c in runs.calls)  # nothing changed on the board


def test_a_failed_restore_is_said():
    from se_deploy.envinfo import locked_clocks

    runs, notes = _Runs({"--restore": 1}), []
    with locked_clocks(True, log=notes.append, run=runs, which=_which(), is_root=lambda: True) as state:
        pass
    assert state["restored"] is False and "the clocks stay locked until reboot" in notes[0]


def test_lock_clocks_off_runs_nothing():
    from se_deploy.envinfo import locked_clocks

    runs = _Runs()
    with locked_clocks(False, run=runs, which=_which(), is_root=lambda: True) as state:
        pass
    assert runs.calls == [] and state == {"requested": False, "locked": False, "reason": None}


def test_l4t_releases_without_a_record_say_unknown_rather_than_a_neighbours_tensorrt():
    from se_deploy.envinfo import jetson_release

    assert jetson_release("39.2.0")["tensorrt"] == "10.16"  # JetPack 7.2 (OE4T/meta-tegra PR 2224)
    assert jetson_release("39.2.2")["tensorrt"] == UNKNOWN  # a later 7.2.x may bring TensorRT 11
    assert jetson_release("36.4.7")["tensorrt"] == "10.3.0"  # the whole R36.4 line ships 10.3
