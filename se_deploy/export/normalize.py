"""Normalize a copy of an ONNX graph before SE detection, so one canonical pattern meets one spelling.

Real graphs come from anywhere: the legacy exporter routes deduplicated biases through
``Identity`` nodes, fp16 weights come with ``Cast`` chains, shapes are ``Constant`` nodes
or ``Shape -> Gather -> Unsqueeze -> Concat`` computations, and nobody simplified them.
Detection must not depend on that, so it runs on a normalized copy built only from
maintained onnx-ir / onnxscript passes:

1. ``RemoveInitializersFromInputsPass``: initializers listed as graph inputs block folding.
2. ``onnxscript.optimizer.fold_constants`` with ONNX shape inference: Identity/Cast chains
   of constants, Constant nodes and constant shape computations fold into initializers,
   and every value gets its shape. No input size limit (an fp16 FC weight behind a Cast must
   fold); the output cap only stops new tensors that grow the model.
3. Rewrite rules: ``x * Expand(g, Shape(x))`` -> ``x * g`` (``expand_as``), Reshape shape
   chains -> constants where the output shape proves it (opset >= 14 only: the rule writes
   ``allowzero``, which Reshape-13 lacks), and the hard-sigmoid spellings
   ``Clip(z + a, 0, d) / d`` and ``Clip(z + a, 0, d) * (1/d)`` -> ``HardSigmoid``.
4. ``RemoveUnusedNodesPass``, ``LiftConstantsToInitializersPass`` (every Constant node),
   ``RemoveUnusedNodesPass``.
5. Node names restored by output tensor name: rules name their replacement nodes
   ``node_<Op>_<k>`` but keep output tensor names, and detection reports names of the
   user's graph (quantization excludes nodes by name).

Deliberately left out of ``onnxscript.optimizer.optimize()``: BatchNorm fusion and zero-bias
removal (they change what detection reports), CSE and initializer dedup (they merge nodes
the user named), and the HardSwish fusions (HardSwish needs opset 14).

Everything is exact except the hard-sigmoid fusion, which equals ``Clip(z+a,0,d)/d`` up to
one float rounding (max 6e-8 on [-8, 8]); the SE passes prove their output against the
user's original model anyway. The input ModelProto is never modified.
"""

from __future__ import annotations

import logging
import warnings

import onnx
import onnx_ir as ir
from onnx_ir.passes.common import (
    AddInitializersToInputsPass,
    LiftConstantsToInitializersPass,
    NameFixPass,
    RemoveInitializersFromInputsPass,
    RemoveUnusedNodesPass,
    ShapeInferencePass,
)
from onnxscript import optimizer
from onnxscript.rewriter import MatchResult, RewritePass, RewriteRuleClassBase, RewriteRuleSet
from onnxscript.rewriter._rewrite_rule import RULE_NAME_TAG
from onnxscript.rewriter.rules.common import (
    expand_before_binary_op_rules,
    fuse_hardswish_rules,
    materialize_reshape_shape_rule,
)

from se_deploy.export.ir_helpers import NORMALIZED_TAG, const_array, opset

#: Folded tensors above this many elements are kept only when they replace inputs as big
#: (a Cast of a single-use fp16 weight always folds).
FOLD_OUTPUT_LIMIT = 1 << 22
_NO_LIMIT = 1 << 62

log = logging.getLogger(__name__)


class ClipToHardSigmoid(RewriteRuleClassBase):
    """``Clip(z + a, 0, d) / d``, ``Clip(z + a, 0, d) * (1/d)`` and the ``z - a`` forms -> ``HardSigmoid(1/d, a/d)``.

    onnxscript's ``fuse_hardswish_rules`` cover only ``a = 3, d = 6`` with a ``Div``; exporters
    and hand-written gates also multiply by ``1/6`` or use other constants (VoVNet's eSE).
    """

    def __init__(self, scale_op: str, shift_op: str) -> None:
        super().__init__(f"ClipToHardSigmoid({shift_op},{scale_op})")
        self.scale_op, self.shift_op = scale_op, shift_op

    def pattern(self, op, z, a, lo, hi, k):
        shifted = op.Add(z, a) if self.shift_op == "Add" else op.Sub(z, a)
        clipped = op.Clip(shifted, lo, hi)
        return op.Div(clipped, k) if self.scale_op == "Div" else op.Mul(clipped, k)

    def _constants(self, a, lo, hi, k) -> tuple[float, float] | None:
        vals = [const_array(v) for v in (a, lo, hi, k)]
        if any(v is None or v.size != 1 for v in vals):
            return None
        a_, lo_, hi_, k_ = (float(v.reshape(())) for v in vals)
        d = k_ if self.scale_op == "Div" else (1.0 / k_ if k_ else 0.0)
        if d <= 0 or lo_ != 0.0 or abs(hi_ - d) > 1e-6 * d:
            return None
        return 1.0 / d, (a_ if self.shift_op == "Add" else -a_) / d

    def check(self, context, z, a, lo, hi, k, **_) -> MatchResult:
        result = MatchResult()
        if self._constants(a, lo, hi, k) is None:
            return result.fail("not a hard sigmoid: needs constant scalars with Clip(z + a, 0, d) scaled by 1/d")
        return result

    def rewrite(self, op, z, a, lo, hi, k, **_):
        alpha, beta = self._constants(a, lo, hi, k)
        return op.HardSigmoid(z, alpha=alpha, beta=beta)


def _hard_sigmoid_rules() -> list:
    theirs = [r for r in fuse_hardswish_rules().rules if r.name == "HardSigmoidFusion"]
    ours = RewriteRuleSet([ClipToHardSigmoid.rule(s, t) for s in ("Div", "Mul") for t in ("Add", "Sub")],
                          commute=True).rules
    return theirs + list(ours)


_HARD_SIGMOID_RULES = _hard_sigmoid_rules()


def _rules(model: ir.Model) -> list:
    rules = list(expand_before_binary_op_rules.rules) + _HARD_SIGMOID_RULES
    if opset(model) >= 14:  # the rule writes Reshape(allowzero=1), invalid before opset 14
        rules.append(materialize_reshape_shape_rule)
    return rules


def normalize_ir(model: ir.Model) -> None:
    """Normalize ``model`` in place (see the module docstring). Node names are not restored here."""
    RemoveInitializersFromInputsPass()(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimizer.fold_constants(model, onnx_shape_inference=True, input_size_limit=_NO_LIMIT,
                                 output_size_limit=FOLD_OUTPUT_LIMIT)
    RewritePass(_rules(model))(model)
    for node in model.graph:  # mark what the rules rewrote: canonicalize must still rewrite those spellings
        if RULE_NAME_TAG in node.metadata_props:
            node.metadata_props[NORMALIZED_TAG] = node.metadata_props.pop(RULE_NAME_TAG)
    RemoveUnusedNodesPass()(model)
    LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model)
    RemoveUnusedNodesPass()(model)
    if model.ir_version is not None and model.ir_version < 4:  # initializers had to be graph inputs then
        AddInitializersToInputsPass()(model)


def node_label(node: onnx.NodeProto, index: int) -> str:
    """A node's name, or ``<op_type>_<index>`` for an unnamed node (the label inspect uses too)."""
    return node.name or f"{node.op_type}_{index}"


def _restore_names(model: ir.Model, names_by_output: dict[str, str]) -> None:
    """Give nodes that rules replaced the name of the original node with the same output tensor."""
    original = set(names_by_output.values())
    taken = {n.name for n in model.graph}
    for node in model.graph:
        if node.name in original:  # a node of the user's graph (its output may have been renamed, e.g. to a
            continue               # graph output whose Identity was folded)
        old = next((names_by_output[o.name] for o in node.outputs if o.name in names_by_output), None)
        if old is not None and node.name != old and old not in taken:
            taken.discard(node.name)
            node.name = old
            taken.add(old)


def _label_nodes(model: ir.Model, proto: onnx.ModelProto) -> dict[str, str]:
    """Name unnamed nodes ``<op_type>_<index>``; return output tensor name -> node name."""
    names_by_output: dict[str, str] = {}
    taken = {n.name for n in proto.graph.node if n.name}
    for i, (node, node_proto) in enumerate(zip(model.graph, proto.graph.node)):
        if not node.name:
            label = node_label(node_proto, i)
            node.name = label if label not in taken else None
        for o in node.outputs:
            if o.name and node.name:
                names_by_output[o.name] = node.name
    return names_by_output


def normalized_copy(proto: onnx.ModelProto, *, normalize: bool = True) -> ir.Model:
    """An onnx-ir copy of ``proto``, normalized, with shapes and every node named.

    Unnamed nodes are labelled ``<op_type>_<index>`` first, so a label means the same node
    in the user's graph and in the copy. If normalization fails on an exotic graph, the
    copy is returned as read (with shapes), and detection still runs on it.
    """
    model = ir.from_proto(proto)
    names_by_output = _label_nodes(model, proto)
    if normalize:
        try:
            normalize_ir(model)
        except Exception as e:  # a help for matching, never a reason to fail: detect on the graph as read
            log.warning("graph normalization failed (%s: %s); detecting on the graph as read", type(e).__name__, e)
            model = ir.from_proto(proto)
            names_by_output = _label_nodes(model, proto)
            normalize = False
    if not normalize:
        ShapeInferencePass(check_type=False, strict_mode=False)(model)
    _restore_names(model, names_by_output)
    NameFixPass()(model)
    return model


__all__ = ["ClipToHardSigmoid", "FOLD_OUTPUT_LIMIT", "NORMALIZED_TAG", "node_label", "normalize_ir", "normalized_copy"]
