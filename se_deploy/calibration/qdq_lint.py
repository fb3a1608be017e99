"""A Q/DQ linter for any ONNX model, whoever made it: every placement TensorRT will not fuse.

TensorRT builds what a Q/DQ graph says, so a misplaced Q/DQ pair does not fail: it only makes
the engine slower (or, for scales and types, less accurate). This module reads the graph and
lists each such placement with the node and the rule (:class:`~se_deploy.names.QdqRule`):

* ``conv_add_qdq``: a Q/DQ between a Conv and the Add it fuses into (the non-residual input, as
  :func:`se_deploy.calibration.placement.classify_add` finds it); TensorRT's guide quantizes
  only the residual input;
* ``float_residual``: the residual input of such an Add arrives in float;
* ``se_float_map``: an SE squeeze reads a float map or writes a float vector, or an SE scale Mul
  reads a float map or gate: the full-map passes then run in float (the SE tax);
* ``fp32_layer``: a layer computing in float32: a strongly typed build (TensorRT 11, 10 with
  ``--stronglyTyped``) runs it in FP32;
* ``inflated_weight_scale``: a weight channel whose scale exceeds 1.01 x amax/127 (onnxruntime
  enlarges scales to fit an int32 bias unless told not to; such channels lose resolution or
  round to zero);
* ``int32_bias``: an int32 bias DequantizeLinear;
* ``unquantized_input``: a Conv, or a Gemm/MatMul that is not matrix-vector, reading float data
  or float weights (a matrix-vector product, including a Conv on a 1x1 map at batch 1, gains
  nothing from INT8 and is exempt);
* ``float_pool``: a pool whose output feeds an INT8 input, reading a float map;
* ``asymmetric_qdq``: a zero point that is not int8 zero.

The structure is read from a *float view* of the graph: Q->DQ pairs and float Casts bypassed and
constant DequantizeLinear weights folded, so the residual and SE rules see the model as it was
before quantization; each finding is then checked on the real graph. Written here because no
library lints Q/DQ placement for TensorRT.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from se_deploy.calibration import placement as qp
from se_deploy.export.passes._ir import add_initializer, cleanup
from se_deploy.export.se_detect import find_matches, to_ir
from se_deploy.names import QdqRule, QuantTarget
from se_deploy.onnx_io import load_onnx, onnx_precision

FP32_LAYER = QdqRule.fp32_layer
#: findings that are defects of the quantizer, never a consequence of a user's choice
DEFECTS = (QdqRule.conv_add_qdq, QdqRule.inflated_weight_scale, QdqRule.int32_bias, QdqRule.asymmetric_qdq)
SCALE_TOLERANCE = 1.01  # fp16 scales round by up to 0.1%; 1% is a real enlargement
_FLOAT, _FLOAT16, _BFLOAT16, _INT8, _INT32 = 1, 10, 16, 3, 6
_NOT_LAYERS = ("QuantizeLinear", "DequantizeLinear", "Cast", "Constant", "Shape", "Size") + qp.COPY_OPS


@dataclass(frozen=True)
class Finding:
    rule: str
    node: str
    op_type: str
    detail: str

    def line(self) -> str:
        return f"{self.rule}: {self.node} ({self.op_type}): {self.detail}"

    def to_dict(self) -> dict:
        return asdict(self)


class _Real:
    """Producer/consumer facts of the real (quantized) graph, by tensor name."""

    def __init__(self, model) -> None:
        self.model = model
        self.nodes = {n.name: n for n in model.graph.node}
        self.producer = {o: n for n in model.graph.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in model.graph.node:
            for i, t in enumerate(n.input):
                self.consumers.setdefault(t, []).append((n, i))
        self.inits = {i.name: i for i in model.graph.initializer}
        for n in model.graph.node:
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value":
                        self.inits[n.output[0]] = a.t

    def through_dq(self, tensor: str) -> bool:
        """Whether ``tensor`` is (a Cast of) a DequantizeLinear output."""
        p = self.producer.get(tensor)
        while p is not None and p.op_type == "Cast":
            p = self.producer.get(p.input[0])
        return p is not None and p.op_type == "DequantizeLinear"

    def goes_to_q(self, tensor: str) -> bool:
        """Whether ``tensor`` (or a Cast of it) is read by a QuantizeLinear."""
        for n, _ in self.consumers.get(tensor, []):
            if n.op_type == "QuantizeLinear" or (n.op_type == "Cast" and self.goes_to_q(n.output[0])):
                return True
        return False

    def const(self, tensor: str):
        from onnx import numpy_helper

        t = self.inits.get(tensor)
        return None if t is None else numpy_helper.to_array(t)


def float_view(model):
    """onnx-ir model of ``model`` with Q->DQ pairs and float-to-float Casts bypassed and constant DQs folded."""
    import onnx
    import onnx_ir as ir

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    irm = to_ir(copy)
    graph = irm.graph
    floats = (ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.BFLOAT16)
    for node in list(graph):
        if node.domain != "":
            continue
        if node.op_type == "DequantizeLinear":
            src = node.inputs[0].producer() if node.inputs[0] is not None else None
            if src is not None and src.op_type == "QuantizeLinear":
                node.outputs[0].replace_all_uses_with(src.inputs[0], replace_graph_outputs=True)
            elif all(qp.is_const(v) for v in node.inputs) and _fold_dq(graph, node):
                pass
        elif node.op_type == "Cast" and node.inputs[0] is not None:
            to = node.attributes.get("to")
            src_type = node.inputs[0].dtype
            if to is not None and ir.DataType(to.value) in floats and src_type in floats:
                node.outputs[0].replace_all_uses_with(node.inputs[0], replace_graph_outputs=True)
    cleanup(irm)  # the bypassed Q/DQ and Casts would otherwise count as consumers
    return irm


def _fold_dq(graph, node) -> bool:
    """Replace a DequantizeLinear of constants by the float constant it computes."""
    import onnx_ir as ir

    def arr(v):
        if v is None:
            return None
        t = ir.convenience.get_const_tensor(v)
        return None if t is None else np.asarray(t.numpy())

    x, scale = arr(node.inputs[0]), arr(node.inputs[1])
    zp = arr(node.inputs[2]) if len(node.inputs) > 2 else None
    if x is None or scale is None:
        return False
    axis = node.attributes["axis"].value if "axis" in node.attributes else 1
    shape = [1] * x.ndim
    if scale.ndim == 1 and scale.size > 1:
        shape[axis % x.ndim] = scale.size
    s = scale.astype(np.float32).reshape(shape if scale.size > 1 else ())
    z = np.zeros(()) if zp is None else zp.astype(np.float32).reshape(s.shape)
    w = ((x.astype(np.float32) - z) * s).astype(np.float32)
    value = add_initializer(graph, f"{node.outputs[0].name}_folded", w)
    node.outputs[0].replace_all_uses_with(value, replace_graph_outputs=True)
    return True


def _is_matrix_vector_conv(node) -> bool:
    """A Conv whose output map is 1x1 at batch 1 is a matrix-vector product (the SE FCs)."""
    out = node.outputs[0]
    if out.shape is None or len(out.shape) < 3:
        return False
    dims = [d if isinstance(d, int) else 1 for d in out.shape]
    return dims[0] == 1 and all(d == 1 for d in dims[2:])


def lint(model, target: str = QuantTarget.tensorrt) -> list[Finding]:
    """Every finding for ``model`` (an onnx.ModelProto with Q/DQ nodes); [] for a model without Q/DQ."""
    if target != QuantTarget.tensorrt:
        raise ValueError(f"the Q/DQ linter has rules for the tensorrt target only, not {target!r}")
    real = _Real(model)
    if not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        return []
    view = float_view(model)
    out: list[Finding] = []
    out += _residual_adds(view, real)
    out += _se_maps(view, real)
    out += _weighted_inputs(view, real)
    out += _pools(view, real)
    out += _scales_and_types(real)
    out += _fp32_layers(model)
    return out


def _residual_adds(view, real: _Real) -> list[Finding]:
    out = []
    for node in view.graph:
        res = qp.classify_add(node)
        if res is None or res.float_input is None or node.name not in real.nodes:
            continue
        rnode = real.nodes[node.name]
        k = res.float_input
        if real.through_dq(rnode.input[k]):
            out.append(Finding(QdqRule.conv_add_qdq, node.name, "Add", f"input {k} ({rnode.input[k]}) comes from a "
                               f"Conv through Q/DQ, which splits the Conv+Add fusion ({res.reason})"))
        if not real.through_dq(rnode.input[1 - k]):
            out.append(Finding(QdqRule.float_residual, node.name, "Add", f"the residual input {1 - k} "
                               f"({rnode.input[1 - k]}) arrives in float; TensorRT's guide quantizes it"))
    return out


def _se_maps(view, real: _Real) -> list[Finding]:
    out = []
    for m in find_matches(view)[0]:
        scale = real.nodes.get(m.scale.name)
        if scale is None:
            continue
        map_index = 0 if m.scale.inputs[0] is m.x else 1
        for i in (0, 1):
            if not real.through_dq(scale.input[i]):
                role = "map" if i == map_index else "gate"
                out.append(Finding(QdqRule.se_float_map, scale.name, "Mul", f"the SE scale reads a float {role} "
                                   f"({scale.input[i]}); TensorRT fuses the Mul in INT8 only when every input "
                                   "comes through DQ"))
        sq = real.nodes.get(m.squeeze.name) if m.squeeze is not None else None
        if sq is not None:
            if not real.through_dq(sq.input[0]):
                out.append(Finding(QdqRule.se_float_map, sq.name, sq.op_type, f"the SE squeeze reads a float map "
                                   f"({sq.input[0]}): the conv before it writes the whole map in float"))
            elif sq.op_type in qp.POOL_OPS and not real.goes_to_q(sq.output[0]):
                out.append(Finding(QdqRule.se_float_map, sq.name, sq.op_type, "the SE squeeze's output is not "
                                   "quantized, so the pool cannot run between DQ and Q in INT8"))
    return out


def _weighted_inputs(view, real: _Real) -> list[Finding]:
    out = []
    for node in view.graph:
        if node.op_type not in qp.WEIGHTED_OPS or node.domain != "" or node.name not in real.nodes:
            continue
        if node.op_type in ("Gemm", "MatMul") and qp.matrix_vector_reason(node):
            continue
        if node.op_type in qp.CONV_OPS and _is_matrix_vector_conv(node):
            continue
        rnode = real.nodes[node.name]
        for i, what in ((0, "data"), (1, "weights")):
            if i < len(rnode.input) and rnode.input[i] and not real.through_dq(rnode.input[i]):
                out.append(Finding(QdqRule.unquantized_input, node.name, node.op_type,
                                   f"reads float {what} ({rnode.input[i]}); it runs in float"))
    return out


def _pools(view, real: _Real) -> list[Finding]:
    out = []
    se_squeezes = {m.squeeze.name for m in _matches(view) if m.squeeze is not None}
    for node in view.graph:
        if node.op_type not in qp.POOL_OPS or node.name in se_squeezes or node.name not in real.nodes:
            continue
        rnode = real.nodes[node.name]
        feeds_int8 = real.goes_to_q(rnode.output[0]) or any(
            real.goes_to_q(c.outputs[0].name) for c, _ in qp.consumers_through_copies(node.outputs[0])
            if c.op_type in qp.COPY_OPS)
        if feeds_int8 and not real.through_dq(rnode.input[0]):
            out.append(Finding(QdqRule.float_pool, node.name, node.op_type, f"its output is quantized but it reads a "
                               f"float map ({rnode.input[0]}); with a DQ on its input it would run in INT8"))
    return out


def _matches(view):
    return find_matches(view)[0]


def _scales_and_types(real: _Real) -> list[Finding]:
    out = []
    for n in real.model.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zp = real.const(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if zp is not None and (zp.dtype != np.int8 or np.any(zp != 0)):
            out.append(Finding(QdqRule.asymmetric_qdq, n.name, n.op_type, f"zero point {zp.dtype} "
                               f"{'non-zero' if np.any(zp != 0) else 'zero'}: TensorRT takes symmetric int8 only"))
        if n.op_type != "DequantizeLinear":
            continue
        x = real.const(n.input[0])
        src = real.producer.get(n.input[0])
        if x is not None and x.dtype == np.int32:
            out.append(Finding(QdqRule.int32_bias, n.name, n.op_type, "an int32 bias DequantizeLinear: TensorRT "
                               "keeps the bias in float; leave it unquantized"))
            continue
        weights = None
        scale = real.const(n.input[1])
        axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
        if x is not None and x.dtype == np.int8:
            weights = ("int8", x)
        elif src is not None and src.op_type == "QuantizeLinear" and real.const(src.input[0]) is not None:
            weights = ("float", real.const(src.input[0]))
            scale = real.const(src.input[1])
        if weights is None or scale is None:
            continue
        bad = _inflated_channels(weights[0], weights[1], scale, axis)
        if bad:
            worst, ratio, n_bad = bad
            out.append(Finding(QdqRule.inflated_weight_scale, _weight_user(real, n), "weights",
                               f"{n_bad} channel(s) of {n.input[0] if weights[0] == 'int8' else src.input[0]} have "
                               f"scales above {SCALE_TOLERANCE} x amax/127 (worst: channel {worst}, "
                               f"{format(ratio, '.3g') if np.isfinite(ratio) else 'rounded to zero'}"
                               f"{'x' if np.isfinite(ratio) else ''})"))
    return out


def _weight_user(real: _Real, dq) -> str:
    users = real.consumers.get(dq.output[0], [])
    return users[0][0].name if users else dq.name


def _inflated_channels(kind: str, w: np.ndarray, scale: np.ndarray, axis: int):
    """(worst channel, its ratio, number of channels over tolerance) or None.

    For int8 weights amax is max|q| * scale, so the ratio is 127 / max|q|; a channel of zeros with a
    scale other than 1.0 (what onnxruntime gives an all-zero channel) was rounded away: ratio inf."""
    scale = scale.astype(np.float64)
    if w.ndim == 0:
        return None
    per_channel = scale.ndim == 1 and scale.size > 1
    ax = axis % w.ndim
    if per_channel:
        red = tuple(i for i in range(w.ndim) if i != ax)
        amax_w = np.max(np.abs(w.astype(np.float64)), axis=red)
        s = scale
    else:
        amax_w = np.array([np.max(np.abs(w.astype(np.float64)))])
        s = scale.reshape(-1)[:1]
    if kind == "int8":
        with np.errstate(divide="ignore"):
            ratio = np.where(amax_w > 0, 127.0 / np.maximum(amax_w, 1e-30), np.where(s != 1.0, np.inf, 1.0))
    else:
        ratio = np.where(amax_w > 0, s * 127.0 / np.maximum(amax_w, 1e-30), 1.0)
    over = ratio > SCALE_TOLERANCE
    if not np.any(over):
        return None
    worst = int(np.argmax(ratio))
    return worst, float(ratio[worst]), int(np.sum(over))


def _fp32_layers(model) -> list[Finding]:
    """Layers whose outputs are float32 (types from shape inference)."""
    import onnx

    try:
        typed = onnx.shape_inference.infer_shapes(model)
    except Exception:
        typed = model
    types = {v.name: v.type.tensor_type.elem_type for v in
             list(typed.graph.value_info) + list(typed.graph.output) + list(typed.graph.input)}
    out = []
    for n in typed.graph.node:
        if n.op_type in _NOT_LAYERS or n.domain not in ("", "ai.onnx"):
            continue
        if any(types.get(o) == _FLOAT for o in n.output):
            out.append(Finding(QdqRule.fp32_layer, n.name, n.op_type, "computes in float32: a strongly typed "
                               "TensorRT build runs it in FP32 (write the unquantized layers in FP16)"))
    return out


def int8_inputs(model) -> dict[tuple[str, int], dict]:
    """Every input of every layer (not Q/DQ, Cast or Constant): ``(node, index) -> {"op", "source", "kind",
    "int8"}``, ``source`` being the float tensor behind any Q/DQ and Casts, ``kind`` "weight" for constants.
    Two tools' outputs of one model compare edge by edge on these keys (both keep node names)."""
    real = _Real(model)

    def source(t: str) -> tuple[str, bool]:
        p = real.producer.get(t)
        while p is not None and p.op_type in ("Cast", "DequantizeLinear", "QuantizeLinear"):
            t = p.input[0]
            p = real.producer.get(t)
        return t, t in real.inits

    out = {}
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear", "Cast", "Constant"):
            continue
        for i, t in enumerate(n.input):
            if not t:
                continue
            src, const = source(t)
            if const and n.op_type not in qp.WEIGHTED_OPS:
                continue  # shapes, axes, biases of element-wise ops
            if const and i > 1:
                continue  # biases stay float in every form
            out[(n.name, i)] = {"op": n.op_type, "source": src, "kind": "weight" if const else "data",
                                "int8": real.through_dq(t)}
    return out


def summary(findings: list[Finding]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in findings:
        counts[str(f.rule)] = counts.get(str(f.rule), 0) + 1
    return dict(sorted(counts.items()))


def lint_file(path) -> dict:
    """Lint an ONNX file: ``{"path", "qdq_nodes", "findings": [...], "summary": {rule: count}}``."""
    model = load_onnx(path, check=False)
    findings = lint(model)
    return {"path": str(path), "qdq_nodes": onnx_precision(model).qdq_nodes,
            "findings": [f.to_dict() for f in findings], "summary": summary(findings)}


__all__ = ["DEFECTS", "FP32_LAYER", "Finding", "SCALE_TOLERANCE", "float_view", "int8_inputs", "lint", "lint_file",
           "summary"]
