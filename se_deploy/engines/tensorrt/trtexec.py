"""The exact trtexec command equivalent to a ``se-deploy build-engine`` call (pure Python).

trtexec 8.6, 10.x and 11.x differ: 11.x is always strongly typed and has no precision flags
(``--fp16 --int8 --best --calib --bf16 --fp8 --int4`` are gone), so the precision must
already be in the ONNX. 10.x uses ``--memPoolSize=workspace:<size>`` (``--workspace`` was
removed in 10.0) and ``--stronglyTyped`` to take the precision from the ONNX. 8.6 has no
``--stronglyTyped`` (weak typing only) and reads ``--memPoolSize`` sizes in MiB without a
suffix (``samples/common/sampleOptions.cpp`` of each release branch).

trtexec's own INT8 calibrator is always ``IInt8EntropyCalibrator2`` and never writes a cache
(``RndInt8Calibrator`` in samples/common/sampleEngines.cpp, 8.6 to 10.16); TensorRT discards a
cache whose header names another algorithm, so a MinMax calibration has no trtexec equivalent
(:func:`trtexec_unsupported`).

Every emitted flag is checked against :data:`TRTEXEC_FLAGS` for its version before the
command is returned, so a flag that a version does not accept cannot be printed.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from se_deploy.engines.tensorrt.config import BuildConfig, PrecisionPlan
from se_deploy.errors import InternalError, UsageError
from se_deploy.names import CalibMethod

_COMMON = frozenset({
    "--onnx", "--saveEngine", "--minShapes", "--optShapes", "--maxShapes", "--memPoolSize",
    "--timingCacheFile", "--builderOptimizationLevel", "--useDLACore", "--allowGPUFallback",
    "--profilingVerbosity", "--exportLayerInfo", "--skipInference",
})
_IMPLICIT = frozenset({"--fp16", "--int8", "--calib", "--minShapesCalib", "--optShapesCalib", "--maxShapesCalib"})
#: Flags se-deploy may emit, per trtexec major version.
TRTEXEC_FLAGS: dict[int, frozenset[str]] = {
    8: _COMMON | _IMPLICIT,
    10: _COMMON | _IMPLICIT | {"--stronglyTyped"},
    11: _COMMON,
}
#: Flags that a version rejects; never emitted for it.
TRTEXEC_REMOVED: dict[int, frozenset[str]] = {
    8: frozenset({"--stronglyTyped", "--bf16", "--fp8", "--int4", "--fp4", "--calibProfile"}),
    10: frozenset({"--workspace", "--explicitBatch", "--minTiming", "--deploy", "--uff", "--model", "--output",
                   "--maxBatch"}),
    11: frozenset({"--fp16", "--int8", "--best", "--calib", "--bf16", "--fp8", "--int4", "--fp4", "--workspace",
                   "--explicitBatch", "--minTiming", "--minShapesCalib", "--optShapesCalib", "--maxShapesCalib",
                   "--precisionConstraints", "--layerPrecisions", "--layerOutputTypes"}),
}


@dataclass(frozen=True)
class TrtexecCommand:
    major: int
    args: tuple[str, ...]

    @property
    def flags(self) -> list[str]:
        return [a.split("=", 1)[0] for a in self.args[1:]]

    def line(self) -> str:
        return shlex.join(self.args)


def _shape(dims) -> str:
    return "x".join(str(int(d)) for d in dims)


def _shapes_arg(shapes: dict[str, tuple], which: int) -> str:
    return ",".join(f"{name}:{_shape(mmm[which])}" for name, mmm in shapes.items())


def trtexec_unsupported(plan: PrecisionPlan) -> str | None:
    """Why no trtexec command builds the engine ``plan`` describes (one line), or None."""
    if plan.calibrator is not None and plan.calibrator != CalibMethod.entropy:
        return (f"trtexec calibrates only with IInt8EntropyCalibrator2, and TensorRT discards a "
                f"{plan.calibrator} (MinMaxCalibration) cache handed to it: use --calibrator entropy for a trtexec "
                "build, or build with the TensorRT Python bindings on the device")
    return None


def trtexec_command(cfg: BuildConfig, plan: PrecisionPlan, onnx_path: str,
                    profile: dict[str, tuple], *, calib_shapes: dict[str, tuple] | None = None) -> TrtexecCommand:
    """Build the trtexec argv for ``plan.major``. ``onnx_path`` is the model trtexec reads (after any
    Q/DQ or FP16 preparation); ``profile`` maps input name -> (min, opt, max) shapes."""
    major = plan.major
    why = trtexec_unsupported(plan)
    if why is not None:
        raise UsageError(why)
    args = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={cfg.output}"]
    if profile:
        args += [f"--minShapes={_shapes_arg(profile, 0)}", f"--optShapes={_shapes_arg(profile, 1)}",
                 f"--maxShapes={_shapes_arg(profile, 2)}"]
    if major <= 10:
        if plan.strongly_typed:  # never planned for 8.x
            args.append("--stronglyTyped")
        flag_names = {"FP16": "--fp16", "INT8": "--int8"}
        args += [flag_names[f] for f in plan.builder_flags]
        if plan.calibrator is not None:
            args.append(f"--calib={cfg.resolved_calib_cache()}")
            if calib_shapes:
                for i, name in enumerate(("--minShapesCalib", "--optShapesCalib", "--maxShapesCalib")):
                    args.append(f"{name}={_shapes_arg(calib_shapes, i)}")
    if cfg.workspace_mib is not None:
        unit = "" if major < 10 else "M"  # 8.6 reads a plain number of MiB
        args.append(f"--memPoolSize=workspace:{cfg.workspace_mib}{unit}")
    if cfg.timing_cache is not None:
        args.append(f"--timingCacheFile={cfg.timing_cache}")
    if cfg.opt_level is not None:
        args.append(f"--builderOptimizationLevel={cfg.opt_level}")
    if cfg.dla_core is not None:
        args.append(f"--useDLACore={cfg.dla_core}")
        if cfg.gpu_fallback:
            args.append("--allowGPUFallback")
    args += ["--profilingVerbosity=detailed", f"--exportLayerInfo={cfg.output}.layers.json", "--skipInference"]
    cmd = TrtexecCommand(major, tuple(args))
    check_trtexec_flags(cmd)
    return cmd


def trtexec_problems(cmd: TrtexecCommand) -> list[str]:
    """Flags in ``cmd`` that its trtexec version does not accept."""
    allowed = TRTEXEC_FLAGS.get(cmd.major)
    if allowed is None:
        return [f"no trtexec flag table for TensorRT {cmd.major}.x"]
    removed = TRTEXEC_REMOVED[cmd.major]
    probs = []
    for flag in cmd.flags:
        if flag in removed:
            probs.append(f"{flag} was removed in trtexec {cmd.major}.x")
        elif flag not in allowed:
            probs.append(f"{flag} is not a known trtexec {cmd.major}.x flag")
    return probs


def check_trtexec_flags(cmd: TrtexecCommand) -> None:
    probs = trtexec_problems(cmd)
    if probs:
        raise InternalError("trtexec command builder emitted invalid flags: " + "; ".join(probs))
