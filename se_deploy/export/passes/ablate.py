"""ablate-se: the plain twin of any SE model (every SE block replaced by scale 1).

This changes the function on purpose. It exists so the SE tax can be measured for models
that have no plain twin in the zoo: latency(model) / latency(ablate_se(model)) - 1.
"""

from __future__ import annotations

from se_deploy.export.ir_helpers import cleanup, replace_output
from se_deploy.export.passes import _ir
from se_deploy.export.passes._registry import PassKind, PassContext, register_pass


def ablate_block(model, m) -> None:
    """Remove one SE block: its scale's readers read the block input instead (the scale Mul bypassed)."""
    replace_output(model.graph, m.scale.outputs[0], m.x, fresh=False)
    _ir.remove_block(model.graph, m)


@register_pass("ablate-se", kind=PassKind.ablation, summary="remove every SE block (scale by 1): the plain twin for SE-tax benchmarks")
def ablate(model, ctx: PassContext) -> dict:
    removed = []
    for m in _ir.each_match(model):
        removed.append(m.scale.name)
        ablate_block(model, m)
    cleanup(model)
    return {"changed": len(removed), "blocks": removed}
