"""canonicalize: every SE block becomes GlobalAveragePool -> Conv1x1 [-> act -> Conv1x1] -> gate -> Mul.

Exporters spell SE blocks with Gemm/MatMul, Flatten/Reshape, ``Clip(z+3,0,6)/6`` gates,
``expand_as`` and (legacy exporter, dynamic batch) Shape->Gather->Unsqueeze->Concat->Reshape
chains. Those force layout reorders and shape computations at run time; the canonical form
has none and keeps the whole excitation in N,C,1,1. The weights are the same numbers,
reshaped, so the pass is exact (a Clip/Div gate becomes the equal HardSigmoid). An effective
SE block (one FC) keeps its single 1x1 conv.
"""

from __future__ import annotations

from se_deploy.export.passes import _ir
from se_deploy.export.passes._registry import PassContext, PassKind, register_pass
from se_deploy.export.se_detect import Match


class Canonicalize(_ir.SEPass):
    def declines(self, m: Match) -> str | None:
        return "already canonical" if _ir.is_canonical(m) else None

    def build(self, op, m: Match):
        return _ir.canonical_block(op, self.model, m)


@register_pass("canonicalize", kind=PassKind.exact,
               summary="rewrite every SE block as GlobalAveragePool -> Conv1x1 -> act -> Conv1x1 -> gate -> Mul")
def canonicalize(model, ctx: PassContext) -> dict:
    report = Canonicalize(model).apply()
    already = [k for k, why in report["skipped"].items() if why == "already canonical"]
    return {**report, "already_canonical": len(already),
            "skipped": {k: why for k, why in report["skipped"].items() if k not in already}}
