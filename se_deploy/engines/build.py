"""``se-deploy build-engine`` as a library call: plan the precision, prepare the ONNX, then build or
hand over the exact trtexec command.

The decision lives here, not in the command:

1. the precision matrix (:func:`se_deploy.engines.tensorrt.config.plan_precision`) says what the
   TensorRT major that builds the engine can honour;
2. when the request needs a Q/DQ or FP16 graph first, calibration's quantizer or FP16 converter
   writes it beside the plan (``model.int8.onnx`` / ``model.fp16.onnx``), and the log says so;
3. with TensorRT and a GPU here, the plan is built; otherwise the trtexec line that builds the
   same engine on the device is returned together with the reason nothing was built.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from se_deploy.calibration.dataset import CalibrationSet, load_calibration
from se_deploy.calibration.fp16 import Fp16Config, convert_fp16
from se_deploy.calibration.preprocess import make_preprocess
from se_deploy.calibration.quantize import QuantConfig, quantize_int8
from se_deploy.calibration.trt_cache import DEFAULT_TRT_VERSION, collect_amax, write_calibration_cache
from se_deploy.engines.tensorrt import builder
from se_deploy.engines.tensorrt.builder import PreparedBuild
from se_deploy.engines.tensorrt.calibrator import ALGORITHMS, calibration_batches
from se_deploy.engines.tensorrt.config import BuildConfig
from se_deploy.errors import (CalibrationError, EngineError, InternalError, MissingDependencyError, QuantizationError,
                              UsageError)
from se_deploy.onnx_io import GraphInput, load_onnx, onnx_precision
from se_deploy.runtime.tensorrt._trt import trt_major
from se_deploy.runtime.tensorrt.cuda import get_cuda_api

Log = Callable[[str], None]

#: The TensorRT major a trtexec line is written for when neither --trt-version nor an install says.
DEFAULT_MAJOR = 10


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


@dataclass(frozen=True)
class BuildOutcome:
    """What ``build-engine`` did: built a plan (``metadata``), or only produced the trtexec line,
    with ``not_built`` saying why (None when printing was all that was asked)."""

    trtexec: str
    metadata: dict | None = None
    not_built: Exception | None = None


def load_calibration_for(cfg: BuildConfig, inputs: tuple[GraphInput, ...]) -> CalibrationSet:
    """The calibration set for the model's (single) input, read the same way as ``se-deploy quantize``."""
    if len(inputs) != 1:
        raise CalibrationError(f"INT8 calibration supports single-input models; this one has {len(inputs)} inputs")
    inp = inputs[0]
    return load_calibration(cfg.calib_data, input_name=inp.name, input_shape=inp.dims,
                            preprocess=make_preprocess(cfg.preprocess), calib_size=cfg.calib_size, seed=0)


def prepare_build(cfg: BuildConfig, major: int, *, log: Log = _stderr) -> PreparedBuild:
    """Plan the build for TensorRT ``major`` and run the ONNX preparation steps it needs."""
    plan, prec, inputs, profile = builder.plan_build(cfg, major)
    for note in plan.notes:
        log(f"note: {note}")
    build_onnx = str(cfg.onnx)
    for step in plan.prepare:
        out = builder.prepared_onnx_path(cfg, step)
        if step == "quantize_int8":
            log(f"preparing {out}: INT8 Q/DQ for TensorRT from {cfg.calib_data} (as se-deploy quantize --int8 "
                "--target tensorrt does)")
            # float layers in FP16: a strongly typed build (TensorRT 11, 10 --stronglyTyped) runs them so
            quantize_int8(build_onnx, out, load_calibration_for(cfg, inputs),
                          QuantConfig(target="tensorrt", high_precision="fp16"))
            after = onnx_precision(load_onnx(out))
            if not after.has_qdq or not after.has_fp16:
                raise QuantizationError(f"INT8 quantization of {build_onnx} produced {after.qdq_nodes} Q/DQ nodes "
                                        f"and {after.fp16_tensors} FP16 tensors: refusing to build an engine that "
                                        "would not be INT8 with FP16 float layers")
            log(f"prepared {out} ({after.qdq_nodes} Q/DQ nodes)")
        elif step == "convert_fp16":
            log(f"preparing {out}: FP16 ONNX (as se-deploy quantize --fp16 does)")
            convert_fp16(build_onnx, out, Fp16Config())
            after = onnx_precision(load_onnx(out))
            if not after.has_fp16:
                raise QuantizationError(f"FP16 conversion of {build_onnx} produced no FP16 tensors: refusing to "
                                        "build an engine that would not be FP16")
            log(f"prepared {out} ({after.fp16_tensors} FP16 tensors)")
        else:
            raise InternalError(f"unknown preparation step {step}")
        build_onnx = str(out)
    return builder.describe_build(cfg, plan, prec, inputs, profile, build_onnx)


def write_trtexec_calib_cache(prep: PreparedBuild, *, trt_version: str | None = None,
                              log: Log = _stderr) -> Path | None:
    """For ``trtexec --int8 --calib=FILE`` on a device: write the cache from onnxruntime ranges when it does
    not exist yet (TensorRT's format; the header names ``trt_version``, default 10.3 as on JetPack 6)."""
    cfg = prep.cfg
    if prep.plan.calibrator is None:
        return None
    path = Path(cfg.resolved_calib_cache())
    if path.exists():
        return None
    calib = load_calibration_for(cfg, prep.inputs)
    amax = collect_amax(prep.build_onnx, calib, method=prep.plan.calibrator)
    version = trt_version or DEFAULT_TRT_VERSION
    write_calibration_cache(path, amax, algorithm=ALGORITHMS[prep.plan.calibrator],
                            trt_version=".".join(version.split(".")[:3]))
    log(f"wrote {path} ({len(amax)} tensor ranges from onnxruntime, header for TensorRT {version}; "
        "a TensorRT of another version recalibrates instead of reading it)")
    return path


def _calibration_batches(prep: PreparedBuild):
    """``{input: array}`` batches for the implicit calibrator: the model's static batch, else the requested one."""
    cfg = prep.cfg
    calib = load_calibration_for(cfg, prep.inputs)
    bs = cfg.calib_batch_size
    static_batch = [i.dims[0] for i in prep.inputs if i.dims and isinstance(i.dims[0], int) and i.dims[0] > 0]
    if static_batch and not prep.profile:
        bs = static_batch[0]
    return calibration_batches({calib.input_name: calib.arrays}, bs, cfg.calib_max_batches)


def why_not_here(cfg: BuildConfig) -> tuple[object | None, Exception | None]:
    """(the tensorrt module, None) when this machine can build ``cfg``; otherwise (module or None, the
    error that says why not)."""
    trt = builder.installed_tensorrt()
    if trt is None:
        reason = "TensorRT is not installed here"
        if cfg.dla_core is not None:
            reason = "--dla-core needs TensorRT on a device with DLA cores, and TensorRT is not installed here"
        return None, MissingDependencyError(reason)
    installed = trt_major(trt)
    if cfg.trt_version is not None and cfg.trt_version != installed:
        return trt, UsageError(f"--trt-version {cfg.trt_version} given, but TensorRT {trt.__version__} is installed "
                               "(use --print-trtexec to get the command for another TensorRT version)")
    try:
        cuda = get_cuda_api(cfg.cuda_api)
        try:
            if cuda.device_count() == 0:
                return trt, EngineError("no NVIDIA GPU is visible to CUDA here")
        finally:
            cuda.close()
    except (MissingDependencyError, EngineError) as e:
        return trt, type(e)(str(e))
    return trt, None


def build_or_trtexec(cfg: BuildConfig, *, print_only: bool = False, log: Log = _stderr) -> BuildOutcome:
    """Build ``cfg`` here when TensorRT and a GPU are present; otherwise return the trtexec line for the device.

    ``print_only``: never build, only prepare the ONNX and return the trtexec line. When the machine
    cannot build, the outcome carries the reason (``not_built``) for the caller to report after
    showing the line.
    """
    trt, problem = why_not_here(cfg)
    installed = trt_major(trt) if trt is not None else None
    if print_only or problem is not None:
        if isinstance(problem, UsageError) and not print_only:
            raise problem
        major = cfg.trt_version or installed or DEFAULT_MAJOR
        prep = prepare_build(cfg, major, log=log)
        if major == 10:
            here = str(trt.__version__) if trt is not None and installed == major else None
            write_trtexec_calib_cache(prep, trt_version=here, log=log)
        log(f"# trtexec equivalent for TensorRT {major}.x: {prep.plan.describe()}")
        if problem is not None and not print_only:
            problem = type(problem)(f"{problem}, so no engine was built: run the trtexec command printed above on the "
                                    f"target device (TensorRT {major}.x), or rerun se-deploy build-engine there")
        return BuildOutcome(prep.trtexec.line(), None, None if print_only else problem)
    prep = prepare_build(cfg, installed, log=log)
    batches = _calibration_batches(prep) if prep.plan.calibrator is not None else None
    meta = builder.build_engine(prep, calib_batches=batches, log=log)
    return BuildOutcome(prep.trtexec.line(), meta, None)


__all__ = ["BuildOutcome", "build_or_trtexec", "load_calibration_for", "prepare_build", "why_not_here",
           "write_trtexec_calib_cache"]
