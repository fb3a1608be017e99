"""Small onnx-ir editing helpers shared by the SE passes."""

from __future__ import annotations

import numpy as np

from se_deploy.export.se_detect import Match


def add_initializer(graph, base: str, array: np.ndarray):
    import onnx_ir as ir

    name = base
    k = 1
    while name in graph.initializers:
        k += 1
        name = f"{base}_{k}"
    value = ir.Value(name=name, const_value=ir.tensor(np.ascontiguousarray(array), name=name),
                     shape=ir.Shape(array.shape), type=ir.TensorType(ir.DataType.from_numpy(array.dtype)))
    graph.register_initializer(value)
    return value


def opset(model) -> int:
    return int(model.opset_imports.get("", model.opset_imports.get("ai.onnx", 13)))


def base_name(m: Match) -> str:
    return (m.scale.name or "se").replace("/", "_").strip("_") or "se"


def replace_output(graph, old, new) -> None:
    """Make every use of ``old`` (a node output) use ``new``, keeping ``old``'s name."""
    name = old.name
    is_output = old in graph.outputs
    if is_output and (new.is_graph_input() or new in graph.outputs or new.is_initializer()):
        # the graph output must stay a distinct, named value: route it through an Identity
        import onnx_ir as ir

        ident = ir.node("Identity", [new])
        graph.insert_after(new.producer(), ident) if new.producer() is not None else graph.insert_before(
            next(iter(graph)), ident)
        new = ident.outputs[0]
    if new.type is None and old.type is not None:
        new.type = old.type
    if new.shape is None and old.shape is not None:
        new.shape = old.shape
    old.replace_all_uses_with(new, replace_graph_outputs=True)
    if name:
        old.name = None
        new.name = name


def remove_block(graph, m: Match) -> None:
    graph.remove(list(m.nodes) + [m.scale], safe=True)


def cleanup(model) -> None:
    """Drop nodes and initializers nothing uses any more (e.g. legacy Shape->Reshape chains)."""
    from onnx_ir.passes.common import RemoveUnusedNodesPass

    RemoveUnusedNodesPass()(model)


def act_nodes(graph, model, value, act: tuple, base: str) -> list:
    """Nodes computing the canonical form of activation ``act`` on ``value``."""
    import onnx_ir as ir

    kind, params = act
    if kind == "relu":
        return [ir.node("Relu", [value], name=f"{base}/act")]
    if kind == "leakyrelu":
        return [ir.node("LeakyRelu", [value], {"alpha": float(params["alpha"])}, name=f"{base}/act")]
    if kind in ("relu6", "clip"):
        dt = value_dtype(value)
        lo = None if params["min"] is None else add_initializer(graph, f"{base}.act_min", np.array(params["min"], dt))
        hi = None if params["max"] is None else add_initializer(graph, f"{base}.act_max", np.array(params["max"], dt))
        return [ir.node("Clip", [value, lo, hi], name=f"{base}/act")]
    if kind == "silu":
        sig = ir.node("Sigmoid", [value], name=f"{base}/act_sigmoid")
        return [sig, ir.node("Mul", [value, sig.outputs[0]], name=f"{base}/act")]
    if kind == "hardswish" and opset(model) >= 14:
        return [ir.node("HardSwish", [value], name=f"{base}/act")]
    if kind in ("hardswish", "x*hardsigmoid"):
        a, b = (1 / 6, 0.5) if kind == "hardswish" else (params["alpha"], params["beta"])
        hs = ir.node("HardSigmoid", [value], {"alpha": float(a), "beta": float(b)}, name=f"{base}/act_hsig")
        return [hs, ir.node("Mul", [value, hs.outputs[0]], name=f"{base}/act")]
    raise ValueError(f"unknown activation {kind}")


def gate_node(value, gate: tuple, base: str):
    import onnx_ir as ir

    kind, params = gate
    if kind == "sigmoid":
        return ir.node("Sigmoid", [value], name=f"{base}/gate")
    return ir.node("HardSigmoid", [value], {"alpha": float(params["alpha"]), "beta": float(params["beta"])},
                   name=f"{base}/gate")


def value_dtype(value) -> np.dtype:
    t = getattr(value, "dtype", None)
    try:
        return np.dtype(t.numpy()) if t is not None else np.dtype(np.float32)
    except Exception:
        return np.dtype(np.float32)


def conv1x1(graph, value, weight: np.ndarray, bias: np.ndarray | None, base: str, dtype):
    """A 1x1 Conv node applying ``weight`` (O, I) and ``bias`` to ``value`` (N, I, 1, 1)."""
    import onnx_ir as ir

    w = add_initializer(graph, f"{base}.weight", weight.astype(dtype).reshape(*weight.shape, 1, 1))
    ins = [value, w]
    if bias is not None:
        ins.append(add_initializer(graph, f"{base}.bias", np.asarray(bias).astype(dtype).reshape(-1)))
    return ir.node("Conv", ins, {"kernel_shape": [1, 1]}, name=base)


def is_canonical(m: Match) -> bool:
    return (m.squeeze_kind in ("GlobalAveragePool", "GlobalAveragePool(hoisted)") and m.fc1.kind == "conv" and m.fc2.kind == "conv"
            and m.shape_ops == 0 and m.nodes[0].op_type in ("Sigmoid", "HardSigmoid"))
