"""What the SE passes share: the rewrite-rule base for passes and the builder of the canonical block.

A rewriting pass is an :class:`SEPass`: onnxscript's rewriter drives it over every ``Mul``
(both operand orders), ``check`` is SE detection plus the pass's own ``why_not``, and
``rewrite`` builds the new block with the rewriter's op builder and returns its scale output.
The rewriter inserts the new nodes, moves the uses and the output name over, and the old
block dies (``cleanup``). Each block is matched on the graph as it is at that moment, so a
rewrite never works from stale handles (back-to-back blocks share a tensor).

Passes that edit outside the matched ``Mul`` (fold-gates rescales the producer conv, ablate-se
forwards the input under its own name) loop over :func:`each_match` instead.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import RewriteRuleSet

from se_deploy.export.ir_helpers import NORMALIZED_TAG, add_initializer, cleanup, opset, strip_rewrite_tags, value_dtype
from se_deploy.export.se_detect import (
    ActKind,
    Activation,
    Gate,
    GateKind,
    Match,
    SEScale,
    SqueezeKind,
    Variant,
    find_matches,
)


class SEPass(SEScale):
    """One SE pass as a rewrite rule. Subclasses set ``supports`` and implement ``declines`` and ``build``.

    ``changed`` lists the rewritten blocks (scale node names); ``skipped`` maps each block the
    pass left alone to the reason, so the report says why.
    """

    supports: frozenset[Variant] = frozenset(Variant)

    def __init__(self, model: ir.Model) -> None:
        super().__init__()
        self.model = model
        self.changed: list[str] = []
        self.skipped: dict[str, str] = {}
        self._made: set[ir.Node] = set()  # scale Muls this pass built: visited again, never reported

    def declines(self, m: Match) -> str | None:
        return None

    def build(self, op, m: Match) -> ir.Value:
        raise NotImplementedError

    def why_not(self, m: Match) -> str | None:
        if m.scale in self._made:  # the rewriter visits the nodes it just inserted; leave our own blocks alone
            return "built by this pass"
        if m.variant not in self.supports:
            reason = f"{self.name} does not support {m.variant.value} blocks"
        else:
            reason = self.declines(m)
        if reason:
            self.skipped[m.scale.name] = reason
        return reason

    def rewrite(self, op, x, g, **_):
        m = self.match
        name = m.scale.name
        out = self.build(op, m)
        out.producer().name = name  # the new scale Mul keeps the old one's name (the output keeps its tensor name)
        self._made.add(out.producer())
        self.changed.append(name)
        return out

    def apply(self) -> dict:
        """Rewrite every block the pass takes; return the pass report (changed count, blocks, skipped)."""
        RewriteRuleSet(self.variants()).apply_to_model(self.model)
        strip_rewrite_tags(self.model)
        cleanup(self.model)
        return {"changed": len(self.changed), "blocks": self.changed, "skipped": self.skipped}


def each_match(model: ir.Model, skip=lambda m: None, skipped: dict | None = None):
    """Yield SE matches one at a time, detecting again after each edit.

    An edit replaces the block's output value, so a match found before it (for example the
    next block in a back-to-back pair, whose input is that output) would hold stale handles.
    ``skip(m)`` returns a reason to leave ``m`` alone, or None to yield it; skipped blocks are
    collected in the returned dict of scale node -> reason.
    """
    seen: set[str] = set()
    skipped = {} if skipped is None else skipped
    while True:
        matches, _ = find_matches(model)
        todo = [m for m in matches if m.scale.name not in seen]
        if not todo:
            return
        m = todo[0]
        seen.add(m.scale.name)
        reason = skip(m)
        if reason:
            skipped[m.scale.name] = reason
            continue
        yield m


def base_name(m: Match) -> str:
    """Prefix for the nodes and weights a pass creates for block ``m``: the scale node's name."""
    return (m.scale.name or "se").rstrip("/") or "se"


def named(value: ir.Value, name: str) -> ir.Value:
    """Name a freshly built node and its output (``<node>_output_0``, exporter style)."""
    value.producer().name = name
    value.name = f"{name}_output_0"
    return value


def remove_block(graph: ir.Graph, m: Match) -> None:
    graph.remove(list(m.nodes) + [m.scale], safe=True)


def normalized_away(m: Match) -> bool:
    """Did normalization rewrite a node of this block (a Clip/Div gate, an ``expand_as``)? The user's
    graph then still has the old spelling, so the block is not canonical there."""
    return any(NORMALIZED_TAG in n.metadata_props for n in [*m.nodes, m.scale])


def is_canonical(m: Match) -> bool:
    return (m.squeeze_kind in (SqueezeKind.global_average_pool, SqueezeKind.hoisted) and m.fc1.kind == "conv"
            and (m.fc2 is None or m.fc2.kind == "conv") and m.shape_ops == 0 and not normalized_away(m))


def conv1x1(op, graph: ir.Graph, value: ir.Value, weight: np.ndarray, bias: np.ndarray | None, base: str,
            dtype) -> ir.Value:
    """A 1x1 Conv applying ``weight`` (O, I) and ``bias`` to ``value`` (N, I, 1, 1)."""
    w = add_initializer(graph, f"{base}.weight", weight.astype(dtype).reshape(*weight.shape, 1, 1))
    b = None if bias is None else add_initializer(graph, f"{base}.bias", np.asarray(bias).astype(dtype).reshape(-1))
    return named(op.Conv(value, w, b, kernel_shape=[1, 1]) if b is not None else op.Conv(value, w, kernel_shape=[1, 1]),
                 base)


def activation(op, graph: ir.Graph, model: ir.Model, value: ir.Value, act: Activation, base: str) -> ir.Value:
    """The canonical form of ``act`` applied to ``value``."""
    k = act.kind
    if k is ActKind.relu:
        return named(op.Relu(value), f"{base}/act")
    if k is ActKind.leakyrelu:
        return named(op.LeakyRelu(value, alpha=float(act.alpha)), f"{base}/act")
    if k in (ActKind.relu6, ActKind.clip):
        dt = value_dtype(value)
        lo = None if act.min is None else add_initializer(graph, f"{base}.act_min", np.array(act.min, dt))
        hi = None if act.max is None else add_initializer(graph, f"{base}.act_max", np.array(act.max, dt))
        return named(op.Clip(value, lo, hi), f"{base}/act")
    if k is ActKind.silu:
        sig = named(op.Sigmoid(value), f"{base}/act_sigmoid")
        return named(op.Mul(value, sig), f"{base}/act")
    if k is ActKind.hardswish and opset(model) >= 14:
        return named(op.HardSwish(value), f"{base}/act")
    if k in (ActKind.hardswish, ActKind.x_hardsigmoid):
        a, b = (1 / 6, 0.5) if k is ActKind.hardswish else (act.alpha, act.beta)
        hs = named(op.HardSigmoid(value, alpha=float(a), beta=float(b)), f"{base}/act_hsig")
        return named(op.Mul(value, hs), f"{base}/act")
    raise ValueError(f"unknown activation {act}")


def gate(op, value: ir.Value, g: Gate, base: str) -> ir.Value:
    if g.kind is GateKind.sigmoid:
        return named(op.Sigmoid(value), f"{base}/gate")
    return named(op.HardSigmoid(value, alpha=float(g.alpha), beta=float(g.beta)), f"{base}/gate")


def canonical_block(op, model: ir.Model, m: Match, squeeze: ir.Value | None = None) -> ir.Value:
    """GlobalAveragePool -> Conv1x1 [-> act -> Conv1x1] -> gate -> Mul from ``m``'s weights; returns the scale output.

    ``squeeze``: an already pooled N,C,1,1 value to start from (hoist-squeeze)."""
    graph = model.graph
    base = base_name(m)
    dt = m.fc1.weight.dtype
    if squeeze is None:
        squeeze = named(op.GlobalAveragePool(m.x), f"{base}/squeeze")
    v = conv1x1(op, graph, squeeze, m.fc1.weight, m.fc1.bias, f"{base}/fc1", dt)
    if m.fc2 is not None:
        v = activation(op, graph, model, v, m.act, base)
        v = conv1x1(op, graph, v, m.fc2.weight, m.fc2.bias, f"{base}/fc2", dt)
    return op.Mul(m.x, gate(op, v, m.gate, base))


__all__ = ["SEPass", "activation", "base_name", "canonical_block", "conv1x1", "each_match", "gate", "is_canonical",
           "named", "normalized_away", "remove_block"]
