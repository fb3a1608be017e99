"""``se-deploy doctor`` as a library call: what can run on this machine, and what to install for the rest."""

from __future__ import annotations

from se_deploy.envinfo import capture_environment
from se_deploy.runtime.registry import install_hint, list_backends

UNKNOWN = "unknown"


def diagnose(env: dict, backends: list[dict]) -> list[dict]:
    """Missing pieces as ``{"component", "why", "install"}``, most important first."""
    jetson = bool(env.get("jetson", {}).get("is_jetson")) if isinstance(env.get("jetson"), dict) else False
    missing: list[dict] = []
    for b in backends:
        if not b["available"]:
            missing.append({"component": b["name"], "why": b["reason"], "install": b["install"]})
    gpu = env.get("gpu") if isinstance(env.get("gpu"), dict) else {}
    has_gpu = bool(gpu.get("gpus")) or jetson
    trt = next((b for b in backends if b["name"] == "tensorrt"), None)
    apis = (trt or {}).get("details", {}).get("cuda_apis", [])
    if not apis and not any(m["install"] == install_hint("cuda-api", jetson) for m in missing):
        missing.append({"component": "cuda-python / pycuda",
                        "why": "the TensorRT runner needs one of them for device buffers and streams",
                        "install": install_hint("cuda-api", jetson)})
    if not has_gpu:
        missing.append({"component": "NVIDIA GPU",
                        "why": "no GPU found (nvidia-smi missing or silent); TensorRT engines must be built "
                               "on the target device",
                        "install": install_hint("gpu-driver", jetson)})
    providers = env.get("onnxruntime_providers")
    if has_gpu and isinstance(providers, list) and "CUDAExecutionProvider" not in providers:
        missing.append({"component": "onnxruntime CUDA provider",
                        "why": "a GPU is present but the installed onnxruntime is CPU-only",
                        "install": install_hint("onnxruntime-gpu", jetson)})
    if jetson:
        j = env["jetson"]
        if j.get("power_mode") == UNKNOWN:
            missing.append({"component": "nvpmodel", "why": "the power mode could not be read",
                            "install": "sudo nvpmodel -q (part of JetPack)"})
        if j.get("clocks", {}).get("locked") is not True:
            missing.append({"component": "locked clocks",
                            "why": "clocks are not locked (or unreadable), so latency varies with DVFS",
                            "install": "sudo jetson_clocks  (check with sudo jetson_clocks --show)"})
    return missing


def doctor_report(env: dict | None = None, backends: list | None = None) -> dict:
    """The full doctor report as a JSON-ready dict (``env``/``backends`` injectable for tests)."""
    if env is None:
        env = capture_environment(tegrastats_s=1.0)
    jetson_info = env.get("jetson") if isinstance(env.get("jetson"), dict) else {}
    if backends is None:
        backends = list_backends(jetson=bool(jetson_info.get("is_jetson")))
    bdicts = [b.to_dict() if hasattr(b, "to_dict") else dict(b) for b in backends]
    gpu = env.get("gpu") if isinstance(env.get("gpu"), dict) else {}
    trt_env = env.get("tensorrt") if isinstance(env.get("tensorrt"), dict) else {}
    return {
        "backends": bdicts,
        "onnxruntime_providers": env.get("onnxruntime_providers", UNKNOWN),
        "gpus": gpu.get("gpus", []),
        "cuda": {"driver": gpu.get("cuda_driver_version", UNKNOWN), "toolkit": gpu.get("cuda_toolkit_version", UNKNOWN)},
        "tensorrt": trt_env.get("version", UNKNOWN),
        "dla_cores": trt_env.get("dla_cores", UNKNOWN),
        "jetson": jetson_info,
        "missing": diagnose(env, bdicts),
        "environment": env,
    }


__all__ = ["UNKNOWN", "diagnose", "doctor_report"]
