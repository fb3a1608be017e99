"""ONNX -> TensorRT plan with the TensorRT Python API, for TensorRT 8.6, 10.x and 11.x.

The TensorRT-touching functions are thin and follow the conventions in ``_trt.py``
(``trt`` from :func:`load_tensorrt`, the major version in ``major``, TensorRT objects in
variables whose type is decidable from where they were made, version-specific functions
marked with :func:`serves`). ``tools/trt_api_check.py`` checks every TensorRT name used here
against the API manifests of each version that runs it.

The build takes an ONNX that is already prepared: when a request needs a Q/DQ or FP16
graph first, :mod:`se_deploy.engines.build` runs that step (calibration's quantize or
fp16 conversion) and says so. Everything before the TensorRT calls (the precision plan,
the profile and the trtexec equivalent) is plain Python in :func:`describe_build`, so it
runs and is tested without TensorRT.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

import numpy as np

from se_deploy._util import check_output_path, sha256_file, write_bytes_atomic
from se_deploy.runtime.tensorrt._trt import check_version, load_tensorrt, serves
from se_deploy.engines.tensorrt.calibrator import CacheStore, CalibrationFeeder, CallbackErrors, make_calibrator
from se_deploy.engines.tensorrt.config import BuildConfig, PrecisionPlan, plan_precision
from se_deploy.runtime.tensorrt.cuda import CudaApi, get_cuda_api
from se_deploy.engines.tensorrt.inspector import parse_engine_information
from se_deploy.engines.tensorrt.onnx_model import profile_shapes
from se_deploy.runtime.tensorrt.plan_meta import DeviceInfo, plan_metadata, write_plan_metadata
from se_deploy.engines.tensorrt.trtexec import TrtexecCommand, trtexec_command, trtexec_unsupported
from se_deploy.files import staged_artifact
from se_deploy.errors import (CalibrationError, EngineError, InternalError, MissingDependencyError,
                              UsageError)
from se_deploy.onnx_io import GraphInput, OnnxPrecision, graph_inputs, load_onnx, onnx_precision

if TYPE_CHECKING:  # annotations only; TensorRT is imported lazily at run time
    import tensorrt as trt

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


@dataclass(frozen=True)
class PreparedBuild:
    cfg: BuildConfig
    plan: PrecisionPlan
    onnx_precision: OnnxPrecision
    inputs: tuple[GraphInput, ...]
    profile: dict
    calib_shapes: dict
    build_onnx: str  # the ONNX that TensorRT (or trtexec) reads
    trtexec: TrtexecCommand | None  # None when trtexec cannot build the same engine (``trtexec_unavailable`` says why)
    trtexec_unavailable: str | None = None

    def trtexec_line(self) -> str | None:
        return self.trtexec.line() if self.trtexec is not None else None


def prepared_onnx_path(cfg: BuildConfig, step: str) -> Path:
    """Where a preparation step writes its ONNX: beside the plan, ``model.int8.onnx`` / ``model.fp16.onnx``."""
    out = Path(cfg.output)
    tag = {"quantize_int8": "int8", "convert_fp16": "fp16"}[step]
    return out.with_name(f"{out.stem}.{tag}.onnx")


def plan_build(cfg: BuildConfig, major: int) -> tuple[PrecisionPlan, OnnxPrecision, tuple[GraphInput, ...], dict]:
    """Read the requested ONNX and apply the precision matrix: (plan, what the ONNX carries, inputs, profile).
    No TensorRT needed, nothing written."""
    check_output_path(cfg.output)
    model = load_onnx(cfg.onnx)
    if cfg.calib_data is not None and not Path(cfg.calib_data).exists():
        raise CalibrationError(f"calibration data not found: {cfg.calib_data}")
    prec = onnx_precision(model)
    inputs = tuple(graph_inputs(model))
    profile = profile_shapes(list(inputs), cfg.batch)
    return plan_precision(cfg, major, prec), prec, inputs, profile


def describe_build(cfg: BuildConfig, plan: PrecisionPlan, prec: OnnxPrecision, inputs: tuple[GraphInput, ...],
                   profile: dict, build_onnx: str) -> PreparedBuild:
    """The build of ``build_onnx`` (the ONNX TensorRT reads, already prepared) and its trtexec equivalent."""
    calib_shapes = {}
    if plan.calibrator is not None and profile:
        bs = cfg.calib_batch_size
        calib_shapes = {name: ((bs, *m[1][1:]),) * 3 for name, m in profile.items()}
    why = trtexec_unsupported(plan)
    cmd = None if why else trtexec_command(cfg, plan, build_onnx, profile, calib_shapes=calib_shapes)
    return PreparedBuild(cfg, plan, prec, inputs, profile, calib_shapes, build_onnx, cmd, why)


# --- TensorRT (both majors unless marked) ---------------------------------------------------

def installed_tensorrt():
    """The tensorrt module, or None when it cannot be imported here."""
    try:
        return load_tensorrt()
    except MissingDependencyError:
        return None


def build_engine(prep: PreparedBuild, *, calib_batches: Iterable[Mapping[str, np.ndarray]] | None = None,
                 log: Log = _stderr) -> dict:
    """Build the prepared ONNX into ``prep.cfg.output`` (+ sidecar); return the sidecar metadata.

    ``calib_batches``: ``{input name: array}`` batches for the implicit INT8 calibrator
    (TensorRT 8.6/10 with ``--calibrator``), one per ``get_batch`` call.
    """
    cfg = prep.cfg
    trt = load_tensorrt()
    major = check_version(trt)
    if major != prep.plan.major:
        raise UsageError(f"the build was planned for TensorRT {prep.plan.major}.x, but TensorRT {trt.__version__} "
                         "is installed")
    if prep.plan.calibrator is not None and calib_batches is None:
        raise InternalError("implicit INT8 calibration needs calibration batches")
    cuda = get_cuda_api(cfg.cuda_api)
    try:
        return _build_with(trt, major, prep, calib_batches, cuda, log)
    finally:
        cuda.close()


def _build_with(trt, major: int, prep: PreparedBuild, calib_batches, cuda: CudaApi, log: Log) -> dict:
    cfg = prep.cfg
    if cuda.device_count() == 0:
        raise EngineError("no NVIDIA GPU is visible to CUDA here: build on the target device")
    gpu_name, cc = cuda.device_info(0)
    log(f"building {cfg.output}: {prep.plan.describe()}")
    t0 = time.perf_counter()
    plan_bytes = _build_serialized(trt, major, prep, calib_batches, cuda, log)
    seconds = time.perf_counter() - t0
    layers = _inspect_plan(trt, plan_bytes)
    meta = plan_metadata(
        device=DeviceInfo(str(trt.__version__), gpu_name, cc),
        precision={**prep.plan.to_dict(), "onnx_qdq_nodes": prep.onnx_precision.qdq_nodes,
                   "onnx_fp16_tensors": prep.onnx_precision.fp16_tensors,
                   "calibration_cache": cfg.resolved_calib_cache()},
        layers=layers, profile=prep.profile, onnx_path=str(cfg.onnx), onnx_sha256=sha256_file(cfg.onnx),
        built_onnx_path=prep.build_onnx, build_seconds=seconds,
        options={"workspace_mib": cfg.workspace_mib, "opt_level": cfg.opt_level, "dla_core": cfg.dla_core,
                 "gpu_fallback": cfg.gpu_fallback, "timing_cache": cfg.timing_cache, "cuda_api": cuda.name,
                 "builder": "tensorrt-python"},
        trtexec=prep.trtexec_line(), trtexec_unavailable=prep.trtexec_unavailable)
    with staged_artifact(cfg.output) as staged:  # the plan and its sidecar appear together, or not at all
        write_bytes_atomic(staged.path, plan_bytes)
        write_plan_metadata(staged.path, meta)
    return meta


def _network_flags(trt, major: int, strongly_typed: bool) -> int:
    if major >= 11:
        return 0  # every 11.x network is strongly typed
    if major < 10:
        # 8.x networks are implicit-batch unless told otherwise, and its ONNX parser needs explicit batch
        return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if strongly_typed:
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


def _build_serialized(trt, major: int, prep: PreparedBuild, calib_batches, cuda: CudaApi, log: Log) -> bytes:
    cfg = prep.cfg
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, major, prep.plan.strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(prep.build_onnx)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        first = errors[0].strip().splitlines()[0] if errors and errors[0].strip() else "unknown parser error"
        raise EngineError(f"TensorRT cannot parse {prep.build_onnx}: {first}")
    config = builder.create_builder_config()
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if cfg.workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, cfg.workspace_mib << 20)
    if cfg.opt_level is not None:
        config.builder_optimization_level = cfg.opt_level
    if prep.profile:
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in prep.profile.items():
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
    if cfg.timing_cache is not None:
        _attach_timing_cache(config, cfg.timing_cache)
    feeder = None
    callback_errors = CallbackErrors()
    if major <= 10:
        _apply_builder_flags(trt, config, prep.plan.builder_flags)
        if prep.plan.calibrator is not None:
            feeder = _attach_calibrator(trt, builder, config, prep, calib_batches, cuda, callback_errors, log)
    if cfg.dla_core is not None:
        _apply_dla(trt, builder, config, cfg.dla_core, cfg.gpu_fallback)
    try:
        serialized = builder.build_serialized_network(network, config)
    except Exception:
        callback_errors.raise_first()  # a calibrator callback failed first: that is the cause
        raise
    finally:
        if feeder is not None:
            feeder.close()
    callback_errors.raise_first()  # what went wrong inside a calibrator callback is the build's error
    if serialized is None:
        raise EngineError(f"TensorRT failed to build {cfg.output} (see the TensorRT messages above)")
    if cfg.timing_cache is not None:
        cache = config.get_timing_cache()
        write_bytes_atomic(cfg.timing_cache, bytes(cache.serialize()))
    return bytes(serialized)


def _attach_timing_cache(config: "trt.IBuilderConfig", path: str) -> None:
    p = Path(path)
    data = p.read_bytes() if p.exists() else b""
    try:
        cache = config.create_timing_cache(data)
    except Exception as e:  # the binding does not raise itself; kept for whatever TensorRT may throw
        raise EngineError(f"timing cache {p} cannot be used ({e}): delete it to start a new one") from None
    if cache is None:  # the binding returns None where TensorRT returns a null cache (a corrupt blob)
        raise EngineError(f"timing cache {p} is corrupt or not a TensorRT timing cache (TensorRT could not read "
                          "it): delete it to start a new one")
    if not config.set_timing_cache(cache, False):
        raise EngineError(f"timing cache {p} does not match this TensorRT/GPU: delete it to start a new one")


@serves(8, 10)
def _apply_builder_flags(trt, config: "trt.IBuilderConfig", flags: tuple[str, ...]) -> None:
    """Weak-typing precision flags; they exist only in TensorRT 8.x and 10.x."""
    for flag in flags:
        if flag == "FP16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif flag == "INT8":
            config.set_flag(trt.BuilderFlag.INT8)
        else:
            raise InternalError(f"unknown builder precision flag {flag}")


@serves(8, 10)
def _attach_calibrator(trt, builder: "trt.Builder", config: "trt.IBuilderConfig", prep: PreparedBuild,
                       batches, cuda: CudaApi, errors: CallbackErrors, log: Log) -> CalibrationFeeder:
    """Implicit INT8 calibration (TensorRT 8.6 and 10.x) over the given ``{input: array}`` batches."""
    cfg = prep.cfg
    feeder = CalibrationFeeder(batches, 1, cuda)  # explicit-batch networks take the batch from the shape
    store = CacheStore(cfg.resolved_calib_cache(), prep.plan.calibrator, trt_version=str(trt.__version__), log=log)
    config.int8_calibrator = make_calibrator(trt, prep.plan.calibrator, feeder, store, errors)
    if prep.calib_shapes:
        calib_profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in prep.calib_shapes.items():
            calib_profile.set_shape(name, lo, opt, hi)
        config.set_calibration_profile(calib_profile)
    return feeder


def _apply_dla(trt, builder: "trt.Builder", config: "trt.IBuilderConfig", core: int, gpu_fallback: bool) -> None:
    """Place layers on DLA core ``core``; refused where the device (or this TensorRT) has no DLA."""
    if builder.num_DLA_cores == 0:
        raise UsageError(f"--dla-core {core}: this device has no DLA cores visible to TensorRT "
                         f"{trt.__version__} (DLA is on Jetson Xavier/Orin with TensorRT <= 10.7 or >= 11.4.1)")
    if core >= builder.num_DLA_cores:
        raise UsageError(f"--dla-core {core}: this device has {builder.num_DLA_cores} DLA core(s)")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = core
    if gpu_fallback:
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)


def _inspect_plan(trt, plan_bytes: bytes) -> dict | None:
    """Per-layer precision summary from the engine inspector (both JSON schemas)."""
    logger = trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(plan_bytes)
    if engine is None:
        raise EngineError("TensorRT built a plan it cannot load back")
    inspector = engine.create_engine_inspector()
    info = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    return parse_engine_information(info).to_dict()
