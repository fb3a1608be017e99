"""Small onnx-ir editing helpers shared by the SE passes."""

from __future__ import annotations

import numpy as np

from se_deploy.export.se_detect import Match, find_matches


def each_match(model, skip=lambda m: None, skipped: dict | None = None):
    """Yield SE matches one at a time, detecting again after each rewrite.

    A rewrite replaces the block's output value, so a match found before it (for example
    the next block in a back-to-back pair, whose input is that output) would hold stale
    handles. ``skip(m)`` returns a reason to leave ``m`` alone, or None to yield it;
    skipped blocks are collected in the returned dict of scale node -> reason.
    """

    seen: set[str] = set()
    skipped = {} if skipped is None else skipped
    while True:
        matches, _ = find_matches(model)
        todo = [m for m in matches if m.block.scale_node not in seen]
        if not todo:
            return
        m = todo[0]
        seen.add(m.block.scale_node)
        reason = skip(m)
        if reason:
            skipped[m.block.scale_node] = reason
            continue
        yield m


def add_initializer(graph, base: str, array: np.ndarray):
    import onnx_ir as ir

    name = base
    k = 1
    while name in graph.initializers:
        k += 1
        name = f"{base}_{k}"
    array = np.array(array, order="C", copy=True)  # (np.ascontiguousarray would turn a scalar into shape [1])
    value = ir.Value(name=name, const_value=ir.tensor(array, name=name),
                     shape=ir.Shape(array.shape), type=ir.TensorType(ir.DataType.from_numpy(array.dtype)))
    graph.register_initializer(value)
    return value


def opset(model) -> int:
    return int(model.opset_imports.get("", model.opset_imports.get("ai.onnx", 13)))


def base_name(m: Match) -> str:
    """Prefix for the nodes and weights a pass creates for block ``m``: the scale node's name."""
    return (m.scale.name or "se").rstrip("/") or "se"


def name_outputs(nodes) -> None:
    """Give new node outputs exporter-style names (``<node>_output_<i>``) instead of anonymous ones."""
    for n in nodes:
        for i, o in enumerate(n.outputs):
            if not o.name and n.name:
                o.name = f"{n.name}_output_{i}"


def replace_output(graph, old, new, *, fresh: bool) -> None:
    """Make every use of ``old`` (a node output) use ``new``.

    ``fresh``: ``new`` was just created by the pass, so it takes over ``old``'s name and
    tensor names downstream stay stable. An existing value (the SE input, when a block is
    removed) keeps its own name; if ``old`` was a graph output, an Identity keeps the
    output's name.
    """
    import onnx_ir as ir

    name = old.name
    if old in graph.outputs and not fresh:
        ident = ir.node("Identity", [new])
        if new.producer() is not None:
            graph.insert_after(new.producer(), ident)
        else:
            graph.insert_before(next(iter(graph)), ident)
        new, fresh = ident.outputs[0], True
    if new.type is None and old.type is not None:
        new.type = old.type
    if new.shape is None and old.shape is not None:
        new.shape = old.shape
    old.replace_all_uses_with(new, replace_graph_outputs=True)
    if fresh and name:
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
