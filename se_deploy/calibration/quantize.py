"""INT8 Q/DQ models with onnxruntime.quantization, in the form each backend runs fastest.

:func:`quantize_int8` is a short orchestrator, as NVIDIA ModelOpt's ``int8.quantize`` is:

1. refuse what cannot be quantized (an FP16 or already-quantized model);
2. ``quant_pre_process`` (shape inference, onnxruntime's basic fusions), name every node;
3. find the SE blocks (:mod:`se_deploy.export.se_detect`);
4. place the Q/DQ with the named rules of :mod:`se_deploy.calibration.placement`;
5. activation ranges from calibration data (:mod:`~se_deploy.calibration.ranges`) or from a
   TensorRT calibration cache (:mod:`~se_deploy.calibration.trt_cache`);
6. ``quantize_static`` in QDQ format, then the placement's float inputs restored;
7. the layers left unquantized written in the high-precision type (:mod:`~se_deploy.calibration.fp16`);
8. the Q/DQ linter (:mod:`~se_deploy.calibration.qdq_lint`) on the result: a finding is a bug;
9. numerics against FP32 on held-out data, and the sidecar.

Two targets:

* ``tensorrt``: symmetric signed INT8 activations and weights (zero point 0), per-channel
  weights, float bias (and no weight-scale adjustment for an int32 bias that is never
  written), Q/DQ on node inputs only, placed as TensorRT fuses it; float layers in FP16 by
  default, graph inputs and outputs FP32 behind Casts. TensorRT 10 (``--stronglyTyped``) and 11
  build this graph as explicit INT8 with FP16 elsewhere.
* ``cpu``: QUInt8 activations and QInt8 per-channel weights, the combination onnxruntime's
  x86 kernels run fastest (signed activations ran slower than FP32 on our CPU); FP32 elsewhere.

SE blocks follow ``se_mode`` (:class:`~se_deploy.names.SeMode`): ``cheap`` by default on
both targets.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, NonNegativeFloat, PositiveInt, model_validator

from se_deploy._util import check_output_path, sha256_file, working_directory
from se_deploy.calibration import placement as qplace
from se_deploy.calibration.placement import name_nodes
from se_deploy.calibration import qdq_lint
from se_deploy.calibration.accuracy import evaluate
from se_deploy.calibration.dataset import MIN_INT8_SAMPLES, CalibrationSet
from se_deploy.calibration.fp16 import qdq_to_high_precision, raise_opset
from se_deploy.calibration.trt_cache import load_calibration_cache, match_cache
from se_deploy.calibration.ranges import (DEFAULT_ENTROPY_BINS, QUANTIZED_BINS, amax_of, calibration_batch,
                                          collect_ranges, ort_method, ranges_from_amax)
from se_deploy.config import BadValue, Config
from se_deploy.export.se_detect import find_matches, to_ir
from se_deploy.errors import CalibrationError, InputError, QuantizationError, UsageError, first_line
from se_deploy.files import refuse_clobbering, rejected_path, staged_artifact
from se_deploy.names import CalibMethod, HighPrecision, QuantTarget, SeMode
from se_deploy.numerics import probe_inputs
from se_deploy.onnx_io import load_onnx, model_input, onnx_precision, save_onnx

log = logging.getLogger("se_deploy.calibration")

#: the opset that allows FP16 Q/DQ scales (QuantizeLinear/DequantizeLinear-19)
FP16_QDQ_OPSET = 19


@dataclass(frozen=True)
class TargetSpec:
    """How one backend wants its Q/DQ graph."""
    name: str
    activation_type: str  # onnxruntime QuantType member name
    activation_symmetric: bool
    quantize_bias: bool
    default_high_precision: HighPrecision
    description: str

    def ort_options(self) -> dict[str, Any]:
        """onnxruntime ``extra_options`` that every run for this target passes."""
        opts: dict[str, Any] = {"ActivationSymmetric": self.activation_symmetric, "WeightSymmetric": True,
                                "QuantizeBias": self.quantize_bias}
        if self.name == QuantTarget.tensorrt:
            opts.update({
                # the bias stays float: enlarging weight scales to fit an int32 bias that is never
                # written only zeroes small channels (seen at 14,936x amax/127 on a MobileNetV2)
                "QDQDisableWeightAdjustForInt32Bias": True,
                # pools are placed by the rules, whether or not their producer is quantized
                "ForceQuantizeNoInputCheck": True,
                "DedicatedQDQPair": False,
                "QDQOpTypePerChannelSupportToAxis": dict(qplace.PER_CHANNEL_AXIS),
            })
        return opts


TARGETS: dict[QuantTarget, TargetSpec] = {  # one per QuantTarget (a test checks)
    QuantTarget.tensorrt: TargetSpec(
        name="tensorrt", activation_type="QInt8", activation_symmetric=True, quantize_bias=False,
        default_high_precision=HighPrecision.fp16,
        description="symmetric s8 activations and weights, per-channel weights, float bias, Q/DQ on op inputs "
                    "placed as TensorRT fuses them"),
    QuantTarget.cpu: TargetSpec(
        name="cpu", activation_type="QUInt8", activation_symmetric=False, quantize_bias=True,
        default_high_precision=HighPrecision.fp32,
        description="u8 activations, s8 per-channel weights (onnxruntime x86 fast path)"),
}


class QuantConfig(Config):
    """What INT8 model to build.

    ``se_mode``: None follows the target (cheap on both). ``high_precision``: the type of the
    layers left unquantized; None follows the target (fp16 for tensorrt, fp32 for cpu).
    ``entropy_bins``: histogram size for ``method = "entropy"``.
    ``exclude``: node names or op types kept in float (the user's sensitive layers).
    ``max_drop``: top-1 accuracy budget in points; exceeding it marks the model rejected.
    ``batch_size``: calibration batch when the model's batch dimension is dynamic.
    """

    target: QuantTarget = QuantTarget.tensorrt
    method: CalibMethod = CalibMethod.minmax
    percentile: float = Field(99.999, ge=90.0, lt=100.0)
    entropy_bins: int = Field(DEFAULT_ENTROPY_BINS, ge=QUANTIZED_BINS, le=65536)
    se_mode: SeMode | None = None
    high_precision: HighPrecision | None = None
    exclude: tuple[str, ...] = ()
    per_channel: bool = True
    batch_size: PositiveInt = 8
    preprocess_model: bool = True
    max_drop: NonNegativeFloat | None = None  # top-1 points

    @model_validator(mode="after")
    def _target_form(self):
        if self.target == QuantTarget.tensorrt and not self.per_channel:
            raise BadValue("per_channel", False, "is refused for the tensorrt target: TensorRT's INT8 convolution "
                                                 "form needs per-channel weights")
        if self.target == QuantTarget.cpu and self.high_precision == HighPrecision.fp16:
            raise BadValue("high_precision", "fp16", "is for the tensorrt target: onnxruntime's CPU kernels run "
                                                     "FP16 slower than FP32")
        return self

    @property
    def spec(self) -> TargetSpec:
        return TARGETS[self.target]

    @property
    def resolved_se_mode(self) -> SeMode:
        return SeMode(self.se_mode) if self.se_mode is not None else SeMode.cheap

    @property
    def resolved_high_precision(self) -> HighPrecision:
        return HighPrecision(self.high_precision or self.spec.default_high_precision)


# --------------------------------------------------------------------------- helpers


def resolve_excludes(model, patterns: tuple[str, ...]) -> dict[str, list[str]]:
    """Map each ``--exclude`` entry (node name or op type) to the node names it covers."""
    by_type: dict[str, list[str]] = {}
    names = set()
    for n in model.graph.node:
        by_type.setdefault(n.op_type, []).append(n.name)
        names.add(n.name)
    out: dict[str, list[str]] = {}
    for p in patterns:
        if p in names:
            out[p] = [p]
        elif p in by_type:
            out[p] = list(by_type[p])
        else:
            sample = sorted(by_type)[:8]
            raise UsageError(f"--exclude {p!r} matches no node name or op type in the model "
                             f"(op types present: {', '.join(sample)}{' ...' if len(by_type) > 8 else ''})")
    return out


def qdq_facts(model) -> dict[str, Any]:
    """Counts of a Q/DQ graph: Q/DQ nodes, zero-point types, int32 bias DQs, Casts, FP16 tensors."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    counts: dict[str, int] = {}
    for n in model.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    zp_types: set[str] = set()
    nonzero_zp = int32_dq = 0
    for n in model.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if len(n.input) > 2 and n.input[2] in inits:
            zp = numpy_helper.to_array(inits[n.input[2]])
            zp_types.add(str(zp.dtype))
            nonzero_zp += int(np.any(zp != 0))
        if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].data_type == 6:  # INT32
            int32_dq += 1
    prec = onnx_precision(model)
    return {
        "quantize_linear": counts.get("QuantizeLinear", 0),
        "dequantize_linear": counts.get("DequantizeLinear", 0),
        "dynamic_quantize_linear": counts.get("DynamicQuantizeLinear", 0),
        "zero_point_dtypes": sorted(zp_types),
        "nonzero_zero_points": nonzero_zp,
        "int32_bias_dequantize": int32_dq,
        "cast": counts.get("Cast", 0),
        "fp16_tensors": prec.fp16_tensors,
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
        "op_counts": dict(sorted(counts.items())),
    }


def check_quantizable(model, path: str | Path) -> None:
    """Refuse a model INT8 quantization cannot start from, with one line saying what to do instead."""
    prec = onnx_precision(model)
    if prec.has_qdq or prec.qoperator_nodes:
        raise InputError(f"{path} is already quantized ({prec.qdq_nodes + prec.qoperator_nodes} Q/DQ or quantized "
                         "nodes): quantize the FP32 model it came from")
    if prec.has_fp16:
        raise InputError(f"{path} is an FP16 model ({prec.fp16_tensors} FP16 tensors): quantize the FP32 model "
                         "instead; --high-precision fp16 writes the layers INT8 leaves float in FP16")


def _pre_process(onnx_in: Path, pre: Path, work_dir: Path, warnings: list[str] | None) -> None:
    """onnxruntime's quant_pre_process, run from ``work_dir``, falling back to ONNX shape inference.

    When onnxruntime's symbolic shape inference cannot finish (expand-gate's Resize with a
    symbolic batch, for one) it dumps ``sym_shape_infer_temp.onnx`` and a uuid-named external
    data file into the *current directory*; running it with ``work_dir`` as the current
    directory keeps that dump in the temporary work folder instead of the user's. Written by
    hand: onnxruntime has no option for where that dump goes. The retry skips only the symbolic
    pass (ONNX shape inference and onnxruntime's fusions still run), which is all a CNN needs.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = str(onnx_in.resolve()), str(pre.resolve())  # absolute: the current directory changes below
    with working_directory(work_dir):
        try:
            quant_pre_process(src, dst, skip_symbolic_shape=False)
            return
        except Exception as e:
            first = first_line(e)
        try:
            quant_pre_process(src, dst, skip_symbolic_shape=True)
        except Exception:
            raise QuantizationError(f"onnxruntime quantization pre-processing failed: {first}") from None
    note = f"onnxruntime symbolic shape inference failed ({first}); pre-processed with ONNX shape inference only"
    log.warning(note)
    if warnings is not None:
        warnings.append(note)


def prepare_model(onnx_in: str | Path, work_dir: Path, *, run_pre_process: bool = True,
                  warnings: list[str] | None = None) -> tuple[Path, Any]:
    """quant_pre_process (shape inference + onnxruntime's basic fusions), then name every node."""
    check_quantizable(load_onnx(onnx_in), onnx_in)  # one-line errors before onnxruntime sees the file
    pre = work_dir / "pre.onnx"
    if run_pre_process:
        _pre_process(Path(onnx_in), pre, work_dir, warnings)
        model = load_onnx(pre, check=False)
    else:
        model = load_onnx(onnx_in, check=False)
    name_nodes(model)
    save_onnx(model, pre)
    return pre, model


def _se_matches(model) -> tuple[Any, list]:
    """(onnx-ir model, SE matches); detection failing leaves the blocks unrecognised, with a warning."""
    irm = to_ir(model)
    try:
        return irm, find_matches(irm)[0]
    except Exception as e:  # detection is a help for precision choices; its failure must not block INT8
        log.warning("SE detection failed (%s: %s); quantizing without SE-specific placement", type(e).__name__, e)
        return irm, []


@dataclass
class Ranges:
    """Activation ranges for quantize_static, and where they came from."""

    data: Any  # onnxruntime TensorsData
    source: dict


def ranges_from_data(pre_path: Path, calib: CalibrationSet, config: QuantConfig, input_name: str,
                     batch: int) -> Ranges:
    data = collect_ranges(pre_path, calib, input_name=input_name, batch_size=batch, method=config.method,
                          percentile=config.percentile, symmetric=config.spec.activation_symmetric,
                          entropy_bins=config.entropy_bins)
    return Ranges(data, {"kind": "calibration data", "method": str(config.method)})


def ranges_from_cache(cache_path: str | Path, model, fill: Ranges | None) -> Ranges:
    """Ranges from a TensorRT calibration cache; tensors it lacks take ``fill``'s ranges (or a placeholder
    that :func:`_check_cache_coverage` refuses if a Q/DQ ends up using it)."""
    cache = load_calibration_cache(cache_path)
    tensors = {o for n in model.graph.node for o in n.output} | {i.name for i in model.graph.input}
    got = match_cache(cache, tensors)
    amax = dict(amax_of(fill.data)) if fill is not None else {t: 1.0 for t in tensors}
    amax.update(got.amax)
    report = {"kind": "tensorrt calibration cache", "path": str(cache_path), "header": cache.header, "trt_version": cache.version_text,
              "algorithm": cache.algorithm, "entries": len(cache.scales), "imported": len(got.amax),
              "not_in_model": list(got.not_in_model), "unusable": got.unusable, "zero_scale": list(got.zero),
              "from_cache": sorted(got.amax), "calibrated_from_data": fill is not None}
    return Ranges(ranges_from_amax(amax), report)


def _check_cache_coverage(q_model, report: dict) -> None:
    """Every activation Q/DQ must take its scale from the cache, unless data was given to fill the gaps."""
    inits = {i.name for i in q_model.graph.initializer}
    quantized = sorted({n.input[0] for n in q_model.graph.node if n.op_type == "QuantizeLinear"
                        and n.input[0] not in inits})
    have = set(report["from_cache"])
    missing = [t for t in quantized if t not in have]
    report["quantized_tensors"] = len(quantized)
    report["missing"] = missing
    if missing and not report["calibrated_from_data"]:
        shown = ", ".join(missing[:4]) + (f" (+{len(missing) - 4} more)" if len(missing) > 4 else "")
        raise CalibrationError(f"the calibration cache has no scale for {len(missing)} of the {len(quantized)} "
                               f"tensors to quantize ({shown}); add --calib-data to calibrate those from data")


def _run_quantize_static(pre_path: Path, out_path: Path, place: qplace.Placement, ranges: Ranges, work: Path,
                         config: QuantConfig) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    spec = config.spec
    if place.nodes_to_quantize is not None and not place.nodes_to_quantize:
        # onnxruntime reads an empty node list as "every node"
        raise QuantizationError("the placement rules leave no node to quantize (no Conv, no Gemm/MatMul that is not "
                                "matrix-vector, no residual Add): the model would gain nothing from INT8")
    extra = spec.ort_options()
    excluded = place.outputs_excluded()
    if excluded is not None:
        extra["OpTypesToExcludeOutputQuantization"] = excluded
    cache = work / "ranges.json"
    save_tensors_data(ranges.data, cache)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # onnxruntime prints calibration progress
            quantize_static(
                str(pre_path), str(out_path), None, calibration_cache_path=str(cache),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(place.op_types) if place.op_types is not None else None,
                per_channel=config.per_channel,
                reduce_range=False,
                activation_type=getattr(QuantType, spec.activation_type),
                weight_type=QuantType.QInt8,
                nodes_to_quantize=list(place.nodes_to_quantize) if place.nodes_to_quantize is not None else None,
                nodes_to_exclude=list(place.nodes_to_exclude),
                calibrate_method=ranges.data.calibration_method,
                extra_options=extra,
            )
    except (CalibrationError, UsageError):
        raise
    except Exception as e:
        first = first_line(e)
        raise QuantizationError(f"onnxruntime quantize_static failed: {first}") from None


@dataclass
class Built:
    """The checked INT8 graph and what went into it (for the sidecar)."""

    model: Any
    input: Any  # GraphInput
    batch: int | None
    se_blocks: int
    placement: qplace.Placement
    restored: int
    ranges: Ranges
    fp16_scales: dict | None
    findings: list
    facts: dict


def _build(onnx_in: Path, work: Path, calib: CalibrationSet | None, config: QuantConfig,
           trt_cache: str | Path | None, warnings: list[str]) -> Built:
    """Steps 1-8 of the module docstring: the Q/DQ graph, placed, typed and linted; not yet written."""
    spec, high = config.spec, config.resolved_high_precision
    # a cache names the tensors of the very file TensorRT parsed: onnxruntime's pre-processing fusions
    # could rename some, so an import quantizes the file as it is
    pre_path, pre_model = prepare_model(onnx_in, work, run_pre_process=config.preprocess_model and trt_cache is None,
                                         warnings=warnings)
    if high == HighPrecision.fp16:
        pre_model = raise_opset(pre_model, FP16_QDQ_OPSET)
        name_nodes(pre_model)  # the version converter adds unnamed Constant nodes
        save_onnx(pre_model, pre_path)
    inp = model_input(pre_model)
    batch = None
    if calib is not None:
        if calib.input_name != inp.name:
            raise CalibrationError(f"calibration data is keyed {calib.input_name!r} but the model input is "
                                   f"{inp.name!r}")
        batch = calibration_batch(inp.dims, config.batch_size, len(calib))
        if len(calib) < batch:
            raise CalibrationError(f"only {len(calib)} calibration samples, fewer than the model's batch {batch}")

    irm, matches = _se_matches(pre_model)
    excluded = {n: f"user:{p}" for p, ns in resolve_excludes(pre_model, config.exclude).items() for n in ns}
    place = qplace.place(irm, matches, spec.name, config.resolved_se_mode, excluded)

    ranges = ranges_from_data(pre_path, calib, config, inp.name, batch) if calib is not None else None
    if trt_cache is not None:
        ranges = ranges_from_cache(trt_cache, pre_model, ranges)

    out_tmp = work / "int8.onnx"
    _run_quantize_static(pre_path, out_tmp, place, ranges, work, config)
    q_model = load_onnx(out_tmp, check=False)
    if trt_cache is not None:
        _check_cache_coverage(q_model, ranges.source)
    restored = qplace.restore_float_inputs(q_model, place.float_edges)
    fp16_report = None
    if high == HighPrecision.fp16:
        q_model, fp16_report = qdq_to_high_precision(q_model)
        if fp16_report["moved_beyond_fp16_rounding"]:
            warnings.append(f"{fp16_report['moved_beyond_fp16_rounding']} of {fp16_report['scales']} Q/DQ scales "
                            "lie below FP16's normal range and moved when written in FP16 (tensors that barely "
                            "vary); the accuracy check covers them")
    qplace.drop_unused_opsets(q_model)
    findings = qdq_lint.lint(q_model) if spec.name == QuantTarget.tensorrt else []
    if findings:  # what the user's own choices (--exclude, --se-mode float, fp32) leave unfused
        warnings.append(f"{len(findings)} Q/DQ placement finding(s) TensorRT will not fuse ("
                        + ", ".join(f"{k} {v}" for k, v in qdq_lint.summary(findings).items())
                        + "); the sidecar's 'lint' lists them")
    facts = qdq_facts(q_model)
    _check_structure(facts, findings, spec)
    return Built(q_model, inp, batch, len(matches), place, restored, ranges, fp16_report, findings, facts)


# --------------------------------------------------------------------------- main entry


def quantize_int8(onnx_in: str | Path, onnx_out: str | Path, calib: CalibrationSet | None, config: QuantConfig, *,
                  eval_set: CalibrationSet | None = None, trt_cache: str | Path | None = None,
                  keep_rejected: bool = False) -> dict:
    """Write an INT8 Q/DQ model to ``onnx_out`` (+ ``onnx_out.json``) and return the sidecar dict.

    Ranges come from ``calib`` or, with ``trt_cache``, from a TensorRT calibration cache (``calib``
    then only fills tensors the cache lacks; without it such tensors are refused). With
    ``eval_set`` (held-out samples, ideally labelled), the sidecar records FP32 vs INT8 agreement
    and accuracy. Nothing is written under ``onnx_out`` unless every check passed (structure, the
    onnxruntime run, ``config.max_drop``); over the budget QuantizationError is raised, and with
    ``keep_rejected`` the model goes to ``*.rejected.onnx`` (sidecar ``"status": "rejected"``) instead.
    """
    onnx_in, onnx_out = Path(onnx_in), Path(onnx_out)
    check_output_path(onnx_out)
    inputs = {"the input model": onnx_in, "the TensorRT calibration cache": trt_cache}
    refuse_clobbering({k: v for k, v in inputs.items() if v is not None}, {"the INT8 output": onnx_out})
    if calib is None and trt_cache is None:
        raise UsageError("INT8 quantization needs calibration data or a TensorRT calibration cache")
    with staged_artifact(onnx_out) as staged:
        return _quantize_staged(onnx_in, staged, calib, config, eval_set=eval_set, trt_cache=trt_cache,
                                keep_rejected=keep_rejected)


def _quantize_staged(onnx_in: Path, staged, calib: CalibrationSet | None, config: QuantConfig, *,
                     eval_set: CalibrationSet | None, trt_cache: str | Path | None, keep_rejected: bool) -> dict:
    onnx_out = staged.final
    spec, se_mode, high = config.spec, config.resolved_se_mode, config.resolved_high_precision
    t0 = time.perf_counter()
    warnings: list[str] = list(calib.warnings) if calib is not None else []
    if calib is not None and trt_cache is None and len(calib) < MIN_INT8_SAMPLES:
        warnings.append(f"only {len(calib)} calibration samples (< {MIN_INT8_SAMPLES}): INT8 ranges may be "
                        "unrepresentative and accuracy may suffer")
    ort_method(config.method)

    with tempfile.TemporaryDirectory(prefix="se_deploy_q_") as tmp:
        built = _build(onnx_in, Path(tmp), calib, config, trt_cache, warnings)
        save_onnx(built.model, staged.path)  # under onnx_out only once every check below passed

    check_set = _check_set(eval_set, calib, built.input)
    report = evaluate(onnx_in, {"int8": staged.path}, check_set)
    int8 = report["candidates"]["int8"]
    int8["model"] = str(onnx_out)  # where it will be, not the staging name it was checked under
    status = "accepted"
    if config.max_drop is not None and int8.get("top1_drop") is not None and int8["top1_drop"] > config.max_drop:
        status = "rejected"
    elif config.max_drop is not None and int8.get("top1_drop") is None:
        warnings.append("--max-drop needs labelled evaluation data; the accuracy budget was not checked")
    side = {
        "kind": "int8-qdq",
        "status": status,
        "source_model": str(Path(onnx_in).resolve()),
        "source_sha256": sha256_file(onnx_in),
        "target": spec.name,
        "target_form": spec.description,
        "method": config.method,
        "percentile": config.percentile if config.method == CalibMethod.percentile else None,
        "entropy_bins": config.entropy_bins if config.method == CalibMethod.entropy else None,
        "se_mode": str(se_mode),
        "high_precision": str(high),
        "fp16_scales": built.fp16_scales,
        "config": config.to_dict(),
        "calibration": {**calib.describe(), "batch_size": built.batch} if calib is not None else None,
        "ranges": built.ranges.source,
        "se_blocks": built.se_blocks,
        "placement": {**built.placement.to_dict(), "float_inputs_restored": built.restored},
        "excluded_nodes": [{"node": d.node, "reason": d.rule} for d in built.placement.decisions if not d.quantize
                           and d.op_type in qplace.WEIGHTED_OPS + ("Mul", "Add") + qplace.POOL_OPS],
        "structure": built.facts,
        "lint": [f.to_dict() for f in built.findings],
        "accuracy": report,
        "warnings": warnings,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    staged.write_sidecar(side)
    for w in warnings:
        log.warning("%s", w)
    if status == "rejected":
        kept = staged.keep_rejected() if keep_rejected else None
        raise QuantizationError(f"INT8 top-1 accuracy dropped {int8['top1_drop']:.2f} points, over the "
                                f"--max-drop budget of {config.max_drop:g}; nothing written to {onnx_out} "
                                + (f"(the rejected model is kept as {kept})" if kept else
                                   f"(--keep-rejected keeps it as {rejected_path(onnx_out)})"))
    return side


def _check_set(eval_set: CalibrationSet | None, calib: CalibrationSet | None, inp) -> CalibrationSet:
    """Held-out data; else a labelled slice of the calibration data; else deterministic probe inputs."""
    if eval_set is not None:
        return eval_set
    if calib is not None:
        return calib.subset(range(min(len(calib), 64)), "calibration (not held out)")
    dims = [d if isinstance(d, int) and d > 0 else None for d in inp.dims]
    if any(d is None for d in dims[1:]):
        raise UsageError(f"input {inp.name!r} has dynamic C/H/W {tuple(inp.dims)}; give --eval-data to check "
                         "the INT8 model")
    x = np.concatenate([p for _, p in probe_inputs((4, *dims[1:]), seed=0)])
    return CalibrationSet(x, inp.name, "synthetic", {"role": "probe inputs (random normal and constant)"})


def _check_structure(facts: dict, findings: list, spec: TargetSpec) -> None:
    """Refuse a graph that the target cannot use (these would be se-deploy bugs or library drift)."""
    if facts["quantize_linear"] == 0:
        raise QuantizationError("quantization produced no QuantizeLinear nodes (nothing quantizable, or every node "
                                "excluded)")
    if facts["dynamic_quantize_linear"]:
        raise QuantizationError("the INT8 graph has DynamicQuantizeLinear nodes, which static Q/DQ must not contain")
    if spec.name == QuantTarget.tensorrt:
        if facts["zero_point_dtypes"] not in ([], ["int8"]) or facts["nonzero_zero_points"]:
            raise QuantizationError(f"TensorRT needs symmetric int8 (zero point 0); got zero points "
                                    f"{facts['zero_point_dtypes']} with {facts['nonzero_zero_points']} non-zero")
        errors = [f for f in findings if f.rule in qdq_lint.DEFECTS]
        if errors:
            raise QuantizationError(f"the INT8 graph has {len(errors)} Q/DQ defect(s) (an se-deploy bug); first: "
                                    f"{errors[0].line()}")


__all__ = ["FP16_QDQ_OPSET", "QuantConfig", "Ranges", "TARGETS", "TargetSpec", "calibration_batch",
           "check_quantizable", "name_nodes", "prepare_model", "qdq_facts", "quantize_int8", "ranges_from_cache",
           "ranges_from_data", "resolve_excludes"]
