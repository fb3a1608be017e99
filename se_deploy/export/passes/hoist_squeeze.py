"""hoist-squeeze: pool the producer's input instead of its output.

When the SE input comes from a 1x1, stride-1, unpadded, ungrouped Conv (optionally
followed by an inference BatchNormalization), that op mixes no pixels, so
``GAP(conv(u)) == conv(GAP(u))``: the squeeze can read ``u`` (in a bottleneck, a quarter
of the channels) and apply the conv's weights to the pooled N,C_in,1,1 vector. Exact up to
float summation order. Blocks are canonicalized on the way.
"""

from __future__ import annotations

import onnx_ir as ir

from se_deploy.export.ir_helpers import attr, const_array
from se_deploy.export.passes import _ir
from se_deploy.export.passes._registry import PassContext, PassKind, register_pass
from se_deploy.export.se_detect import Match, SqueezeKind


def hoistable(m: Match) -> tuple[list[ir.Node], ir.Value] | str:
    """The pointwise producer chain [Conv(, BatchNormalization)] of the SE input, or why not."""
    chain = []
    p = m.x.producer()
    if p is not None and p.op_type == "BatchNormalization" and len(p.outputs) == 1:
        if any(const_array(v) is None for v in p.inputs[1:5]):
            return "BatchNormalization parameters are not constant"
        chain.insert(0, p)
        p = p.inputs[0].producer()
    if p is None or p.op_type != "Conv":
        return f"SE input is produced by {p.op_type if p is not None else 'a graph input'}, not a 1x1 Conv"
    w = const_array(p.inputs[1])
    if w is None or w.ndim != 4 or w.shape[2:] != (1, 1):
        return "producer Conv is not 1x1 with constant weights"
    if int(attr(p, "group", 1)) != 1:
        return "producer Conv is grouped"
    if any(int(s) != 1 for s in (attr(p, "strides", None) or [1, 1])):
        return "producer Conv is strided"
    if any(int(v) != 0 for v in (attr(p, "pads", None) or [0])) or attr(p, "auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return "producer Conv pads"
    if len(p.inputs) > 2 and p.inputs[2] is not None and const_array(p.inputs[2]) is None:
        return "producer Conv bias is not constant"
    chain.insert(0, p)
    return chain, p.inputs[0]


class HoistSqueeze(_ir.SEPass):
    def declines(self, m: Match) -> str | None:
        if m.squeeze_kind is SqueezeKind.hoisted:
            return "already hoisted"
        h = hoistable(m)
        return h if isinstance(h, str) else None

    def build(self, op, m: Match):
        chain, u = hoistable(m)
        base = _ir.base_name(m)
        v = _ir.named(op.GlobalAveragePool(u), f"{base}/squeeze_hoisted")
        for k, node in enumerate(chain):
            # the same op, same constant inputs, applied to the pooled N,C,1,1 tensor
            v = getattr(op, node.op_type)(v, *node.inputs[1:], **{a.name: a.value for a in node.attributes.values()})
            _ir.named(v, f"{base}/squeeze_hoisted_{node.op_type.lower()}{k}")
        return _ir.canonical_block(op, self.model, m, squeeze=v)


@register_pass("hoist-squeeze", kind=PassKind.exact,
               summary="pool the input of a pointwise (1x1) producer conv and apply its weights to the pooled vector")
def hoist_squeeze(model, ctx: PassContext) -> dict:
    return HoistSqueeze(model).apply()
