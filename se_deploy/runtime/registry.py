"""Backends by name: what is installed here, and how to make a runner for an artifact.

``create_runner("onnxruntime", "model.onnx", threads=2)`` is the one way bench/,
accuracy and the pipeline obtain a runner; ``list_backends()`` tells ``doctor`` and the
report what can run on this machine and what to install for the rest.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import os
import shutil
from dataclasses import dataclass, field
from typing import Any, Callable

from se_deploy.runtime.base import Runner
from se_deploy.errors import MissingDependencyError, UsageError


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
    from se_deploy.envinfo import _read_file

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
        "cuda-api": ("pip install pycuda (with /usr/local/cuda/bin on PATH) or pip install cuda-python"
                     if jetson else "pip install cuda-python (or pip install pycuda)"),
        "gpu-driver": ("reflash or update JetPack (sudo apt install nvidia-jetpack)" if jetson else
                       "install the NVIDIA driver (nvidia-smi must work), or build on the target device: "
                       "se-deploy build-engine --print-trtexec"),
        "onnxruntime": "pip install onnxruntime",
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


# --------------------------------------------------------------------------- factories
def _ort_factory(artifact, options: dict) -> Runner:
    from se_deploy.runtime.onnxruntime import OrtConfig, OrtRunner

    # A runner asked for by name serves deployment and benchmarks: use the GPU providers when
    # installed. (OrtConfig's own default stays CPU, the reference for numerical proofs.)
    options.setdefault("providers", "auto")
    return OrtRunner(artifact, _build_config(OrtConfig, "onnxruntime", options))


_TORCH_MODEL_KWARGS = ("num_classes", "reduction", "se_gate", "se_fc")


def _torch_factory(artifact, options: dict) -> Runner:
    from se_deploy.runtime.torch import TorchConfig, TorchRunner

    model_kwargs = {k: options.pop(k) for k in list(options) if k in _TORCH_MODEL_KWARGS}
    if "input_shape" in options and isinstance(options["input_shape"], str):
        from se_deploy._util import parse_shape

        options["input_shape"] = parse_shape(options["input_shape"])
    return TorchRunner(artifact, _build_config(TorchConfig, "torch", options, extra=_TORCH_MODEL_KWARGS),
                       **model_kwargs)


def _trt_factory(artifact, options: dict) -> Runner:
    try:
        module = importlib.import_module("se_deploy.runtime.tensorrt.runner")
    except ModuleNotFoundError as e:
        if e.name == "se_deploy.runtime.tensorrt.runner":
            raise MissingDependencyError("the TensorRT runner is not part of this se-deploy install") from None
        raise
    cls = module.TrtRunner
    params = inspect.signature(cls).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    # Host thread count has no meaning for a GPU engine; callers that time every backend pass it anyway.
    if "threads" in options and "threads" not in params and not takes_any:
        options.pop("threads")
    unknown = [k for k in options if k not in params and not takes_any]
    if unknown:
        allowed = sorted(k for k in params if k not in ("self", "plan", "plan_path", "artifact", "path"))
        raise UsageError(f"unknown tensorrt option(s) {unknown}; allowed: {', '.join(allowed)}")
    return cls(artifact, **options)


def _build_config(cls, backend: str, options: dict, extra: tuple[str, ...] = ()):
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in options if k not in names]
    if unknown:
        raise UsageError(f"unknown {backend} option(s) {unknown}; allowed: {', '.join(sorted(names + list(extra)))}")
    return cls(**options)


@dataclass(frozen=True)
class _Backend:
    name: str
    probe: Callable[[bool], BackendInfo]
    factory: Callable[[Any, dict], Runner]


_BACKENDS: dict[str, _Backend] = {}


def register_backend(name: str, probe: Callable[[bool], BackendInfo], factory: Callable[[Any, dict], Runner]) -> None:
    if name in _BACKENDS:
        raise ValueError(f"backend {name!r} registered twice")
    _BACKENDS[name] = _Backend(name, probe, factory)


register_backend("onnxruntime", _probe_onnxruntime, _ort_factory)
register_backend("tensorrt", _probe_tensorrt, _trt_factory)
register_backend("torch", _probe_torch, _torch_factory)


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
    (``OrtConfig``, ``TorchConfig``, ``TrtRunner`` arguments); an unknown one is refused.
    """
    if backend not in _BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose one of {', '.join(_BACKENDS)}")
    return _BACKENDS[backend].factory(artifact, dict(options))


__all__ = ["BackendInfo", "backend_names", "create_runner", "cuda_apis", "install_hint", "is_jetson",
           "list_backends", "register_backend"]
