"""Build options for a TensorRT engine, validated on construction, and the precision matrix.

The precision matrix decides, for the TensorRT major version that will build the
engine, how each request is honoured. It never substitutes one precision for another:
a request that a version cannot honour is refused with a UsageError.

"strongly typed" means the precision comes from the ONNX (TensorRT 10 ``STRONGLY_TYPED``,
trtexec ``--stronglyTyped``; always on in 11.x, where trtexec's flag is a deprecated no-op
and is not emitted). "quantize (hp X)" runs calibration's Q/DQ quantizer first, writing the
layers it leaves unquantized in X (``QuantConfig.high_precision``): FP16 when FP16 was asked
for, else FP32, so a request never gets a precision it did not ask for. TensorRT 8.6 has no
strongly typed networks: it takes the precision from builder flags and picks per layer
(weak typing), and it needs the INT8 flag to build any Q/DQ network.

=======================  ==========================  ==========================  ===========================
request                  TensorRT 8.6                TensorRT 10.x               TensorRT 11.x
=======================  ==========================  ==========================  ===========================
(none), FP32 ONNX        FP32                        FP32                        FP32 (strongly typed)
(none), Q/DQ or FP16     flags INT8 / FP16 as the    strongly typed              strongly typed
ONNX                     ONNX carries
--fp16                   flag FP16                   flag FP16 (an FP16 ONNX:    an FP16 ONNX as is, else
                                                     strongly typed)             convert to FP16 ONNX first
--int8 (Q/DQ ONNX)       flag INT8                   strongly typed              strongly typed
--int8 --fp16 (Q/DQ      flags INT8 + FP16           flags INT8 + FP16 (an       only if the ONNX holds FP16
ONNX)                                                FP16 Q/DQ ONNX: strongly    too (else quantize the FP32
                                                     typed)                      ONNX with --calib-data)
--int8 --calib-data      quantize (hp FP32), flag    quantize (hp FP32),         quantize (hp FP32),
                         INT8                        strongly typed              strongly typed
--int8 --fp16            quantize (hp FP32), flags   quantize (hp FP16),         quantize (hp FP16),
--calib-data             INT8 + FP16                 strongly typed              strongly typed
--int8 --calibrator X    flag INT8 (+FP16) with      flag INT8 (+FP16) with      refused: implicit
--calib-data             IInt8EntropyCalibrator2 /   the same calibrators, TRT   calibration was removed
                         IInt8MinMaxCalibrator       cache
=======================  ==========================  ==========================  ===========================
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from se_deploy.errors import UsageError
from se_deploy.names import CalibMethod
from se_deploy.onnx_io import OnnxPrecision
from se_deploy.runtime.tensorrt.cuda import CUDA_APIS

CALIBRATORS = (CalibMethod.entropy, CalibMethod.minmax)  # the methods TensorRT 8.6/10 calibrate with themselves
TRT_MAJORS = (8, 10, 11)
MAX_OPT_LEVEL = 5


def parse_trt_version(text: str | int) -> tuple[int, ...]:
    """``--trt-version``: ``"10"``, ``"10.13"``, ``"10.13.3"`` or ``"8.6.2"`` -> its numbers; one UsageError line
    for anything else, or for a version se-deploy does not build for (8.6, 10.x and 11.x)."""
    parts = str(text).strip().split(".")
    if not 1 <= len(parts) <= 4 or not all(p.isdigit() for p in parts):
        raise UsageError(f"--trt-version {text!r} is not a TensorRT version: expected e.g. 10, 10.13 or 10.3.0")
    nums = tuple(int(p) for p in parts)
    if nums[0] not in TRT_MAJORS or nums[0] == 8 and (len(nums) < 2 or nums[1] < 6):
        raise UsageError(f"--trt-version must be 8.6, 10.x or 11.x, got {text} (JetPack 6.0 has 8.6.2, JetPack "
                         "6.1/6.2 have 10.3, JetPack 7 has 10.13)")
    return nums


def parse_batch_range(text: str) -> tuple[int, int, int]:
    """``"1:4:8"`` -> (1, 4, 8); a single ``"4"`` means a fixed batch of 4."""
    parts = [p.strip() for p in str(text).split(":")]
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise UsageError(f"malformed --batch {text!r}: expected min:opt:max, e.g. 1:4:8")
    lo, opt, hi = (int(p) for p in parts)
    if lo < 1 or not lo <= opt <= hi:
        raise UsageError(f"bad --batch {text!r}: need 1 <= min <= opt <= max")
    return lo, opt, hi


@dataclass(frozen=True)
class BuildConfig:
    """Everything ``se-deploy build-engine`` was asked for; immutable and checked on creation."""

    onnx: str
    output: str
    fp16: bool = False
    int8: bool = False
    calib_data: str | None = None
    calibrator: str | None = None
    calib_cache: str | None = None
    calib_batch_size: int = 1
    calib_max_batches: int | None = None
    calib_size: int | None = None
    preprocess: str = "none"
    batch: tuple[int, int, int] | None = None
    workspace_mib: int | None = None
    timing_cache: str | None = None
    opt_level: int | None = None
    dla_core: int | None = None
    gpu_fallback: bool = False
    trt_version: str | None = None  # the target TensorRT: "10", "10.13", "10.3.0", "8.6.2"
    cuda_api: str | None = None
    trtexec: str | None = None  # the trtexec executable to build with when the Python bindings are missing

    def __post_init__(self) -> None:
        if self.calibrator is not None and self.calibrator not in CALIBRATORS:
            raise UsageError(f"--calibrator {self.calibrator!r} is not one of {', '.join(CALIBRATORS)}")
        if self.calibrator is not None and not self.int8:
            raise UsageError("--calibrator needs --int8")
        if self.calibrator is not None and self.calib_data is None:
            raise UsageError("--calibrator needs --calib-data DIR|npz to calibrate from")
        if self.calib_data is not None and not self.int8:
            raise UsageError("--calib-data is only used with --int8")
        if self.calib_cache is not None and self.calibrator is None:
            raise UsageError("--calib-cache is the TensorRT calibrator cache: it needs --int8 --calibrator")
        if self.trt_version is not None:
            object.__setattr__(self, "trt_version", ".".join(map(str, parse_trt_version(self.trt_version))))
        if self.target_major == 11 and self.calibrator is not None:
            raise UsageError("TensorRT 11 has no INT8 calibrators (implicit quantization was removed): "
                             "drop --calibrator to quantize the ONNX to Q/DQ from --calib-data instead")
        if self.calib_batch_size < 1:
            raise UsageError(f"calibration batch size must be >= 1, got {self.calib_batch_size}")
        if self.calib_size is not None and self.calib_size < 1:
            raise UsageError(f"--calib-size must be >= 1, got {self.calib_size}")
        if self.calib_max_batches is not None and self.calib_max_batches < 1:
            raise UsageError(f"calibration batch count must be >= 1, got {self.calib_max_batches}")
        if self.batch is not None:
            lo, opt, hi = self.batch
            if lo < 1 or not lo <= opt <= hi:
                raise UsageError(f"bad batch range {self.batch}: need 1 <= min <= opt <= max")
        if self.workspace_mib is not None and self.workspace_mib <= 0:
            raise UsageError(f"--workspace must be a positive number of MiB, got {self.workspace_mib}")
        if self.opt_level is not None and not 0 <= self.opt_level <= MAX_OPT_LEVEL:
            raise UsageError(f"--opt-level must be between 0 and {MAX_OPT_LEVEL}, got {self.opt_level}")
        if self.dla_core is not None and self.dla_core < 0:
            raise UsageError(f"--dla-core must be >= 0, got {self.dla_core}")
        if self.gpu_fallback and self.dla_core is None:
            raise UsageError("--gpu-fallback only applies with --dla-core N")
        if self.dla_core is not None and not (self.fp16 or self.int8 or self.gpu_fallback):
            raise UsageError("DLA runs only FP16 and INT8 layers: add --fp16 or --int8, or --gpu-fallback")
        if self.cuda_api is not None and self.cuda_api not in CUDA_APIS:
            raise UsageError(f"--cuda-api {self.cuda_api!r} is not one of {', '.join(CUDA_APIS)}")
        if self.timing_cache is not None and Path(self.timing_cache).is_dir():
            raise UsageError(f"--timing-cache must be a file, got a directory: {self.timing_cache}")
        if Path(self.output).suffix.lower() == ".json":
            raise UsageError(f"-o names the plan file, not its sidecar: {self.output}")

    @property
    def target_major(self) -> int | None:
        """The TensorRT major ``--trt-version`` names, or None."""
        return int(self.trt_version.split(".")[0]) if self.trt_version is not None else None

    @property
    def requested(self) -> tuple[str, ...]:
        req = tuple(p for p, on in (("int8", self.int8), ("fp16", self.fp16)) if on)
        return req or ("fp32",)

    def resolved_calib_cache(self) -> str | None:
        if self.calibrator is None:
            return None
        return self.calib_cache or str(Path(self.output).with_suffix(".calib.cache"))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PrecisionPlan:
    """How a request becomes an engine on one TensorRT major version.

    ``prepare``: ONNX rewrites that run first, in order (``quantize_int8``, ``convert_fp16``).
    ``strongly_typed``: build a strongly typed network (precision from the ONNX).
    ``builder_flags``: weak-typing BuilderFlag names (TensorRT 8.6 and 10 only).
    ``calibrator``: implicit INT8 calibrator kind (TensorRT 8.6 and 10 only).
    ``high_precision``: with ``quantize_int8``, the type the quantizer writes for the layers it leaves
    unquantized (``fp16`` | ``fp32``; calibration's ``QuantConfig.high_precision``).
    """

    major: int
    requested: tuple[str, ...]
    prepare: tuple[str, ...] = ()
    strongly_typed: bool = False
    builder_flags: tuple[str, ...] = ()
    calibrator: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    high_precision: str | None = None

    def describe(self) -> str:
        parts = [f"TensorRT {self.major}.x", "+".join(self.requested)]
        if self.prepare:
            steps = [f"{p} (high precision {self.high_precision})" if p == "quantize_int8" and self.high_precision
                     else p for p in self.prepare]
            parts.append("prepare: " + ", ".join(steps))
        parts.append("strongly typed" if self.strongly_typed else "weakly typed")
        if self.builder_flags:
            parts.append("flags: " + ", ".join(self.builder_flags))
        if self.calibrator:
            parts.append(f"calibrator: {self.calibrator}")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return asdict(self)


def plan_precision(cfg: BuildConfig, major: int, onnx: OnnxPrecision) -> PrecisionPlan:
    """Apply the precision matrix (module docstring); raise UsageError for what ``major`` cannot build."""
    if major not in TRT_MAJORS:
        raise UsageError(f"TensorRT {major}.x is not supported: se-deploy builds with TensorRT 8.6, 10.x and 11.x")
    req = cfg.requested
    if cfg.int8 and cfg.calib_data is None and not onnx.has_qdq:
        raise UsageError("--int8 needs calibration data (--calib-data DIR|npz) or an ONNX that already has "
                         "Q/DQ nodes (se-deploy quantize --target tensorrt)")
    if cfg.int8 and cfg.calib_data is not None and onnx.has_qdq:
        raise UsageError("the ONNX already has Q/DQ nodes (it is quantized): drop --calib-data, or pass the "
                         "unquantized ONNX")
    if major == 11:
        return _plan_trt11(cfg, onnx, req)
    if major == 8:
        return _plan_trt8(cfg, onnx, req)
    return _plan_trt10(cfg, onnx, req)


def _quantize_step(cfg: BuildConfig, high_precision: str) -> tuple[tuple[str, ...], str | None]:
    """(prepare steps, high precision) for a request that quantizes the ONNX from --calib-data."""
    if cfg.int8 and cfg.calib_data is not None and cfg.calibrator is None:
        return ("quantize_int8",), high_precision
    return (), None


def _plan_trt11(cfg: BuildConfig, onnx: OnnxPrecision, req: tuple[str, ...]) -> PrecisionPlan:
    if cfg.calibrator is not None:
        raise UsageError("TensorRT 11 has no INT8 calibrators (implicit quantization was removed): drop "
                         "--calibrator to quantize the ONNX to Q/DQ from --calib-data instead")
    prepare, hp = _quantize_step(cfg, "fp16" if cfg.fp16 else "fp32")
    if cfg.fp16 and onnx.has_qdq and not onnx.has_fp16:
        raise UsageError("TensorRT 11 takes INT8+FP16 only from the ONNX itself, and this Q/DQ ONNX has no FP16 "
                         "layers: pass the FP32 ONNX with --int8 --fp16 --calib-data (se-deploy then writes the Q/DQ "
                         "model with FP16 high precision), or build --int8 and --fp16 engines separately")
    steps = list(prepare)
    if cfg.fp16 and not onnx.has_fp16 and not prepare:
        steps.append("convert_fp16")
    notes = []
    if not cfg.int8 and onnx.has_qdq:
        notes.append("the ONNX carries Q/DQ nodes: those layers run in INT8")
    if not cfg.fp16 and onnx.has_fp16:
        notes.append("the ONNX carries FP16 tensors: those layers run in FP16")
    return PrecisionPlan(11, req, tuple(steps), True, (), None, tuple(notes), hp)


def _plan_trt10(cfg: BuildConfig, onnx: OnnxPrecision, req: tuple[str, ...]) -> PrecisionPlan:
    notes = []
    if cfg.calibrator is not None:
        # Implicit (calibrated) INT8: weak typing; FP16 as a builder flag when also asked.
        flags = ("INT8", "FP16") if cfg.fp16 else ("INT8",)
        notes.append("implicit INT8 calibration is deprecated since TensorRT 10.1 and gone in 11")
        return PrecisionPlan(10, req, (), False, flags, cfg.calibrator, tuple(notes))
    prepare, hp = _quantize_step(cfg, "fp16" if cfg.fp16 else "fp32")
    has_qdq = onnx.has_qdq or bool(prepare)
    if cfg.int8:  # Q/DQ model (given, or prepared with the float layers in the requested type)
        if cfg.fp16 and not onnx.has_fp16 and not prepare:
            return PrecisionPlan(10, req, (), False, ("INT8", "FP16"), None,
                                 ("explicit Q/DQ INT8; FP16 allowed for the float layers",))
        return PrecisionPlan(10, req, prepare, True, (), None, (), hp)
    if cfg.fp16:
        if onnx.has_fp16:
            return PrecisionPlan(10, req, (), True, (), None, ("the ONNX is already FP16",))
        if has_qdq:
            return PrecisionPlan(10, req, (), False, ("INT8", "FP16"), None,
                                 ("the ONNX carries Q/DQ nodes: those layers run in INT8",))
        return PrecisionPlan(10, req, (), False, ("FP16",), None, ())
    if has_qdq or onnx.has_fp16:
        notes.append("precision comes from the ONNX (Q/DQ or FP16 tensors): strongly typed build")
        return PrecisionPlan(10, req, (), True, (), None, tuple(notes))
    return PrecisionPlan(10, req, (), False, (), None, ())


def _plan_trt8(cfg: BuildConfig, onnx: OnnxPrecision, req: tuple[str, ...]) -> PrecisionPlan:
    """TensorRT 8.6: no strongly typed networks, so every precision is a builder flag (weak typing)."""
    notes = ["TensorRT 8.6 has no strongly typed networks: the precision flags let it pick each layer's precision"]
    if cfg.calibrator is not None:
        flags = ("INT8", "FP16") if cfg.fp16 else ("INT8",)
        return PrecisionPlan(8, req, (), False, flags, cfg.calibrator, tuple(notes))
    # Weak typing picks FP16 per layer from the flag, so the quantizer keeps its float layers FP32.
    prepare, hp = _quantize_step(cfg, "fp32")
    has_qdq = onnx.has_qdq or bool(prepare)
    flags = []
    if has_qdq:  # TensorRT 8 builds a Q/DQ network only with the INT8 flag set
        flags.append("INT8")
        if not cfg.int8:
            notes.append("the ONNX carries Q/DQ nodes: those layers run in INT8")
    if cfg.fp16 or onnx.has_fp16:
        flags.append("FP16")
        if not cfg.fp16:
            notes.append("the ONNX carries FP16 tensors: the FP16 flag lets those layers run in FP16")
    return PrecisionPlan(8, req, prepare, False, tuple(flags), None, tuple(notes), hp)
