"""``se-deploy build-engine`` as a library call: plan the precision, prepare the ONNX, then build or
hand over the exact trtexec command.

The decision lives here, not in the command:

1. the precision matrix (:func:`se_deploy.engines.tensorrt.config.plan_precision`) says what the
   TensorRT major that builds the engine can honour;
2. when the request needs a Q/DQ or FP16 graph first, calibration's quantizer or FP16 converter
   writes it beside the plan (``model.int8.onnx`` / ``model.fp16.onnx``), and the log says so;
3. with TensorRT's Python bindings and a GPU here, the plan is built; where the bindings are
   missing but ``trtexec`` is found (``--trtexec PATH``, ``PATH``, ``/usr/src/tensorrt/bin``: every
   JetPack has it), the printed trtexec command itself builds the plan and the same sidecar is
   written; otherwise the trtexec line that builds the same engine on the device is returned
   together with the reason nothing was built.
"""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from se_deploy.calibration.dataset import CalibrationSet, load_calibration
from se_deploy.calibration.fp16 import Fp16Config, convert_fp16
from se_deploy.calibration.preprocess import make_preprocess
from se_deploy.calibration.quantize import QuantConfig, quantize_int8
from se_deploy._util import atomic_output, sha256_file
from se_deploy.calibration.trt_cache import (DEFAULT_TRT_VERSION, collect_amax, parse_header, trt_version_digits,
                                             write_calibration_cache)
from se_deploy.engines.tensorrt import builder
from se_deploy.engines.tensorrt.builder import PreparedBuild
from se_deploy.engines.tensorrt.calibrator import ALGORITHMS, calibration_batches
from se_deploy.engines.tensorrt.config import BuildConfig, PrecisionPlan
from se_deploy.engines.tensorrt.inspector import parse_engine_information
from se_deploy.errors import (CalibrationError, EngineError, InputError, InternalError, MissingDependencyError,
                              QuantizationError, UsageError)
from se_deploy.files import refuse_clobbering, staged_artifact
from se_deploy.names import Precision, QuantTarget
from se_deploy.onnx_io import GraphInput, load_onnx, onnx_precision
from se_deploy.runtime.tensorrt._trt import trt_major, unsupported_version
from se_deploy.runtime.tensorrt.cuda import get_cuda_api
from se_deploy.runtime.tensorrt.plan_meta import DeviceInfo, plan_metadata, write_plan_metadata
from se_deploy.runtime.tensorrt.trtexec_tool import (find_trtexec, parse_device_info, probe_version,
                                                     read_export_layer_info, run_trtexec)

Log = Callable[[str], None]

#: The TensorRT major a trtexec line is written for when neither --trt-version nor an install says.
DEFAULT_MAJOR = 10
#: How long a trtexec build may take (a large model at the highest optimization level takes long on a Jetson).
TRTEXEC_BUILD_TIMEOUT_S = 4 * 3600


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


@dataclass(frozen=True)
class BuildOutcome:
    """What ``build-engine`` did: built a plan (``metadata``), or only produced the trtexec line,
    with ``not_built`` saying why (None when printing was all that was asked)."""

    trtexec: str | None
    metadata: dict | None = None
    not_built: Exception | None = None


def load_calibration_for(cfg: BuildConfig, inputs: tuple[GraphInput, ...]) -> CalibrationSet:
    """The calibration set for the model's (single) input, read the same way as ``se-deploy quantize``."""
    if len(inputs) != 1:
        raise CalibrationError(f"INT8 calibration supports single-input models; this one has {len(inputs)} inputs")
    inp = inputs[0]
    return load_calibration(cfg.calib_data, input_name=inp.name, input_shape=inp.dims,
                            preprocess=make_preprocess(cfg.preprocess), calib_size=cfg.calib_size, seed=0)


def tensorrt_quant_config(high_precision: str, base: QuantConfig | None = None) -> QuantConfig:
    """``base`` (or the defaults) for the tensorrt target, with the layers the quantizer leaves unquantized
    written in ``high_precision`` (fp16 for the mixed INT8+FP16 build, else fp32).

    """
    fields = {**(base.model_dump() if base is not None else {}), "target": QuantTarget.tensorrt}
    return QuantConfig(**{**fields, "high_precision": high_precision})


def quant_config_for(plan: PrecisionPlan) -> QuantConfig:
    """The Q/DQ quantizer's config for a TensorRT build of ``plan`` (see :func:`tensorrt_quant_config`)."""
    return tensorrt_quant_config(plan.high_precision or Precision.fp32)


def prepare_build(cfg: BuildConfig, major: int, *, log: Log = _stderr) -> PreparedBuild:
    """Plan the build for TensorRT ``major`` and run the ONNX preparation steps it needs."""
    plan, prec, inputs, profile = builder.plan_build(cfg, major)
    for note in plan.notes:
        log(f"note: {note}")
    build_onnx = str(cfg.onnx)
    for step in plan.prepare:
        out = builder.prepared_onnx_path(cfg, step)
        refuse_clobbering({"the input ONNX": cfg.onnx, "--calib-data": cfg.calib_data}, {"the prepared ONNX": out})
        if step == "quantize_int8":
            hp = plan.high_precision or Precision.fp32
            log(f"preparing {out}: INT8 Q/DQ for TensorRT from {cfg.calib_data}, float layers in {hp} (as "
                "se-deploy quantize --int8 --target tensorrt does)")
            quantize_int8(build_onnx, out, load_calibration_for(cfg, inputs), quant_config_for(plan))
            after = onnx_precision(load_onnx(out))
            if not after.has_qdq:
                raise QuantizationError(f"INT8 quantization of {build_onnx} produced no Q/DQ nodes: refusing to "
                                        "build an engine that would not be INT8")
            if hp == Precision.fp16 and not after.has_fp16:
                raise QuantizationError(f"INT8 quantization of {build_onnx} with FP16 high precision produced no FP16 "
                                        "tensors: refusing to build an engine that would not be INT8+FP16")
            log(f"prepared {out} ({after.qdq_nodes} Q/DQ nodes, {after.fp16_tensors} FP16 tensors)")
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


def cache_header_version(cfg: BuildConfig, installed: str | None) -> str:
    """The exact TensorRT version a calibration cache for trtexec must name in its header.

    TensorRT ignores a cache whose header names another version (and then calibrates trtexec's
    random data), so the version is the one that will read it: the installed TensorRT or trtexec
    (``installed``), else ``--trt-version`` given as MAJOR.MINOR.PATCH, else, with no target named at
    all, 10.3.0 (JetPack 6.1/6.2).
    """
    if installed is not None:
        return ".".join(installed.split(".")[:3])
    if cfg.trt_version is None:
        return DEFAULT_TRT_VERSION
    if len(cfg.trt_version.split(".")) >= 3:
        return ".".join(cfg.trt_version.split(".")[:3])
    raise UsageError(f"--trt-version {cfg.trt_version}: the calibration cache header must name the device's exact "
                     "TensorRT version, or TensorRT ignores the cache: pass MAJOR.MINOR.PATCH (8.6.2 on JetPack 6.0, "
                     "10.3.0 on JetPack 6.1/6.2, 10.13.3 on JetPack 7.0/7.1)")


def write_trtexec_calib_cache(prep: PreparedBuild, *, trt_version: str | None = None,
                              log: Log = _stderr) -> Path | None:
    """For ``trtexec --int8 --calib=FILE``: write the cache from onnxruntime ranges when it does not exist yet
    (TensorRT's format; the header names ``trt_version``, see :func:`cache_header_version`). An existing
    cache is used as it is when its header fits trtexec (EntropyCalibration2, this version), else refused."""
    cfg = prep.cfg
    if prep.plan.calibrator is None:
        return None
    path = Path(cfg.resolved_calib_cache())
    version = cache_header_version(cfg, trt_version)
    algorithm = ALGORITHMS[prep.plan.calibrator]
    if path.exists():
        first = path.read_bytes().split(b"\n", 1)[0].decode("utf-8", "replace").strip()
        try:
            digits, found = parse_header(first)
        except InputError:
            raise CalibrationError(f"{path} is not a TensorRT calibration cache: delete it, or pass another "
                                   "--calib-cache") from None
        if (digits, found) != (trt_version_digits(version), algorithm):
            raise CalibrationError(f"{path} was written for TensorRT {digits} ({found}), but trtexec on TensorRT "
                                   f"{version} reads only TRT-{trt_version_digits(version)}-{algorithm} caches: "
                                   "delete it to write a new one, or pass another --calib-cache")
        log(f"using the existing calibration cache {path}")
        return None
    calib = load_calibration_for(cfg, prep.inputs)
    amax = collect_amax(prep.build_onnx, calib, method=prep.plan.calibrator)
    write_calibration_cache(path, amax, algorithm=algorithm, trt_version=version)
    log(f"wrote {path} ({len(amax)} tensor ranges from onnxruntime, header TRT-{trt_version_digits(version)}-"
        f"{algorithm} for TensorRT {version}: TensorRT of another version ignores it)")
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
    """(the tensorrt module, None) when this machine can build ``cfg`` with the Python bindings; otherwise
    (module or None, the error that says why not)."""
    trt = builder.installed_tensorrt()
    if trt is None:
        reason = "TensorRT is not installed here"
        if cfg.dla_core is not None:
            reason = "--dla-core needs TensorRT on a device with DLA cores, and TensorRT is not installed here"
        return None, MissingDependencyError(reason)
    why = unsupported_version(str(trt.__version__))
    if why is not None:
        return trt, EngineError(why)
    installed = trt_major(trt)
    if cfg.target_major is not None and cfg.target_major != installed:
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
    """Build ``cfg`` here when TensorRT and a GPU are present (with trtexec where the Python bindings are
    missing or ``--trtexec`` names one); otherwise return the trtexec line for the device.

    ``print_only``: never build, only prepare what the trtexec line reads (the Q/DQ or FP16 ONNX beside the
    plan; for TensorRT 10's implicit calibrators, the calibration cache, which runs calibration) and return
    the line. When the machine
    cannot build, the outcome carries the reason (``not_built``) for the caller to report after
    showing the line.
    """
    if not print_only and cfg.trtexec is not None:
        return build_with_trtexec(cfg, find_trtexec(cfg.trtexec), log=log)
    trt, problem = why_not_here(cfg)
    installed = trt_major(trt) if trt is not None else None
    if not print_only and isinstance(problem, MissingDependencyError):
        # the bindings (or the CUDA binding they need) are missing: trtexec, which every JetPack has, builds instead
        exe = find_trtexec()
        if exe is not None:
            log(f"{problem}; building with {exe}")
            return build_with_trtexec(cfg, exe, log=log)
    if print_only or problem is not None:
        if isinstance(problem, UsageError) and not print_only:
            raise problem
        major = cfg.target_major or installed or DEFAULT_MAJOR
        prep = prepare_build(cfg, major, log=log)
        if prep.trtexec is None:
            raise UsageError(prep.trtexec_unavailable)
        here = str(trt.__version__) if trt is not None and installed == major else None
        write_trtexec_calib_cache(prep, trt_version=here, log=log)
        log(f"# trtexec equivalent for TensorRT {major}.x: {prep.plan.describe()}")
        if problem is not None and not print_only:
            problem = type(problem)(f"{problem}, so no engine was built: run the trtexec command printed above on the "
                                    f"target device (TensorRT {major}.x), or rerun se-deploy build-engine there")
        return BuildOutcome(prep.trtexec.line(), None, None if print_only else problem)
    prep = prepare_build(cfg, installed, log=log)
    if prep.trtexec_unavailable:
        log(f"note: no trtexec equivalent: {prep.trtexec_unavailable}")
    batches = _calibration_batches(prep) if prep.plan.calibrator is not None else None
    meta = builder.build_engine(prep, calib_batches=batches, log=log)
    return BuildOutcome(prep.trtexec_line(), meta, None)


def _trtexec_argv(exe: str, args: tuple[str, ...], replace: dict[str, str]) -> list[str]:
    """The printed command with trtexec's real path, and ``--flag=`` values replaced (temporary outputs)."""
    out = [exe]
    for a in args[1:]:
        flag = a.split("=", 1)[0]
        out.append(f"{flag}={replace[flag]}" if flag in replace else a)
    return out


def build_with_trtexec(cfg: BuildConfig, exe: str | None, *, log: Log = _stderr) -> BuildOutcome:
    """Run the trtexec command ``build-engine`` prints, then write the same sidecar as a Python build.

    trtexec writes the plan and its layer information to temporary files beside the outputs, which
    are renamed only when trtexec succeeded, so a failed build never replaces a good plan. The sidecar
    takes the TensorRT version from trtexec's banner and the GPU from its device information.
    """
    if exe is None:
        raise MissingDependencyError("trtexec not found (not on PATH nor in /usr/src/tensorrt/bin): pass --trtexec "
                                     "PATH, or install TensorRT's Python bindings")
    version = probe_version(exe)
    why = unsupported_version(str(version))
    if why is not None:
        raise EngineError(f"{exe}: {why}")
    if cfg.target_major is not None and cfg.target_major != version.major:
        raise UsageError(f"--trt-version {cfg.trt_version} given, but {exe} is TensorRT {version}")
    prep = prepare_build(cfg, version.major, log=log)
    if prep.trtexec is None:
        raise UsageError(prep.trtexec_unavailable)
    write_trtexec_calib_cache(prep, trt_version=str(version), log=log)
    layers_path = Path(f"{cfg.output}.layers.json")
    t0 = time.perf_counter()
    # the plan and its sidecar appear together, and only when trtexec succeeded and its output was read
    with atomic_output(layers_path) as tmp_layers, staged_artifact(cfg.output) as staged:
        argv = _trtexec_argv(exe, prep.trtexec.args, {"--saveEngine": str(staged.path),
                                                      "--exportLayerInfo": str(tmp_layers)})
        log(f"running {shlex.join(argv)}")
        out = run_trtexec(argv, timeout=TRTEXEC_BUILD_TIMEOUT_S, log=log, what="the trtexec build")
        if not staged.path.is_file() or staged.path.stat().st_size == 0:
            raise EngineError(f"trtexec reported success but wrote an empty plan ({exe})")
        layers = parse_engine_information(read_export_layer_info(tmp_layers)).to_dict()
        device = parse_device_info(out)
        if "gpu_name" not in device or "compute_capability" not in device:
            raise EngineError("trtexec's output has no device information (Selected Device / Compute Capability): "
                              "cannot record which GPU the plan is for")
        seconds = time.perf_counter() - t0
        trt_version = device.get("tensorrt_version") or str(version)
        cal = cfg.resolved_calib_cache()
        meta = plan_metadata(
            device=DeviceInfo(trt_version, device["gpu_name"], device["compute_capability"]),
            precision={**prep.plan.to_dict(), "onnx_qdq_nodes": prep.onnx_precision.qdq_nodes,
                       "onnx_fp16_tensors": prep.onnx_precision.fp16_tensors, "calibration_cache": cal},
            layers=layers, profile=prep.profile, onnx_path=str(cfg.onnx), onnx_sha256=sha256_file(cfg.onnx),
            built_onnx_path=prep.build_onnx, build_seconds=seconds,
            options={"workspace_mib": cfg.workspace_mib, "opt_level": cfg.opt_level, "dla_core": cfg.dla_core,
                     "gpu_fallback": cfg.gpu_fallback, "timing_cache": cfg.timing_cache, "builder": "trtexec",
                     "trtexec": exe, "trtexec_version": str(version)},
            trtexec=prep.trtexec.line())
        write_plan_metadata(staged.path, meta)
    return BuildOutcome(prep.trtexec.line(), meta, None)


__all__ = ["BuildOutcome", "build_or_trtexec", "build_with_trtexec", "cache_header_version", "load_calibration_for",
           "prepare_build", "quant_config_for", "tensorrt_quant_config", "why_not_here", "write_trtexec_calib_cache"]
