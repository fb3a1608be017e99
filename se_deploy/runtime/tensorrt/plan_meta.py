"""The ``model.plan.json`` sidecar, and refusing a plan built for another TensorRT or GPU.

The plan file itself stays a plain TensorRT plan (trtexec and DeepStream load it); all
metadata lives in the sidecar. A plan only runs under the TensorRT version and on the GPU
architecture it was built for, so loading compares both and refuses a mismatch with one
line that says to rebuild on this device.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from se_deploy._util import read_sidecar, write_sidecar
from se_deploy.errors import EngineError, InputError

SCHEMA = "se-deploy/plan/1"


@dataclass(frozen=True)
class DeviceInfo:
    """The TensorRT version and GPU an engine is built for or loaded on."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.7"

    def to_dict(self) -> dict:
        return asdict(self)


def plan_metadata(*, device: DeviceInfo, precision: dict, layers: dict | None, profile: dict, onnx_path: str,
                  onnx_sha256: str, built_onnx_path: str, build_seconds: float, options: dict,
                  trtexec: str | None, trtexec_unavailable: str | None = None) -> dict:
    return {
        "schema": SCHEMA,
        "tensorrt_version": device.tensorrt_version,
        "gpu": {"name": device.gpu_name, "compute_capability": device.compute_capability},
        "precision": precision,
        "layers": layers,
        "profile": {name: {"min": list(m[0]), "opt": list(m[1]), "max": list(m[2])} for name, m in profile.items()},
        "onnx": {"path": onnx_path, "sha256": onnx_sha256, "built_from": built_onnx_path},
        "build_seconds": round(build_seconds, 3),
        "options": options,
        "trtexec_equivalent": trtexec,
        **({"trtexec_unavailable": trtexec_unavailable} if trtexec_unavailable else {}),
    }


def write_plan_metadata(plan_path: str | Path, meta: dict) -> Path:
    return write_sidecar(plan_path, meta)


def read_plan_metadata(plan_path: str | Path) -> dict | None:
    meta = read_sidecar(plan_path)
    if meta is not None and not isinstance(meta, dict):
        raise InputError(f"plan sidecar {plan_path}.json is not a JSON object")
    return meta


def same_tensorrt(a: str, b: str) -> bool:
    """Whether two TensorRT version strings name the same release. trtexec reports three numbers
    (``[TensorRT v100300]`` -> 10.3.0) where the Python module says four (``10.3.0.30``), so only the
    numbers both give are compared, and at least major.minor.patch."""
    pa, pb = str(a).strip().split("."), str(b).strip().split(".")
    n = min(len(pa), len(pb))
    return n >= 3 and pa[:n] == pb[:n]


def plan_mismatches(meta: dict, here: DeviceInfo) -> list[str]:
    """What differs between the build recorded in ``meta`` and this device (empty when compatible).

    The TensorRT version must match (a plan is tied to the version that built it; see
    :func:`same_tensorrt`), and so must the GPU's compute capability and name.
    """
    out = []
    built_trt = str(meta.get("tensorrt_version", ""))
    if not built_trt:
        out.append("the sidecar records no TensorRT version")
    elif not same_tensorrt(built_trt, here.tensorrt_version):
        out.append(f"built with TensorRT {built_trt}, this device has TensorRT {here.tensorrt_version}")
    gpu = meta.get("gpu") or {}
    cc = str(gpu.get("compute_capability", ""))
    name = str(gpu.get("name", ""))
    if cc != here.compute_capability:
        out.append(f"built for compute capability {cc or '?'}, this GPU is {here.compute_capability}")
    elif name != here.gpu_name:
        out.append(f"built on {name or '?'}, this GPU is {here.gpu_name}")
    return out


def check_plan_compatible(plan_path: str | Path, meta: dict | None, here: DeviceInfo) -> None:
    """Raise one EngineError line when the plan was built for another TensorRT version or GPU."""
    if meta is None:
        return
    probs = plan_mismatches(meta, here)
    if probs:
        raise EngineError(f"{plan_path} does not match this device ({'; '.join(probs)}): rebuild it on this "
                          f"device with se-deploy build-engine")
