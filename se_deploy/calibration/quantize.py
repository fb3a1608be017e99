"""INT8 Q/DQ models with onnxruntime.quantization, in the form each backend runs fastest.

Two targets, one pipeline (``quant_pre_process`` -> SE detection -> ``quantize_static`` in QDQ
format -> structure check -> numerics against FP32 -> sidecar):

* ``tensorrt``: symmetric signed INT8 activations and weights (zero point 0), per-channel
  weights, float bias, Q/DQ on the *inputs* of Conv/Gemm/MatMul/Add/pooling only (the
  placement TensorRT fuses, including both inputs of a residual Add). TensorRT 10 and 11
  build this graph as explicit INT8.
* ``cpu``: QUInt8 activations and QInt8 per-channel weights, the combination onnxruntime's
  x86 kernels run fastest (signed activations ran slower than FP32 on our CPU).

SE-aware precision (the default) keeps the excitation (FC, activation, FC, gate) of every
detected SE block in float; ``se_aware=False`` quantizes it too. The squeeze follows the
target: float for ``tensorrt``, INT8 for ``cpu``, where onnxruntime averages the INT8 map
directly and a float squeeze would first dequantize the whole map (measured in
benchmarks/precision.py).
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

from se_deploy._util import check_output_path, sha256_file, write_sidecar
from se_deploy.calibration.accuracy import evaluate
from se_deploy.calibration.dataset import MIN_INT8_SAMPLES, CalibrationSet
from se_deploy.calibration.ranges import collect_ranges, ort_method
from se_deploy.config import BadValue, Config
from se_deploy.errors import CalibrationError, QuantizationError, UsageError, first_line
from se_deploy.export.se_detect import find_se_blocks
from se_deploy.names import CalibMethod, QuantTarget
from se_deploy.onnx_io import load_onnx, model_input, save_onnx

log = logging.getLogger("se_deploy.calibration")

SQUEEZE_OPS = ("GlobalAveragePool",)  # squeezes onnxruntime quantizes; ReduceMean stays float regardless


@dataclass(frozen=True)
class TargetSpec:
    """How one backend wants its Q/DQ graph."""
    name: str
    activation_type: str  # onnxruntime QuantType member name
    activation_symmetric: bool
    quantize_bias: bool
    op_types: tuple[str, ...] | None  # None: every op onnxruntime can quantize
    inputs_only: bool  # Q/DQ only on op inputs (no output Q/DQ)
    quantize_se_scale: bool  # the SE scale Mul, when SE-aware
    quantize_se_squeeze: bool  # the SE squeeze (global average pool), when SE-aware
    description: str


TARGETS: dict[QuantTarget, TargetSpec] = {  # one per QuantTarget (a test checks)
    QuantTarget.tensorrt: TargetSpec(
        name="tensorrt", activation_type="QInt8", activation_symmetric=True, quantize_bias=False,
        op_types=("Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "MaxPool", "AveragePool", "GlobalAveragePool",
                  "Concat"),
        inputs_only=True, quantize_se_scale=False, quantize_se_squeeze=False,
        description="symmetric s8 activations and weights, per-channel weights, float bias, Q/DQ on op inputs"),
    QuantTarget.cpu: TargetSpec(
        name="cpu", activation_type="QUInt8", activation_symmetric=False, quantize_bias=True, op_types=None,
        inputs_only=False, quantize_se_scale=True, quantize_se_squeeze=True,
        description="u8 activations, s8 per-channel weights (onnxruntime x86 fast path)"),
}


class QuantConfig(Config):
    """What INT8 model to build.

    ``exclude``: node names or op types kept in float (the user's sensitive layers).
    ``quantize_se_scale``: None follows the target's default for the SE scale Mul.
    ``max_drop``: top-1 accuracy budget in points; exceeding it marks the model rejected.
    ``batch_size``: calibration batch when the model's batch dimension is dynamic.
    """

    target: QuantTarget = QuantTarget.tensorrt
    method: CalibMethod = CalibMethod.minmax
    percentile: float = Field(99.999, ge=90.0, lt=100.0)
    se_aware: bool = True
    quantize_se_scale: bool | None = None
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
        return self

    @property
    def spec(self) -> TargetSpec:
        return TARGETS[self.target]


# --------------------------------------------------------------------------- helpers


def name_nodes(model) -> int:
    """Give every unnamed node a unique name in place (exclusion lists need names); return the count."""
    used = {n.name for n in model.graph.node if n.name}
    named = 0
    for i, node in enumerate(model.graph.node):
        if node.name:
            continue
        base = f"{node.op_type}_{i}"
        name, k = base, 0
        while name in used:
            k += 1
            name = f"{base}_{k}"
        node.name = name
        used.add(name)
        named += 1
    return named


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


def qdq_facts(model, excitation_nodes: tuple[str, ...] = ()) -> dict[str, Any]:
    """Structure of a Q/DQ graph: counts, zero-point types, float bias, which nodes read DQ inputs."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    consts = {}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.attribute:
            consts[n.output[0]] = n.attribute[0].t
    producer = {o: n for n in model.graph.node for o in n.output}

    def const(name: str):
        t = inits.get(name) if name in inits else consts.get(name)
        return None if t is None else numpy_helper.to_array(t)

    counts: dict[str, int] = {}
    for n in model.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    zp_types: set[str] = set()
    nonzero_zp = 0
    int32_dq = 0
    for n in model.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if len(n.input) > 2 and n.input[2]:
            zp = const(n.input[2])
            if zp is not None:
                zp_types.add(str(zp.dtype))
                nonzero_zp += int(np.any(zp != 0))
        if n.op_type == "DequantizeLinear":
            x = const(n.input[0])
            if x is not None and x.dtype == np.int32:
                int32_dq += 1
    def dq_of_const(name: str) -> bool:
        p = producer.get(name)
        return p is not None and p.op_type == "DequantizeLinear" and (p.input[0] in inits or p.input[0] in consts)

    def source_through_qdq(name: str):
        """The node whose output reaches ``name`` through a Q -> DQ pair, else None."""
        dq = producer.get(name)
        if dq is None or dq.op_type != "DequantizeLinear":
            return None
        q = producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            return None
        return producer.get(q.input[0])

    # The excitation path is INT8 when any of its weights is quantized or a tensor passed
    # between two of its nodes goes through Q/DQ. Its input (the block's feature map, shared
    # with the scale) and its output (the gate, consumed by the scale) belong to the scale.
    excitation = set(excitation_nodes)
    quantized_excitation: set[str] = set()
    dq_fed: list[str] = []
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if any(i in producer and producer[i].op_type == "DequantizeLinear" for i in n.input):
            dq_fed.append(n.name)
        if n.name in excitation:
            for i in n.input:
                src = source_through_qdq(i)
                if dq_of_const(i) or (src is not None and src.name in excitation):
                    quantized_excitation.add(n.name)
    add_inputs = []
    for n in model.graph.node:
        if n.op_type == "Add":
            acts = [i for i in n.input if i not in inits and i not in consts]
            add_inputs.append(sum(1 for i in acts if i in producer and producer[i].op_type == "DequantizeLinear")
                              == len(acts))
    return {
        "quantize_linear": counts.get("QuantizeLinear", 0),
        "dequantize_linear": counts.get("DequantizeLinear", 0),
        "dynamic_quantize_linear": counts.get("DynamicQuantizeLinear", 0),
        "zero_point_dtypes": sorted(zp_types),
        "nonzero_zero_points": nonzero_zp,
        "int32_bias_dequantize": int32_dq,
        "nodes_with_quantized_inputs": len(dq_fed),
        "adds_fully_quantized": int(sum(add_inputs)),
        "adds": len(add_inputs),
        "quantized_excitation_nodes": sorted(quantized_excitation),
        "op_counts": dict(sorted(counts.items())),
    }


def calibration_batch(input_shape: tuple, requested: int, n_samples: int) -> int:
    """The batch the calibrator feeds: the model's static batch, else the requested one capped by the data."""
    b = input_shape[0] if input_shape else None
    if isinstance(b, int) and b > 0:
        return b
    return max(1, min(requested, n_samples))


def _se_blocks(model) -> list:
    try:
        return list(find_se_blocks(model))
    except Exception as e:  # detection is a help for precision choices; its failure must not block INT8
        log.warning("SE detection failed (%s: %s); quantizing without SE-aware exclusions", type(e).__name__, e)
        return []


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
    with contextlib.chdir(work_dir):
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
    load_onnx(onnx_in)  # one-line errors for missing/corrupt files before onnxruntime sees them
    pre = work_dir / "pre.onnx"
    if run_pre_process:
        _pre_process(Path(onnx_in), pre, work_dir, warnings)
        model = load_onnx(pre, check=False)
    else:
        model = load_onnx(onnx_in, check=False)
    name_nodes(model)
    save_onnx(model, pre)
    return pre, model


# --------------------------------------------------------------------------- main entry


def quantize_int8(onnx_in: str | Path, onnx_out: str | Path, calib: CalibrationSet, config: QuantConfig, *,
                  eval_set: CalibrationSet | None = None) -> dict:
    """Write an INT8 Q/DQ model to ``onnx_out`` (+ ``onnx_out.json``) and return the sidecar dict.

    With ``eval_set`` (held-out samples, ideally labelled), the sidecar records FP32 vs INT8
    agreement and accuracy; when ``config.max_drop`` is exceeded the model is still written,
    marked ``"status": "rejected"``, and QuantizationError is raised.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    onnx_in, onnx_out = Path(onnx_in), Path(onnx_out)
    check_output_path(onnx_out)
    if onnx_out.resolve() == onnx_in.resolve():
        raise UsageError("the INT8 output would overwrite the input model; choose another -o")
    spec = config.spec
    t0 = time.perf_counter()
    warnings: list[str] = list(calib.warnings)
    if len(calib) < MIN_INT8_SAMPLES:
        warnings.append(f"only {len(calib)} calibration samples (< {MIN_INT8_SAMPLES}): INT8 ranges may be "
                        "unrepresentative and accuracy may suffer")
    method = ort_method(config.method)

    with tempfile.TemporaryDirectory(prefix="se_deploy_q_") as tmp:
        work = Path(tmp)
        pre_path, pre_model = prepare_model(onnx_in, work, run_pre_process=config.preprocess_model,
                                             warnings=warnings)
        inp = model_input(pre_model)
        input_name, input_shape = inp.name, inp.dims
        if calib.input_name != input_name:
            raise CalibrationError(f"calibration data is keyed {calib.input_name!r} but the model input is "
                                   f"{input_name!r}")
        batch = calibration_batch(input_shape, config.batch_size, len(calib))
        if len(calib) < batch:
            raise CalibrationError(f"only {len(calib)} calibration samples, fewer than the model's batch {batch}")

        blocks = _se_blocks(pre_model)
        excitation = tuple(n for b in blocks for n in b.excitation_nodes if n)
        if spec.quantize_se_squeeze:
            # onnxruntime's CPU kernels average an INT8 map directly (QLinearGlobalAveragePool); a float
            # squeeze would first dequantize the whole feature map, which measured slower than the
            # SE-free twin by a wide margin. The FCs and the gate, the sensitive part, stay float.
            op_of = {n.name: n.op_type for n in pre_model.graph.node}
            excitation = tuple(n for n in excitation if op_of.get(n) not in SQUEEZE_OPS)
        scale_nodes = tuple(b.scale_node for b in blocks if b.scale_node)
        quantize_scale = spec.quantize_se_scale if config.quantize_se_scale is None else config.quantize_se_scale
        excluded: dict[str, str] = {}
        if config.se_aware:
            for n in excitation:
                excluded[n] = "se-excitation"
            if not quantize_scale:
                for n in scale_nodes:
                    excluded[n] = "se-scale"
        for pattern, nodes in resolve_excludes(pre_model, config.exclude).items():
            for n in nodes:
                excluded[n] = f"user:{pattern}"

        extra = {
            "ActivationSymmetric": spec.activation_symmetric,
            "WeightSymmetric": True,
            "QuantizeBias": spec.quantize_bias,
        }
        op_types = list(spec.op_types) if spec.op_types is not None else None
        if op_types is not None and not config.se_aware and "Mul" not in op_types and scale_nodes:
            op_types.append("Mul")  # quantize-all also quantizes the SE scale on the TensorRT form
        if op_types is not None and config.se_aware and quantize_scale and scale_nodes and "Mul" not in op_types:
            op_types.append("Mul")
        if spec.inputs_only:
            extra["OpTypesToExcludeOutputQuantization"] = list(op_types or [])
        if op_types is not None and "Mul" in op_types:
            # only SE scale Muls are meant here; other Muls (SiLU, hard-swish) stay float
            for n in pre_model.graph.node:
                if n.op_type == "Mul" and n.name not in scale_nodes:
                    excluded.setdefault(n.name, "non-se-mul")

        out_tmp = work / "int8.onnx"
        ranges = collect_ranges(pre_path, calib, input_name=input_name, batch_size=batch, method=config.method,
                                percentile=config.percentile, symmetric=spec.activation_symmetric)
        save_tensors_data(ranges, work / "ranges.json")
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # onnxruntime prints calibration progress
                quantize_static(
                    str(pre_path), str(out_tmp), None, calibration_cache_path=str(work / "ranges.json"),
                    quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=op_types,
                    per_channel=config.per_channel,
                    reduce_range=False,
                    activation_type=getattr(QuantType, spec.activation_type),
                    weight_type=QuantType.QInt8,
                    nodes_to_exclude=sorted(excluded),
                    calibrate_method=method,
                    extra_options=extra,
                )
        except (CalibrationError, UsageError):
            raise
        except Exception as e:
            first = first_line(e)
            raise QuantizationError(f"onnxruntime quantize_static failed: {first}") from None
        q_model = load_onnx(out_tmp, check=False)
        facts = qdq_facts(q_model, excitation)
        _check_structure(facts, spec, config)
        save_onnx(q_model, onnx_out)

    # numerics: FP32 vs INT8 on held-out data (or, lacking it, a labelled slice of the calibration data)
    check_set = eval_set if eval_set is not None else calib.subset(range(min(len(calib), 64)), "calibration (not held out)")
    report = evaluate(onnx_in, {"int8": onnx_out}, check_set)
    int8 = report["candidates"]["int8"]
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
        "config": config.to_dict(),
        "calibration": {**calib.describe(), "batch_size": batch},
        "se_blocks": len(blocks),
        "se_aware": config.se_aware,
        "quantize_se_scale": bool(quantize_scale),
        "quantize_se_squeeze": bool(spec.quantize_se_squeeze and config.se_aware),
        "excluded_nodes": [{"node": n, "reason": r} for n, r in sorted(excluded.items()) if r != "non-se-mul"],
        "structure": facts,
        "accuracy": report,
        "warnings": warnings,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    write_sidecar(onnx_out, side)
    for w in warnings:
        log.warning("%s", w)
    if status == "rejected":
        raise QuantizationError(f"INT8 top-1 accuracy dropped {int8['top1_drop']:.2f} points, over the "
                                f"--max-drop budget of {config.max_drop:g}; {onnx_out} is kept and marked rejected "
                                "in its sidecar")
    return side


def _check_structure(facts: dict, spec: TargetSpec, config: QuantConfig) -> None:
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
        if facts["int32_bias_dequantize"]:
            raise QuantizationError("TensorRT rejects int32 bias DequantizeLinear; the bias must stay float")
    if config.se_aware and facts["quantized_excitation_nodes"]:
        raise QuantizationError(f"SE excitation nodes were quantized despite SE-aware precision: "
                                f"{facts['quantized_excitation_nodes'][:3]}")


__all__ = ["QuantConfig", "TargetSpec", "TARGETS", "quantize_int8", "qdq_facts", "name_nodes",
           "resolve_excludes", "prepare_model", "calibration_batch"]
