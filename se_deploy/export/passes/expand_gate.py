"""expand-gate: scale by an equal-shape Mul so onnxruntime's CPU layout keeps the block blocked.

onnxruntime runs convolutions in the blocked NCHWc layout, but its NCHWc transformer only
rewrites binary ops whose inputs have equal shapes; the SE scale ``x[N,C,H,W] * g[N,C,1,1]``
is left in NCHW. Every block then pays a full-tensor reorder out of NCHWc and back, and the
residual Add + ReLU after it cannot fuse (see BENCHMARKS.md). This pass expands the gate to
``N,C,H,W`` with a nearest-neighbour ``Resize`` (which that transformer does support) and
annotates the expanded tensor with the scaled tensor's own shape, so the shapes are provably
equal. Replicating a 1x1 map is exact. It needs static H and W, and it targets onnxruntime
CPU: other backends would only see an extra full-size tensor, so it is opt-in.
"""

from __future__ import annotations

import numpy as np

from se_deploy.export.ir_helpers import add_initializer, opset
from se_deploy.export.passes import _ir
from se_deploy.export.passes._registry import PassContext, PassKind, register_pass
from se_deploy.export.se_detect import Match


class ExpandGate(_ir.SEPass):
    def declines(self, m: Match) -> str | None:
        if m.expand is not None:
            return "gate already expanded"
        if not _ir.is_canonical(m):
            return "not in canonical form (run canonicalize first)"
        if opset(self.model) < 11:
            return "needs opset >= 11 (Resize with scales)"
        shape = m.x.shape
        if shape is None or len(shape) != 4:
            return "the scaled tensor's shape is unknown"
        h, w = shape[2], shape[3]
        if not isinstance(h, int) or not isinstance(w, int):
            return "the spatial size is not static"
        n = shape[0]
        if not isinstance(n, int) and getattr(n, "value", None) is None:
            return "the batch dimension has no name, so equal shapes cannot be proven"
        return None

    def build(self, op, m: Match):
        base = _ir.base_name(m)
        h, w = m.x.shape[2], m.x.shape[3]
        scales = add_initializer(self.model.graph, f"{base}/expand.scales", np.array([1, 1, h, w], np.float32))
        out = _ir.named(op.Resize(m.gate_value, None, scales, mode="nearest",
                                  coordinate_transformation_mode="asymmetric", nearest_mode="floor"), f"{base}/expand")
        out.type = m.x.type
        out.shape = m.x.shape  # the annotation that lets the runtime prove the Mul's shapes equal
        return op.Mul(m.x, out) if m.scale.inputs[0] is m.x else op.Mul(out, m.x)


@register_pass("expand-gate", kind=PassKind.exact,
               summary="expand the N,C,1,1 gate to N,C,H,W (nearest Resize) so onnxruntime CPU keeps SE blocks in NCHWc")
def expand_gate(model, ctx: PassContext) -> dict:
    return ExpandGate(model).apply()
