"""`se-deploy doctor`: real output on this machine, and the diagnosis for machines we do not have."""

from __future__ import annotations

import json

import onnxruntime
from typer.testing import CliRunner

from se_deploy.cli import app
from se_deploy.commands.doctor import _print_report
from se_deploy.doctor import diagnose, doctor_report
from se_deploy.runtime.registry import BackendInfo
from se_deploy.envinfo import capture_environment
from tests.test_envinfo import (ORIN_CLOCKS_DYNAMIC, ORIN_MODEL, ORIN_NVPMODEL, ORIN_RELEASE, SMI_HEADER, SMI_QUERY,
                                Recorded)

runner = CliRunner()


def _has_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def test_doctor_lists_backends_and_what_is_missing():
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"ok       onnxruntime {onnxruntime.__version__}" in out
    assert "CPUExecutionProvider" in out
    if not _has_tensorrt():
        assert "missing  tensorrt" in out
        assert "install: pip install tensorrt" in out or "install: sudo apt install python3-libnvinfer" in out
    assert "CPU features" in out and "DLA cores" in out


def test_doctor_json_is_machine_readable():
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    by_name = {b["name"]: b for b in report["backends"]}
    assert by_name["onnxruntime"]["version"] == onnxruntime.__version__
    assert "CPUExecutionProvider" in report["onnxruntime_providers"]
    assert set(report) >= {"gpus", "cuda", "tensorrt", "dla_cores", "jetson", "missing", "environment"}
    if not _has_tensorrt():
        (trt,) = [m for m in report["missing"] if m["component"] == "tensorrt"]
        assert "tensorrt" in trt["install"]


def _jetson_env(clocks: str):
    rec = Recorded(commands={"nvpmodel": ORIN_NVPMODEL, "jetson_clocks": clocks},
                   files={"/proc/device-tree/model": ORIN_MODEL, "/etc/nv_tegra_release": ORIN_RELEASE})
    return capture_environment(probes=rec.probes(ort_providers=lambda: ["CPUExecutionProvider"]), tegrastats_s=0)


def test_jetson_diagnosis_uses_jetpack_install_commands():
    env = _jetson_env(ORIN_CLOCKS_DYNAMIC)
    backends = [BackendInfo("onnxruntime", True, "1.20.0", details={"providers": ["CPUExecutionProvider"]}),
                BackendInfo("tensorrt", False, reason="TensorRT Python bindings not importable (ImportError)",
                            install="sudo apt install python3-libnvinfer", details={"cuda_apis": []}),
                BackendInfo("torch", True, "2.5.0")]
    report = doctor_report(env, backends)
    missing = {m["component"]: m for m in report["missing"]}
    assert missing["tensorrt"]["install"].startswith("sudo apt install python3-libnvinfer")
    assert "pycuda" in missing["cuda-python / pycuda"]["install"]
    assert "JetPack" in missing["onnxruntime CUDA provider"]["install"]
    assert missing["locked clocks"]["install"].startswith("sudo jetson_clocks")
    assert "NVIDIA GPU" not in missing  # the Jetson's integrated GPU counts
    assert report["jetson"]["power_mode"] == "MAXN"


class _Capture:
    def __init__(self):
        self.lines = []

    def __call__(self, text, **kw):
        self.lines.append(text)


def test_a_complete_gpu_machine_has_nothing_missing():
    rec = Recorded(commands={"nvidia-smi": SMI_QUERY})
    env = capture_environment(probes=rec.probes(
        run=lambda argv, t: SMI_HEADER if argv == ["nvidia-smi"] else rec.run(argv, t),
        ort_providers=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
        tensorrt=lambda: {"version": "10.16.0", "dla_cores": 0, "import_error": None}))
    backends = [BackendInfo("onnxruntime", True, "1.22.0", details={"providers": ["CUDAExecutionProvider"]}),
                BackendInfo("tensorrt", True, "10.16.0", details={"cuda_apis": ["cuda-python"]}),
                BackendInfo("torch", True, "2.7.0")]
    report = doctor_report(env, backends)
    assert report["missing"] == []
    assert report["tensorrt"] == "10.16.0" and report["dla_cores"] == 0 and report["cuda"]["driver"] == "12.4"
    out = _Capture()
    _print_report(report, out)
    text = "\n".join(out.lines)
    assert "ok       tensorrt 10.16.0  CUDA API: cuda-python" in text
    assert "Nothing missing" in text and "NVIDIA H100" in text


def test_diagnose_reports_unavailable_backend_reason_verbatim():
    env = capture_environment(probes=Recorded().probes())
    missing = diagnose(env, [BackendInfo("torch", False, reason="cannot import torch (ImportError)",
                                         install="pip install torch").to_dict()])
    assert missing[0] == {"component": "torch", "why": "cannot import torch (ImportError)",
                          "install": "pip install torch"}


def test_jetson_venv_that_cannot_see_jetpacks_tensorrt_says_how_to_fix_it():
    """JetPack installs TensorRT's bindings in the system Python; a venv made without --system-site-packages
    cannot import them. doctor names the cause and the fix, and the trtexec that works meanwhile."""
    env = _jetson_env(ORIN_CLOCKS_DYNAMIC)
    backends = [BackendInfo("tensorrt", False, reason="TensorRT Python bindings not importable (ModuleNotFoundError)",
                            install="sudo apt install python3-libnvinfer", details={"cuda_apis": []})]
    system = {"paths": ["/usr/lib/python3.10/dist-packages/tensorrt"], "isolated_venv": True}
    tx = {"path": "/usr/src/tensorrt/bin/trtexec", "version": "10.3.0"}
    report = doctor_report(env, backends, system_trt=system, trtexec=tx)
    trt = next(m for m in report["missing"] if m["component"] == "tensorrt")
    assert "/usr/lib/python3.10/dist-packages/tensorrt" in trt["why"] and "--system-site-packages" in trt["why"]
    assert "bash scripts/setup.sh" in trt["install"]
    assert "bench --backend trtexec use /usr/src/tensorrt/bin/trtexec" in trt["why"]
    assert report["trtexec"] == tx
    out = _Capture()
    _print_report(report, out)
    assert "ok       trtexec 10.3.0 (/usr/src/tensorrt/bin/trtexec)" in "\n".join(out.lines)
    assert "ships TensorRT 10.3.0, Python 3.10" in "\n".join(out.lines)


def test_tensorrt_older_than_8_6_is_named_with_the_jetpack_that_brings_a_supported_one():
    env = _jetson_env(ORIN_CLOCKS_DYNAMIC)
    backends = [BackendInfo("tensorrt", True, "8.5.2.2", details={"cuda_apis": ["pycuda"]})]
    report = doctor_report(env, backends, system_trt={"paths": [], "isolated_venv": False}, trtexec={"path": None})
    (old,) = [m for m in report["missing"] if m["component"] == "tensorrt version"]
    assert old["why"].startswith("TensorRT 8.5.2.2 is older than 8.6") and "JetPack 6.0" in old["why"]
