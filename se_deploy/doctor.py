"""``se-deploy doctor`` as a library call: what can run on this machine, and what to install for the rest."""

from __future__ import annotations

import glob
import sys

from se_deploy.envinfo import capture_environment
from se_deploy.errors import SeDeployError
from se_deploy.runtime.registry import install_hint, list_backends
from se_deploy.runtime.tensorrt._trt import unsupported_version
from se_deploy.runtime.tensorrt.trtexec_tool import find_trtexec, probe_version

UNKNOWN = "unknown"
#: Where JetPack's python3-libnvinfer installs the TensorRT bindings (the system Python's dist-packages).
SYSTEM_TENSORRT_GLOB = "/usr/lib/python3*/dist-packages/tensorrt"


def _in_isolated_venv() -> bool:
    """True in a venv that cannot see the system site-packages (created without --system-site-packages)."""
    if sys.prefix == getattr(sys, "base_prefix", sys.prefix):
        return False
    try:
        with open(f"{sys.prefix}/pyvenv.cfg") as f:
            return "include-system-site-packages = true" not in f.read().replace("\t", " ")
    except OSError:
        return False


def system_tensorrt() -> dict:
    """Where the system Python has TensorRT's bindings (JetPack), and whether this interpreter is shut off from it."""
    found = sorted(glob.glob(SYSTEM_TENSORRT_GLOB))
    return {"paths": found, "isolated_venv": _in_isolated_venv()}


def trtexec_info() -> dict:
    """trtexec's path and TensorRT version, or why it is not usable."""
    try:
        exe = find_trtexec()
    except SeDeployError as e:
        return {"path": None, "error": str(e)}
    if exe is None:
        return {"path": None}
    try:
        return {"path": exe, "version": str(probe_version(exe, timeout=30))}
    except SeDeployError as e:
        return {"path": exe, "error": str(e)}


def diagnose(env: dict, backends: list[dict], *, system_trt: dict | None = None,
             trtexec: dict | None = None) -> list[dict]:
    """Missing pieces as ``{"component", "why", "install"}``, most important first."""
    jetson = bool(env.get("jetson", {}).get("is_jetson")) if isinstance(env.get("jetson"), dict) else False
    missing: list[dict] = []
    system_trt = system_trt or {"paths": [], "isolated_venv": False}
    for b in backends:
        if not b["available"]:
            entry = {"component": b["name"], "why": b["reason"], "install": b["install"]}
            if b["name"] == "tensorrt" and system_trt["paths"] and system_trt["isolated_venv"] \
                    and "not importable" in (b["reason"] or ""):
                entry["why"] = (f"the system Python has TensorRT's bindings ({system_trt['paths'][0]}), but this venv "
                                "was created without --system-site-packages and cannot see them")
                entry["install"] = ("recreate the venv: rm -rf .venv && bash scripts/setup.sh (on a Jetson it uses "
                                    "--system-site-packages)")
            if b["name"] == "tensorrt" and (trtexec or {}).get("path"):
                entry["why"] += f"; meanwhile build-engine and bench --backend trtexec use {trtexec['path']}"
            missing.append(entry)
        elif b["name"] == "tensorrt" and b.get("version") and unsupported_version(str(b["version"])):
            missing.append({"component": "tensorrt version", "why": unsupported_version(str(b["version"])),
                            "install": "flash JetPack 6.0 or newer (sudo apt install nvidia-jetpack after an upgrade)"
                            if jetson else "pip install 'tensorrt>=10.3'"})
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


def doctor_report(env: dict | None = None, backends: list | None = None, *, system_trt: dict | None = None,
                  trtexec: dict | None = None) -> dict:
    """The full doctor report as a JSON-ready dict (everything injectable for tests)."""
    if env is None:
        env = capture_environment(tegrastats_s=1.0)
    if system_trt is None:
        system_trt = system_tensorrt()
    if trtexec is None:
        trtexec = trtexec_info()
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
        "trtexec": trtexec,
        "system_tensorrt": system_trt,
        "missing": diagnose(env, bdicts, system_trt=system_trt, trtexec=trtexec),
        "environment": env,
    }


__all__ = ["UNKNOWN", "diagnose", "doctor_report"]
