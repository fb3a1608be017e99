"""Backends by name: what is installed here, and how to make a runner for an artifact.

``create_runner("onnxruntime", "model.onnx", threads=2)`` is the one way bench/,
accuracy and the pipeline obtain a runner; ``list_backends()`` tells ``doctor`` and the
report what can run on this machine and what to install for the rest.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import shutil
from dataclasses import dataclass, field
from typing import Any, Callable

from se_deploy.envinfo import _read_file
from se_deploy.errors import UsageError
from se_deploy.runtime.base import Capabilities, Runner
from se_deploy.runtime.openvino import device_names, host_precision


@dataclass(frozen=True)
class BackendInfo:
    """Whether a backend can run here. ``reason`` and ``install`` are set when it cannot."""
    name: str
    available: bool
    version: str | None = None
    reason: str | None = None
    install: str | None = None
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- platform hints
def is_jetson(read: Callable[[str], str | None] | None = None) -> bool:
    read = read or _read_file
    if read("/etc/nv_tegra_release"):
        return True
    model = (read("/proc/device-tree/model") or "").lower()
    return "jetson" in model or "drive" in model


def install_hint(component: str, jetson: bool) -> str:
    """The command that installs ``component`` on this kind of machine."""
    hints = {
        "tensorrt": ("sudo apt install python3-libnvinfer (TensorRT comes with JetPack; a venv needs "
                     "--system-site-packages to see it)") if jetson else
                    "pip install tensorrt (needs an NVIDIA GPU and driver)",
        # cuda-python 13 links the CUDA 13 runtime: on JetPack 6 (CUDA 12.x) it cannot reach the driver
        "cuda-api": ("pip install 'cuda-python==12.*' on JetPack 6 (CUDA 12), 'cuda-python==13.*' on JetPack 7 "
                     "(CUDA 13), or pip install pycuda with /usr/local/cuda/bin on PATH"
                     if jetson else "pip install cuda-python (or pip install pycuda)"),
        "gpu-driver": ("reflash or update JetPack (sudo apt install nvidia-jetpack)" if jetson else
                       "install the NVIDIA driver (nvidia-smi must work), or build on the target device: "
                       "se-deploy build-engine --print-trtexec"),
        "onnxruntime": "pip install onnxruntime",
        "openvino": ("pip install 'se-deploy[openvino]' (PyPI has aarch64 wheels: OpenVINO runs on the Jetson's "
                     "Arm CPU, not its GPU)" if jetson else "pip install 'se-deploy[openvino]'"),
        "onnxruntime-gpu": ("install NVIDIA's onnxruntime-gpu wheel built for your JetPack release "
                            "(a plain pip install gets a CPU-only build on aarch64)" if jetson else
                            "pip uninstall onnxruntime && pip install onnxruntime-gpu"),
        "torch": ("NVIDIA's PyTorch wheel built for your JetPack release" if jetson else
                  "pip install torch"),
    }
    return hints[component]


def _gpu_visible() -> bool:
    return shutil.which("nvidia-smi") is not None or os.path.exists("/dev/nvidia0") \
        or os.path.exists("/dev/nvhost-ctrl")


def cuda_apis() -> list[str]:
    """The CUDA Python bindings the TensorRT runner can use, in preference order (not imported)."""
    found = []
    for name, module in (("cuda-python", "cuda.bindings"), ("cuda-python", "cuda.cudart"), ("pycuda", "pycuda")):
        try:
            if importlib.util.find_spec(module) is not None and name not in found:
                found.append(name)
        except (ImportError, ValueError):
            continue
    return found


# --------------------------------------------------------------------------- probes
def _probe_onnxruntime(jetson: bool) -> BackendInfo:
    try:
        import onnxruntime as ort
    except Exception as e:
        return BackendInfo("onnxruntime", False, reason=f"cannot import onnxruntime ({type(e).__name__})",
                           install=install_hint("onnxruntime", jetson))
    providers = list(ort.get_available_providers())
    return BackendInfo("onnxruntime", True, version=ort.__version__, details={"providers": providers})


def _probe_torch(jetson: bool) -> BackendInfo:
    try:
        import torch
    except Exception as e:
        return BackendInfo("torch", False, reason=f"cannot import torch ({type(e).__name__})",
                           install=install_hint("torch", jetson))
    return BackendInfo("torch", True, version=torch.__version__,
                       details={"cuda": bool(torch.cuda.is_available()), "cuda_version": torch.version.cuda})


def _probe_openvino(jetson: bool) -> BackendInfo:
    try:
        import openvino as ov
    except Exception as e:
        return BackendInfo("openvino", False, reason=f"cannot import openvino ({type(e).__name__})",
                           install=install_hint("openvino", jetson))
    core = ov.Core()
    devices = device_names(core)
    details: dict[str, Any] = {"build": ov.get_version(), "devices": devices}
    if "CPU" in devices:
        choice = host_precision()
        details["cpu_capabilities"] = list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        details["cpu_precision"] = {"precision": choice.precision, "reason": choice.reason}
    return BackendInfo("openvino", True, version=ov.get_version().split("-")[0], details=details)


def _probe_tensorrt(jetson: bool) -> BackendInfo:
    apis = cuda_apis()
    details: dict[str, Any] = {"cuda_apis": apis, "gpu_visible": _gpu_visible()}
    try:
        trt = importlib.import_module("tensorrt")
        version = str(getattr(trt, "__version__", "unknown"))
    except Exception as e:
        return BackendInfo("tensorrt", False, reason=f"TensorRT Python bindings not importable ({type(e).__name__})",
                           install=install_hint("tensorrt", jetson), details=details)
    if not apis:
        return BackendInfo("tensorrt", False, version=version,
                           reason="no CUDA Python bindings (pycuda or cuda-python) for device buffers",
                           install=install_hint("cuda-api", jetson), details=details)
    if not details["gpu_visible"]:
        return BackendInfo("tensorrt", False, version=version, reason="no NVIDIA GPU visible",
                           install=install_hint("gpu-driver", jetson), details=details)
    return BackendInfo("tensorrt", True, version=version, details=details)


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class _Backend:
    """A backend by name: how to probe it, where its runner class lives (imported on first use,
    so an optional backend costs nothing until asked for), and option defaults for runners
    made by name."""

    name: str
    probe: Callable[[bool], BackendInfo]
    runner: str  # "module:Class"
    defaults: dict = field(default_factory=dict)


_BACKENDS: dict[str, _Backend] = {}


def register_backend(name: str, probe: Callable[[bool], BackendInfo], runner: str, *,
                     defaults: dict | None = None) -> None:
    if name in _BACKENDS:
        raise ValueError(f"backend {name!r} registered twice")
    _BACKENDS[name] = _Backend(name, probe, runner, dict(defaults or {}))


# A runner asked for by name serves deployment and benchmarks: onnxruntime then uses the GPU
# providers when installed. (OrtConfig's own default stays CPU, the reference for numerical proofs.)
register_backend("onnxruntime", _probe_onnxruntime, "se_deploy.runtime.onnxruntime:OrtRunner",
                 defaults={"providers": "auto"})
register_backend("openvino", _probe_openvino, "se_deploy.runtime.openvino:OvRunner")
register_backend("tensorrt", _probe_tensorrt, "se_deploy.runtime.tensorrt.runner:TrtRunner")
register_backend("torch", _probe_torch, "se_deploy.runtime.torch:TorchRunner")


def _entry(backend: str) -> _Backend:
    if backend not in _BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose one of {', '.join(_BACKENDS)}")
    return _BACKENDS[backend]


def runner_class(backend: str) -> type[Runner]:
    """The runner class of ``backend`` (importing its module; the backend's own library is not imported)."""
    module, _, cls = _entry(backend).runner.partition(":")
    return getattr(importlib.import_module(module), cls)


def capabilities(backend: str) -> Capabilities:
    """What ``backend``'s runner honours (threads, spinning, profiling)."""
    return runner_class(backend).capabilities


def backend_names() -> list[str]:
    return list(_BACKENDS)


def list_backends(*, jetson: bool | None = None) -> list[BackendInfo]:
    """Every registered backend with its version, or why it cannot run here and how to fix that."""
    jetson = is_jetson() if jetson is None else jetson
    out = []
    for b in _BACKENDS.values():
        try:
            out.append(b.probe(jetson))
        except Exception as e:  # a probe must never take doctor down with it
            out.append(BackendInfo(b.name, False, reason=f"probe failed: {type(e).__name__}: {e}"))
    return out


def create_runner(backend: str, artifact, **options) -> Runner:
    """A runner (not yet activated; use ``with``) for ``artifact`` on ``backend``.

    ``artifact``: an ONNX path/ModelProto (onnxruntime), a plan path (tensorrt), an
    ``nn.Module`` or zoo model name (torch). ``options`` are the backend's config fields
    (``OrtConfig``, ``TorchConfig``, ``TrtConfig``); an unknown one is refused. Ask
    :func:`capabilities` before passing ``threads`` or ``allow_spinning``.
    """
    entry = _entry(backend)
    return runner_class(backend).from_options(artifact, {**entry.defaults, **options})


__all__ = ["BackendInfo", "backend_names", "capabilities", "create_runner", "cuda_apis", "install_hint", "is_jetson",
           "list_backends", "register_backend", "runner_class"]
