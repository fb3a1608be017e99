"""canonicalize: every SE block becomes GlobalAveragePool -> Conv1x1 -> act -> Conv1x1 -> gate -> Mul.

Exporters spell SE blocks with Gemm/MatMul, Flatten/Reshape and (legacy exporter, dynamic
batch) Shape->Gather->Unsqueeze->Concat->Reshape chains. Those force layout reorders and
shape computations at run time; the canonical form has none and keeps the whole
excitation in N,C,1,1. The weights are the same numbers, reshaped, so the pass is exact.
"""

from __future__ import annotations

from se_deploy.export.passes import _ir
from se_deploy.export.passes._registry import PassKind, PassContext, register_pass
from se_deploy.export.se_detect import Match


def build_canonical(graph, model, m: Match, squeeze_value=None) -> tuple[list, object]:
    """Nodes computing the canonical block from ``m``'s weights; returns (nodes, new scale output)."""
    import onnx_ir as ir

    base = _ir.base_name(m)
    dt = m.fc1.weight.dtype
    nodes = []
    if squeeze_value is None:
        gap = ir.node("GlobalAveragePool", [m.x], name=f"{base}/squeeze")
        nodes.append(gap)
        squeeze_value = gap.outputs[0]
    fc1 = _ir.conv1x1(graph, squeeze_value, m.fc1.weight, m.fc1.bias, f"{base}/fc1", dt)
    nodes.append(fc1)
    act = _ir.act_nodes(graph, model, fc1.outputs[0], m.act, base)
    nodes.extend(act)
    fc2 = _ir.conv1x1(graph, act[-1].outputs[0], m.fc2.weight, m.fc2.bias, f"{base}/fc2", dt)
    nodes.append(fc2)
    gate = _ir.gate_node(fc2.outputs[0], m.gate, base)
    nodes.append(gate)
    mul = ir.node("Mul", [m.x, gate.outputs[0]], name=m.scale.name or f"{base}/scale")
    nodes.append(mul)
    return nodes, mul.outputs[0]


def replace_block(model, m: Match, nodes: list, new_out) -> None:
    graph = model.graph
    _ir.name_outputs(nodes[:-1])  # the new scale output takes the old output's name below
    graph.insert_before(m.scale, nodes)
    old_name = m.scale.name
    m.scale.name = (old_name or "se") + "__replaced"
    _ir.replace_output(graph, m.scale.outputs[0], new_out, fresh=True)
    _ir.remove_block(graph, m)
    new_out.producer().name = old_name or new_out.producer().name


@register_pass("canonicalize", kind=PassKind.exact,
               summary="rewrite every SE block as GlobalAveragePool -> Conv1x1 -> act -> Conv1x1 -> gate -> Mul")
def canonicalize(model, ctx: PassContext) -> dict:
    changed, skipped = [], {}
    for m in _ir.each_match(model, lambda m: "already canonical" if _ir.is_canonical(m) else None, skipped):
        nodes, out = build_canonical(model.graph, model, m)
        replace_block(model, m, nodes, out)
        changed.append(m.block.scale_node)
    _ir.cleanup(model)
    return {"changed": len(changed), "already_canonical": len(skipped), "blocks": changed}
