"""What is in an ONNX model: I/O, opset, op histogram, parameters, MACs/FLOPs and SE blocks.

FLOP convention (stated in every report): 1 MAC = 2 FLOPs. Conv, ConvTranspose, Gemm and
MatMul are counted as MACs (bias adds ignored). Element-wise, pooling and reduction ops
are counted separately as ``other_ops`` (one op per output element, or per input element
for reductions/pools). Counts are for batch 1; a symbolic batch dimension is set to 1.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

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


def _static_shapes(model) -> dict[str, list[int]]:
    """Infer every tensor's shape at batch 1 (symbolic dims replaced by 1)."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {i.name for i in m.graph.initializer}
    for vi in m.graph.input:
        if vi.name in inits:
            continue
        for d in vi.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.Clear()
                d.dim_value = 1
    del m.graph.value_info[:]
    for o in m.graph.output:  # let inference recompute output shapes at batch 1
        for d in o.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.Clear()
                d.dim_value = 1
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


def node_costs(model) -> dict[str, dict[str, int]]:
    """Per node: ``macs`` and ``other_ops`` at batch 1 (0 where a shape is unknown)."""
    shapes = _static_shapes(model)
    costs: dict[str, dict[str, int]] = {}
    for i, node in enumerate(model.graph.node):
        name = node.name or f"{node.op_type}_{i}"
        macs = other = 0
        out = shapes.get(node.output[0]) if node.output else None
        if node.op_type in ("Conv", "ConvTranspose") and out and len(node.input) > 1 and node.input[1] in shapes:
            w = shapes[node.input[1]]  # [Cout, Cin/groups, kh, kw]
            per_out = int(np.prod(w[1:]))
            macs = int(np.prod(out)) * per_out
        elif node.op_type == "Gemm" and out and node.input[0] in shapes:
            a = shapes[node.input[0]]
            trans_a = any(at.name == "transA" and at.i for at in node.attribute)
            k = a[0] if trans_a else a[-1]
            macs = int(np.prod(out)) * int(k)
        elif node.op_type == "MatMul" and out and node.input[0] in shapes:
            macs = int(np.prod(out)) * int(shapes[node.input[0]][-1])
        elif node.op_type in _INPUT_COUNTED and node.input[0] in shapes:
            other = int(np.prod(shapes[node.input[0]]))
        elif node.op_type in _ELEMENTWISE and out:
            other = int(np.prod(out))
        costs[name] = {"macs": macs, "other_ops": other}
    return costs


def count_params(model) -> int:
    import onnx

    n = 0
    for init in model.graph.initializer:
        if init.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32) and len(init.dims) <= 1:
            continue  # shape constants, not weights
        n += int(np.prod(init.dims)) if init.dims else 1
    return n


def inspect_model(model) -> dict[str, Any]:
    """Everything `se-deploy inspect` shows, as a JSON-ready dict."""
    io_specs = input_output_specs(model)
    costs = node_costs(model)
    macs = sum(c["macs"] for c in costs.values())
    other = sum(c["other_ops"] for c in costs.values())
    blocks = find_se_blocks(model)
    se_nodes: set[str] = set()
    for b in blocks:
        se_nodes.update(b.node_names)
    se_macs = sum(c["macs"] for n, c in costs.items() if n in se_nodes)
    se_other = sum(c["other_ops"] for n, c in costs.items() if n in se_nodes)
    inits = {i.name: i for i in model.graph.initializer}
    se_params = 0
    for node in model.graph.node:
        if node.name in se_nodes:
            for inp in node.input:
                if inp in inits:
                    se_params += int(np.prod(inits[inp].dims)) if inits[inp].dims else 1
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
        "flops": 2 * macs,
        "other_ops": other,
        "flop_convention": FLOP_CONVENTION,
        "se_blocks": [b.to_dict() for b in blocks],
        "se_share": {
            "blocks": len(blocks),
            "params": se_params,
            "params_fraction": se_params / params if params else 0.0,
            "macs": se_macs,
            "macs_fraction": se_macs / macs if macs else 0.0,
            "other_ops": se_other,
        },
    }
