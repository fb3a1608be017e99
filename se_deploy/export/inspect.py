"""What is in an ONNX model: I/O, opset, op histogram, parameters, MACs/FLOPs and SE blocks.

FLOP convention (stated in every report): 1 MAC = 2 FLOPs. Conv, ConvTranspose, Gemm and
MatMul are counted as MACs (bias adds ignored). Element-wise, pooling and reduction ops
are counted separately as ``other_ops`` (one op per output element, or per input element
for reductions/pools). Counts are for batch 1; a symbolic batch dimension is set to 1. A
dynamic H or W is never guessed: give the input shape, or the counts are reported as unknown.

SE nodes are identified by their output tensors, never by node names (which may be empty
or duplicated).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from se_deploy.errors import UsageError
from se_deploy.export.normalize import node_label
from se_deploy.export.se_detect import find_se_blocks

FLOP_CONVENTION = ("1 MAC = 2 FLOPs; Conv/Gemm/MatMul counted as MACs without bias; element-wise, "
                   "pooling and reductions counted separately as other_ops; batch 1")

_ELEMENTWISE = {"Relu", "Sigmoid", "HardSigmoid", "HardSwish", "Clip", "Add", "Mul", "Sub", "Div", "Tanh",
                "LeakyRelu", "PRelu", "Exp", "Sqrt", "Pow", "Max", "Min", "BatchNormalization", "Erf", "Softmax",
                "Neg", "Abs", "Swish", "Mish", "Elu", "Selu", "Gelu"}
_INPUT_COUNTED = {"GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceSum", "ReduceMax", "AveragePool",
                  "MaxPool"}


def _dims(vi) -> list:
    t = vi.type.tensor_type
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]


def _dtype(vi) -> str:
    import onnx

    try:
        return str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)))
    except Exception:
        return "unknown"


def input_output_specs(model) -> dict[str, list[dict]]:
    inits = {i.name for i in model.graph.initializer}
    return {
        "inputs": [{"name": i.name, "shape": _dims(i), "dtype": _dtype(i)} for i in model.graph.input if i.name not in inits],
        "outputs": [{"name": o.name, "shape": _dims(o), "dtype": _dtype(o)} for o in model.graph.output],
    }


class ShapeUnknown(Exception):
    """MACs cannot be counted: a dimension they depend on is not static."""


def _static_shapes(model, input_shapes: Mapping[str, Sequence[int]] | None = None) -> dict[str, list[int]]:
    """Infer every tensor's shape at batch 1 (a symbolic batch set to 1), ``input_shapes`` filling dynamic dims.

    Raises ShapeUnknown when an input keeps a dynamic non-batch dimension: counting it as 1
    would print a number computed for a 1x1 map.
    """
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    given = dict(input_shapes or {})
    inits = {i.name for i in m.graph.initializer}
    for vi in m.graph.input:
        if vi.name in inits:
            continue
        dims = vi.type.tensor_type.shape.dim
        want = given.get(vi.name)
        if want is not None:
            if len(want) != len(dims):
                raise UsageError(f"--input-shape {'x'.join(map(str, want))} has {len(want)} dims; input {vi.name!r} "
                                 f"has {len(dims)}")
            for i, (d, w) in enumerate(zip(dims, want)):
                if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != int(w) and i > 0:
                    raise UsageError(f"--input-shape {'x'.join(map(str, want))} disagrees with input {vi.name!r}: "
                                     f"dim {i} is {d.dim_value}")
        for i, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value > 0:
                continue
            if i == 0:
                value = 1  # counts are per batch of 1
            elif want is not None:
                value = int(want[i])
            else:
                shown = "x".join(str(x.dim_value) if x.HasField("dim_value") else (x.dim_param or "?") for x in dims)
                raise ShapeUnknown(f"input {vi.name!r} has dynamic dims {shown}: MACs/FLOPs need static spatial "
                                   "dims; give --input-shape NxCxHxW")
            d.Clear()
            d.dim_value = value
    del m.graph.value_info[:]
    for o in m.graph.output:  # let inference recompute output shapes from the inputs (a symbolic H is not 1)
        if any(not d.HasField("dim_value") for d in o.type.tensor_type.shape.dim):
            o.type.tensor_type.ClearField("shape")
    try:
        m = onnx.shape_inference.infer_shapes(m, data_prop=True)
    except Exception:
        pass
    shapes: dict[str, list[int]] = {}
    for vi in list(m.graph.input) + list(m.graph.value_info) + list(m.graph.output):
        dims = _dims(vi)
        if dims and all(isinstance(d, int) and d > 0 for d in dims):
            shapes[vi.name] = dims
    for init in m.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


@dataclass(frozen=True)
class NodeCost:
    """One node's work at batch 1. ``sized`` is False for a MAC-bearing node whose shapes are unknown."""

    index: int
    label: str
    output: str
    macs: int
    other_ops: int
    sized: bool = True


def node_costs(model, input_shapes: Mapping[str, Sequence[int]] | None = None) -> list[NodeCost]:
    """Per node: MACs and other ops at batch 1, in graph order. Raises ShapeUnknown for dynamic H/W."""
    shapes = _static_shapes(model, input_shapes)
    costs: list[NodeCost] = []
    for i, node in enumerate(model.graph.node):
        macs = other = 0
        sized = True
        out = shapes.get(node.output[0]) if node.output else None
        if node.op_type in ("Conv", "ConvTranspose"):
            if out and len(node.input) > 1 and node.input[1] in shapes:
                w = shapes[node.input[1]]  # [Cout, Cin/groups, kh, kw]
                macs = int(np.prod(out)) * int(np.prod(w[1:]))
            else:
                sized = False
        elif node.op_type == "Gemm":
            if out and node.input[0] in shapes:
                a = shapes[node.input[0]]
                trans_a = any(at.name == "transA" and at.i for at in node.attribute)
                macs = int(np.prod(out)) * int(a[0] if trans_a else a[-1])
            else:
                sized = False
        elif node.op_type == "MatMul":
            if out and node.input[0] in shapes:
                macs = int(np.prod(out)) * int(shapes[node.input[0]][-1])
            else:
                sized = False
        elif node.op_type in _INPUT_COUNTED and node.input[0] in shapes:
            other = int(np.prod(shapes[node.input[0]]))
        elif node.op_type in _ELEMENTWISE and out:
            other = int(np.prod(out))
        costs.append(NodeCost(i, node_label(node, i), node.output[0] if node.output else "", macs, other, sized))
    return costs


def count_params(model) -> int:
    import onnx

    n = 0
    for init in model.graph.initializer:
        if init.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32) and len(init.dims) <= 1:
            continue  # shape constants, not weights
        n += int(np.prod(init.dims)) if init.dims else 1
    return n


def _se_params(model, se_nodes: set[int]) -> int:
    """Parameters the SE nodes read (each initializer once, shape constants excluded as in count_params)."""
    import onnx

    inits = {i.name: i for i in model.graph.initializer}
    seen: set[str] = set()
    n = 0
    for i in se_nodes:
        for name in model.graph.node[i].input:
            init = inits.get(name)
            if init is None or name in seen:
                continue
            seen.add(name)
            if init.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32) and len(init.dims) <= 1:
                continue
            n += int(np.prod(init.dims)) if init.dims else 1
    return n


def inspect_model(model, *, input_shapes: Mapping[str, Sequence[int]] | None = None) -> dict[str, Any]:
    """Everything `se-deploy inspect` shows, as a JSON-ready dict. ``model`` is not modified.

    ``input_shapes`` (input name -> dims) fills dynamic dims for the MAC count. Without it, a
    model with dynamic H/W gets ``macs``/``flops``/``other_ops`` of None and ``macs_note`` says why.
    """
    io_specs = input_output_specs(model)
    blocks = find_se_blocks(model)
    # SE nodes by their output tensor: node names may be empty or duplicated
    se_outputs = {o for b in blocks for o in b.node_outputs if o}
    se_nodes = {i for i, node in enumerate(model.graph.node) if node.output and node.output[0] in se_outputs}
    note = None
    try:
        costs = node_costs(model, input_shapes)
    except ShapeUnknown as e:
        costs, note = None, str(e)
    if costs is not None and not all(c.sized for c in costs):
        unsized = [c.label for c in costs if not c.sized]
        costs, note = None, (f"shape inference could not size {len(unsized)} Conv/Gemm/MatMul node(s) "
                             f"(first: {unsized[0]}); MACs/FLOPs are unknown")
    if costs is not None:
        macs = sum(c.macs for c in costs)
        other = sum(c.other_ops for c in costs)
        se_macs = sum(c.macs for c in costs if c.index in se_nodes)
        se_other = sum(c.other_ops for c in costs if c.index in se_nodes)
    else:
        macs = other = se_macs = se_other = None
    se_params = _se_params(model, se_nodes)
    params = count_params(model)
    opsets = {(o.domain or "ai.onnx"): o.version for o in model.opset_import}
    return {
        **io_specs,
        "opset": opsets.get("ai.onnx"),
        "opset_imports": opsets,
        "ir_version": model.ir_version,
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "nodes": len(model.graph.node),
        "op_histogram": dict(Counter(n.op_type for n in model.graph.node).most_common()),
        "params": params,
        "macs": macs,
        "flops": None if macs is None else 2 * macs,
        "other_ops": other,
        "macs_note": note,
        "flop_convention": FLOP_CONVENTION,
        "se_blocks": [b.to_dict() for b in blocks],
        "se_share": {
            "blocks": len(blocks),
            "params": se_params,
            "params_fraction": se_params / params if params else 0.0,
            "macs": se_macs,
            "macs_fraction": None if macs is None else (se_macs / macs if macs else 0.0),
            "other_ops": se_other,
        },
    }
