"""hoist-squeeze: pool the producer's input instead of its output.

When the SE input comes from a 1x1, stride-1, unpadded, ungrouped Conv (optionally
followed by an inference BatchNormalization), that op mixes no pixels, so
``GAP(conv(u)) == conv(GAP(u))``: the squeeze can read ``u`` (in a bottleneck, a quarter
of the channels) and apply the conv's weights to the pooled N,C_in,1,1 vector. Exact up to
float summation order. Blocks are canonicalized on the way.
"""

from __future__ import annotations

from se_deploy.export.passes import _ir
from se_deploy.export.passes._registry import PassKind, PassContext, register_pass
from se_deploy.export.passes.canonicalize import build_canonical, replace_block
from se_deploy.export.se_detect import _attr, _const


def hoistable(m) -> tuple[list, object] | str:
    """The pointwise producer chain [Conv(, BatchNormalization)] of the SE input, or why not."""
    chain = []
    p = m.x.producer()
    if p is not None and p.op_type == "BatchNormalization" and len(p.outputs) == 1:
        if any(_const(v) is None for v in p.inputs[1:5]):
            return "BatchNormalization parameters are not constant"
        chain.insert(0, p)
        p = p.inputs[0].producer()
    if p is None or p.op_type != "Conv":
        return f"SE input is produced by {p.op_type if p is not None else 'a graph input'}, not a 1x1 Conv"
    w = _const(p.inputs[1])
    if w is None or w.ndim != 4 or w.shape[2:] != (1, 1):
        return "producer Conv is not 1x1 with constant weights"
    if int(_attr(p, "group", 1)) != 1:
        return "producer Conv is grouped"
    if any(int(s) != 1 for s in (_attr(p, "strides", None) or [1, 1])):
        return "producer Conv is strided"
    if any(int(v) != 0 for v in (_attr(p, "pads", None) or [0])) or _attr(p, "auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return "producer Conv pads"
    if len(p.inputs) > 2 and p.inputs[2] is not None and _const(p.inputs[2]) is None:
        return "producer Conv bias is not constant"
    chain.insert(0, p)
    return chain, p.inputs[0]


@register_pass("hoist-squeeze", kind=PassKind.exact,
               summary="pool the input of a pointwise (1x1) producer conv and apply its weights to the pooled vector")
def hoist_squeeze(model, ctx: PassContext) -> dict:
    import onnx_ir as ir

    def skip(m):
        if m.squeeze_kind.endswith("(hoisted)"):
            return "already hoisted"
        h = hoistable(m)
        return h if isinstance(h, str) else None

    changed, skipped = [], {}
    for m in _ir.each_match(model, skip, skipped):
        chain, u = hoistable(m)
        base = _ir.base_name(m)
        gap = ir.node("GlobalAveragePool", [u], name=f"{base}/squeeze_hoisted")
        nodes = [gap]
        v = gap.outputs[0]
        for k, op in enumerate(chain):
            # the same op, same constant inputs, applied to the pooled N,C,1,1 tensor
            clone = ir.node(op.op_type, [v, *op.inputs[1:]], {a.name: a for a in op.attributes.values()},
                            name=f"{base}/squeeze_hoisted_{op.op_type.lower()}{k}")
            nodes.append(clone)
            v = clone.outputs[0]
        canon, out = build_canonical(model.graph, model, m, squeeze_value=v)
        replace_block(model, m, nodes + canon, out)
        changed.append(m.block.scale_node)
    _ir.cleanup(model)
    return {"changed": len(changed), "blocks": changed, "skipped": skipped}
