"""ONNX -> TensorRT plan with the TensorRT Python API, for TensorRT 10.x and 11.x.

The TensorRT-touching functions are thin and follow the conventions in ``_trt.py``
(``trt`` from :func:`load_tensorrt`, the major version in ``major``, TensorRT objects in
variables whose type is decidable from where they were made, version-specific functions
marked with :func:`serves`). ``tools/trt_api_check.py`` checks every TensorRT name used here
against the API manifests of each version that runs it.

Everything before the TensorRT calls (reading the ONNX, the precision plan, the Q/DQ or
FP16 preparation, the profile and the trtexec equivalent) is plain Python in
:func:`prepare_build`, so it runs and is tested without TensorRT.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from se_deploy._util import check_output_path, sha256_file, write_bytes_atomic
from se_deploy.runtime.tensorrt._trt import load_tensorrt, serves, trt_major
from se_deploy.engines.tensorrt.calibrator import (ALGORITHMS, CacheStore, CalibrationFeeder, calibration_batches,
                                                   make_calibrator)
from se_deploy.engines.tensorrt.config import BuildConfig, OnnxPrecision, PrecisionPlan, plan_precision
from se_deploy.runtime.tensorrt.cuda import CudaApi, get_cuda_api
from se_deploy.engines.tensorrt.inspector import parse_engine_information
from se_deploy.engines.tensorrt.onnx_model import GraphInput, graph_inputs, onnx_precision, profile_shapes
from se_deploy.runtime.tensorrt.plan_meta import DeviceInfo, plan_metadata, write_plan_metadata
from se_deploy.engines.tensorrt.trtexec import TrtexecCommand, trtexec_command
from se_deploy.errors import (CalibrationError, EngineError, InternalError, MissingDependencyError,
                              QuantizationError, UsageError)
from se_deploy.onnx_io import load_onnx

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
    trtexec: TrtexecCommand


def prepared_onnx_path(cfg: BuildConfig, step: str) -> Path:
    """Where a preparation step writes its ONNX: beside the plan, ``model.int8.onnx`` / ``model.fp16.onnx``."""
    out = Path(cfg.output)
    tag = {"quantize_int8": "int8", "convert_fp16": "fp16"}[step]
    return out.with_name(f"{out.stem}.{tag}.onnx")


def prepare_build(cfg: BuildConfig, major: int, *, log: Log = _stderr) -> PreparedBuild:
    """Read the ONNX, apply the precision matrix, run the Q/DQ or FP16 preparation, and make the
    trtexec equivalent. No TensorRT needed."""
    check_output_path(cfg.output)
    model = load_onnx(cfg.onnx)
    if cfg.calib_data is not None and not Path(cfg.calib_data).exists():
        raise CalibrationError(f"calibration data not found: {cfg.calib_data}")
    prec = onnx_precision(model)
    inputs = tuple(graph_inputs(model))
    profile = profile_shapes(list(inputs), cfg.batch)
    plan = plan_precision(cfg, major, prec)
    for note in plan.notes:
        log(f"note: {note}")
    build_onnx = str(cfg.onnx)
    for step in plan.prepare:
        out = prepared_onnx_path(cfg, step)
        if step == "quantize_int8":
            _quantize_int8(build_onnx, out, cfg, inputs)
            after = onnx_precision(load_onnx(out))
            if not after.has_qdq:
                raise QuantizationError(f"INT8 quantization of {build_onnx} produced no Q/DQ nodes: refusing to "
                                        "build an engine that would not be INT8")
            log(f"prepared {out} (INT8 Q/DQ for TensorRT, {after.qdq_nodes} Q/DQ nodes)")
        elif step == "convert_fp16":
            _convert_fp16(build_onnx, out)
            after = onnx_precision(load_onnx(out))
            if not after.has_fp16:
                raise QuantizationError(f"FP16 conversion of {build_onnx} produced no FP16 tensors: refusing to "
                                        "build an engine that would not be FP16")
            log(f"prepared {out} (FP16 ONNX, {after.fp16_tensors} FP16 tensors)")
        else:
            raise InternalError(f"unknown preparation step {step}")
        build_onnx = str(out)
    calib_shapes = {}
    if plan.calibrator is not None and profile:
        bs = cfg.calib_batch_size
        calib_shapes = {name: ((bs, *m[1][1:]),) * 3 for name, m in profile.items()}
    cmd = trtexec_command(cfg, plan, build_onnx, profile, calib_shapes=calib_shapes)
    return PreparedBuild(cfg, plan, prec, inputs, profile, calib_shapes, build_onnx, cmd)


def _load_calibration(cfg: BuildConfig, inputs: tuple[GraphInput, ...]):
    """The CalibrationSet for the model's (single) input, read the same way as ``se-deploy quantize``."""
    from se_deploy.calibration.dataset import load_calibration
    from se_deploy.calibration.preprocess import make_preprocess

    if len(inputs) != 1:
        raise CalibrationError(f"INT8 calibration supports single-input models; this one has {len(inputs)} inputs")
    inp = inputs[0]
    return load_calibration(cfg.calib_data, input_name=inp.name, input_shape=inp.dims,
                            preprocess=make_preprocess(cfg.preprocess), calib_size=cfg.calib_size, seed=0,
                            progress=False)


def _calibration_arrays(calib) -> dict:
    arrays = calib.arrays
    if isinstance(arrays, dict):
        return dict(arrays)
    return {calib.input_name: arrays}


def _quantize_int8(onnx_in: str, onnx_out: Path, cfg: BuildConfig, inputs: tuple[GraphInput, ...]) -> None:
    from se_deploy.calibration.quantize import QuantConfig, quantize_int8

    quantize_int8(onnx_in, str(onnx_out), _load_calibration(cfg, inputs), QuantConfig(target="tensorrt"))


def _convert_fp16(onnx_in: str, onnx_out: Path) -> None:
    from se_deploy.calibration.fp16 import Fp16Config, convert_fp16

    convert_fp16(onnx_in, str(onnx_out), Fp16Config())


def write_trtexec_calib_cache(prep: PreparedBuild, *, trt_version: str | None = None,
                              log: Log = _stderr) -> Path | None:
    """For ``trtexec --int8 --calib=FILE`` on a device: write the cache from onnxruntime ranges when it does
    not exist yet (TensorRT's format; the header names ``trt_version``, default 10.3 as on JetPack 6)."""
    from se_deploy.calibration.trt_cache import DEFAULT_TRT_VERSION, collect_amax, write_calibration_cache

    cfg = prep.cfg
    if prep.plan.calibrator is None:
        return None
    path = Path(cfg.resolved_calib_cache())
    if path.exists():
        return None
    calib = _load_calibration(cfg, prep.inputs)
    amax = collect_amax(prep.build_onnx, calib, method=prep.plan.calibrator)
    algorithm = ALGORITHMS[prep.plan.calibrator]
    version = trt_version or DEFAULT_TRT_VERSION
    write_calibration_cache(path, amax, algorithm=algorithm, trt_version=".".join(version.split(".")[:3]))
    log(f"wrote {path} ({len(amax)} tensor ranges from onnxruntime, header for TensorRT {version}; "
        "a TensorRT of another version recalibrates instead of reading it)")
    return path


# --- TensorRT (both majors unless marked) ---------------------------------------------------

def installed_tensorrt():
    """The tensorrt module, or None when it cannot be imported here."""
    try:
        return load_tensorrt()
    except MissingDependencyError:
        return None


def build_engine(cfg: BuildConfig, *, log: Log = _stderr) -> dict:
    """Build ``cfg.onnx`` into ``cfg.output`` (+ sidecar); return the sidecar metadata."""
    trt = load_tensorrt()
    major = trt_major(trt)
    if major not in (10, 11):
        raise EngineError(f"TensorRT {trt.__version__} is not supported: se-deploy builds with 10.x and 11.x")
    if cfg.trt_version is not None and cfg.trt_version != major:
        raise UsageError(f"--trt-version {cfg.trt_version} given, but TensorRT {trt.__version__} is installed")
    cuda = get_cuda_api(cfg.cuda_api)
    try:
        return _build_with(trt, major, cfg, cuda, log)
    finally:
        cuda.close()


def _build_with(trt, major: int, cfg: BuildConfig, cuda: CudaApi, log: Log) -> dict:
    if cuda.device_count() == 0:
        raise EngineError("no NVIDIA GPU is visible to CUDA here: build on the target device")
    gpu_name, cc = cuda.device_info(0)
    prep = prepare_build(cfg, major, log=log)
    log(f"building {cfg.output}: {prep.plan.describe()}")
    t0 = time.perf_counter()
    plan_bytes = _build_serialized(trt, major, prep, cuda)
    seconds = time.perf_counter() - t0
    layers = _inspect_plan(trt, plan_bytes)
    write_bytes_atomic(cfg.output, plan_bytes)
    meta = plan_metadata(
        device=DeviceInfo(str(trt.__version__), gpu_name, cc),
        precision={**prep.plan.to_dict(), "onnx_qdq_nodes": prep.onnx_precision.qdq_nodes,
                   "onnx_fp16_tensors": prep.onnx_precision.fp16_tensors,
                   "calibration_cache": cfg.resolved_calib_cache()},
        layers=layers, profile=prep.profile, onnx_path=str(cfg.onnx), onnx_sha256=sha256_file(cfg.onnx),
        built_onnx_path=prep.build_onnx, build_seconds=seconds,
        options={"workspace_mib": cfg.workspace_mib, "opt_level": cfg.opt_level, "dla_core": cfg.dla_core,
                 "gpu_fallback": cfg.gpu_fallback, "timing_cache": cfg.timing_cache, "cuda_api": cuda.name},
        trtexec=prep.trtexec.line())
    write_plan_metadata(cfg.output, meta)
    return meta


def _network_flags(trt, major: int, strongly_typed: bool) -> int:
    if major >= 11:
        return 0  # every 11.x network is strongly typed
    if strongly_typed:
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


def _build_serialized(trt, major: int, prep: PreparedBuild, cuda: CudaApi) -> bytes:
    cfg = prep.cfg
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, major, prep.plan.strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(prep.build_onnx)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        first = errors[0].strip().splitlines()[0] if errors else "unknown parser error"
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
    if major == 10:
        _apply_builder_flags(trt, config, prep.plan.builder_flags)
        if prep.plan.calibrator is not None:
            feeder = _attach_calibrator(trt, builder, config, prep, cuda)
    if cfg.dla_core is not None:
        _apply_dla(trt, builder, config, cfg.dla_core, cfg.gpu_fallback)
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if feeder is not None:
            feeder.close()
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
    except Exception as e:  # TensorRT raises on a corrupt or foreign cache
        raise EngineError(f"timing cache {p} cannot be used ({e}): delete it to start a new one") from None
    if not config.set_timing_cache(cache, False):
        raise EngineError(f"timing cache {p} does not match this TensorRT/GPU: delete it to start a new one")


@serves(10)
def _apply_builder_flags(trt, config: "trt.IBuilderConfig", flags: tuple[str, ...]) -> None:
    """Weak-typing precision flags; they exist only in TensorRT 10.x."""
    for flag in flags:
        if flag == "FP16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif flag == "INT8":
            config.set_flag(trt.BuilderFlag.INT8)
        else:
            raise InternalError(f"unknown builder precision flag {flag}")


@serves(10)
def _attach_calibrator(trt, builder: "trt.Builder", config: "trt.IBuilderConfig", prep: PreparedBuild,
                       cuda: CudaApi) -> CalibrationFeeder:
    """Implicit INT8 calibration (TensorRT 10.x only)."""
    cfg = prep.cfg
    calib = _load_calibration(cfg, prep.inputs)
    bs = cfg.calib_batch_size
    static_batch = [i.dims[0] for i in prep.inputs if i.dims and isinstance(i.dims[0], int) and i.dims[0] > 0]
    if static_batch and not prep.profile:
        bs = static_batch[0]
    try:
        batches = calibration_batches(_calibration_arrays(calib), bs, cfg.calib_max_batches)
    except (TypeError, AttributeError) as e:
        raise CalibrationError(f"calibration data {cfg.calib_data} cannot be batched: {e}") from None
    feeder = CalibrationFeeder(batches, 1, cuda)  # explicit-batch networks take the batch from the shape
    store = CacheStore(cfg.resolved_calib_cache(), prep.plan.calibrator)
    config.int8_calibrator = make_calibrator(trt, prep.plan.calibrator, feeder, store)
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
