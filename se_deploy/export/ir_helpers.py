"""Small onnx-ir helpers shared by SE detection, normalization and the SE passes.

Reading: constant values, attributes, producers, static shapes. Editing: initializers with
unique names, output replacement that keeps tensor names stable, dead-node cleanup.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass
from onnxscript.rewriter._rewrite_rule import RULE_NAME_TAG

#: Node metadata key marking nodes that graph normalization rewrote (see export/normalize.py).
NORMALIZED_TAG = "se_deploy.normalized"

# --------------------------------------------------------------------------- reading


def const_array(value: ir.Value | None) -> np.ndarray | None:
    """The constant behind ``value`` (an initializer or a Constant node's output), else None."""
    if value is None:
        return None
    try:
        t = ir.convenience.get_const_tensor(value)
    except ValueError:
        return None
    return None if t is None else np.asarray(t.numpy())


def attr(node: ir.Node, name: str, default: Any = None) -> Any:
    a = node.attributes.get(name)
    if a is None:
        return default
    v = a.value
    return v.decode() if isinstance(v, bytes) else v


def producer(value: ir.Value | None) -> ir.Node | None:
    return None if value is None else value.producer()


def static_shape(value: ir.Value | None) -> list[int | None] | None:
    """The value's shape with symbolic dims as None, or None when the rank is unknown."""
    s = getattr(value, "shape", None)
    if s is None:
        return None
    return [d if isinstance(d, int) else None for d in s]


def opset(model: ir.Model) -> int:
    return int(model.opset_imports.get("", model.opset_imports.get("ai.onnx", 13)))


def value_dtype(value: ir.Value) -> np.dtype:
    t = getattr(value, "dtype", None)
    try:
        return np.dtype(t.numpy()) if t is not None else np.dtype(np.float32)
    except Exception:
        return np.dtype(np.float32)


# --------------------------------------------------------------------------- editing


def add_initializer(graph: ir.Graph, base: str, array: np.ndarray) -> ir.Value:
    """Register ``array`` under ``base`` (or ``base_2``, ``base_3``, ... when taken)."""
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


def name_outputs(nodes) -> None:
    """Give new node outputs exporter-style names (``<node>_output_<i>``) instead of anonymous ones."""
    for n in nodes:
        for i, o in enumerate(n.outputs):
            if not o.name and n.name:
                o.name = f"{n.name}_output_{i}"


def replace_output(graph: ir.Graph, old: ir.Value, new: ir.Value, *, fresh: bool) -> None:
    """Make every use of ``old`` (a node output) use ``new``.

    ``fresh``: ``new`` was just created by the pass, so it takes over ``old``'s name and
    tensor names downstream stay stable. An existing value (the SE input, when a block is
    removed) keeps its own name; if ``old`` was a graph output, an Identity keeps the
    output's name.
    """
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


def strip_rewrite_tags(model: ir.Model) -> None:
    """Drop the rewriter's bookkeeping from node metadata before a graph is written."""
    for node in model.graph:
        node.metadata_props.pop(RULE_NAME_TAG, None)
        node.metadata_props.pop(NORMALIZED_TAG, None)


def cleanup(model: ir.Model) -> None:
    """Drop nodes and initializers nothing uses any more (e.g. legacy Shape->Reshape chains)."""
    RemoveUnusedNodesPass()(model)


__all__ = ["NORMALIZED_TAG", "add_initializer", "attr", "cleanup", "const_array", "name_outputs", "opset", "producer",
           "replace_output", "static_shape", "strip_rewrite_tags", "value_dtype"]
