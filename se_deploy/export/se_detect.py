"""Find Squeeze-and-Excitation blocks in any ONNX graph, whatever produced it.

Normalize, then match. Detection runs on a normalized copy of the graph (see
``export/normalize.py``: constants folded, Identity/Cast chains and Constant nodes gone,
``expand_as`` and hard-sigmoid spellings rewritten, dead nodes removed); the user's
ModelProto is never changed. The match then meets one canonical form::

    Mul(x, gate(FC2(act(FC1(squeeze(x))))))          SE                 (Variant.se)
    Mul(x, gate(FC(squeeze(x))))                     effective SE, eSE  (Variant.ese)

plus the spellings normalization cannot remove, each a small branch of the walk below:

* gate: ``Sigmoid`` or ``HardSigmoid`` (``Clip(z + a, 0, d) / d`` arrives as HardSigmoid);
* FC: ``Gemm``, ``MatMul`` (+ ``Add`` bias) or a 1x1 ``Conv``, each with its weight layout;
* activation: ``Relu``, ``Clip`` (ReLU6), ``LeakyRelu``, ``HardSwish``, ``z * Sigmoid(z)``
  (SiLU), ``z * HardSigmoid(z)``;
* squeeze: ``GlobalAveragePool``, ``ReduceMean`` over H,W (keepdims 1, or 0 followed by
  Unsqueeze/Reshape), an ``AveragePool`` whose kernel covers the map, none on a 1x1 map,
  or a pool hoisted above a pointwise conv (the hoist-squeeze pass);
* any number of ``Reshape``/``Flatten``/``Squeeze``/``Unsqueeze`` between the pieces, and the
  ``Shape -> Gather -> Unsqueeze -> Concat`` chains that feed those reshapes when the batch is
  symbolic (also when the chain reads the pooled tensor, as ``y.view(y.size(0), -1)`` does).

The root of every block is one onnxscript rewrite rule, :class:`SEScale`: its pattern is the
scale ``Mul(x, g)`` (``commute=True`` tries both operand orders) and its ``check`` walks up the
gate operand. A walk is used there instead of one pattern per spelling because the spellings
multiply (variable-length reshape chains, four FC layouts, hoisted squeezes, shape-dependent
conditions) and because a near miss must say *where* it failed; the rewriter's
``MatchingTracer`` carries that reason and the partial match out of ``check`` for
``fuse --explain``. The SE passes subclass the rule and add ``rewrite``.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
from onnxscript.rewriter import (MatchingTracer, MatchResult, MatchStatus, RewriteRule, RewriteRuleClassBase,
                                 RewriteRuleSet)

from se_deploy.export.ir_helpers import attr, const_array, producer, static_shape
from se_deploy.export.normalize import node_label, normalized_copy

#: Reshape-like ops that may sit between the pieces of a block.
SHAPE_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")
#: Ops that compute a reshape's shape input (``Shape -> Gather -> Unsqueeze -> Concat``).
SHAPE_COMPUTE_OPS = ("Shape", "Size", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast", "Identity",
                     "Constant", "Reshape")


# --------------------------------------------------------------------------- kinds


class _Kind(str, enum.Enum):
    """A closed set of names; compares equal to its JSON string."""

    def __str__(self) -> str:
        return self.value


class Variant(_Kind):
    se = "se"  # squeeze -> FC -> act -> FC -> gate -> scale
    ese = "ese"  # effective SE (VoVNetV2): squeeze -> one C->C FC -> gate -> scale


class SqueezeKind(_Kind):
    global_average_pool = "GlobalAveragePool"
    hoisted = "GlobalAveragePool(hoisted)"
    reduce_mean = "ReduceMean"
    average_pool = "AveragePool"
    none = "none (1x1 map)"


class FCKind(_Kind):
    conv = "conv"
    gemm = "gemm"
    matmul = "matmul"


class ActKind(_Kind):
    relu = "relu"
    relu6 = "relu6"
    clip = "clip"
    leakyrelu = "leakyrelu"
    silu = "silu"
    hardswish = "hardswish"
    x_hardsigmoid = "x*hardsigmoid"
    none = "none"  # eSE: one FC, nothing between


class GateKind(_Kind):
    sigmoid = "sigmoid"
    hardsigmoid = "hardsigmoid"


class Position(_Kind):
    before_residual_add = "before_residual_add"
    before_projection_conv = "before_projection_conv"  # MobileNetV2/V3, EfficientNet: no residual after SE
    other = "other"


POSITIONS = tuple(p.value for p in Position)


@dataclass(frozen=True)
class Activation:
    """The activation between the two FCs, with its parameters."""

    kind: ActKind
    alpha: float | None = None  # LeakyRelu slope; x*HardSigmoid alpha
    beta: float | None = None  # x*HardSigmoid beta
    min: float | None = None  # Clip bounds
    max: float | None = None

    def __str__(self) -> str:
        return f"clip({self.min},{self.max})" if self.kind is ActKind.clip else self.kind.value


@dataclass(frozen=True)
class Gate:
    kind: GateKind
    alpha: float = 0.2  # HardSigmoid(alpha * z + beta), ONNX defaults
    beta: float = 0.5


@dataclass(frozen=True)
class SEBlock:
    """One SE block, named in the terms of the graph it was found in.

    ``node_names`` lists every node of the block in graph order (the scale Mul last), including
    the Identity/Constant/shape nodes normalization folded away; unnamed nodes carry the label
    ``<op_type>_<index>``. ``node_outputs`` gives each node's first output tensor: identify nodes
    by those, since names may be empty or duplicated.
    """

    input: str
    output: str
    channels: int
    reduced_channels: int
    ratio: float
    squeeze: SqueezeKind
    excitation: FCKind
    activation: Activation
    gate: GateKind
    position: Position
    node_names: tuple[str, ...]
    excitation_nodes: tuple[str, ...]
    scale_node: str
    gate_output: str
    has_bias: bool = True
    shape_ops: int = 0
    input_producer: str | None = None
    input_shared: bool = False
    gate_expanded: bool = False
    variant: Variant = Variant.se
    input_activation: ActKind | None = None  # what produces x: SiLU in EfficientNet, HardSwish in MobileNetV3
    node_outputs: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("squeeze", "excitation", "gate", "position", "variant", "input_activation"):
            d[k] = None if d[k] is None else str(d[k])
        d["activation"] = str(self.activation)
        for k in ("node_names", "excitation_nodes", "node_outputs"):
            d[k] = list(d[k])
        return d


class NoMatch(Exception):
    """Raised inside the walk; ``partial`` holds the block nodes recognised before the failure."""

    def __init__(self, reason: str, partial: list[ir.Node] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.partial = list(partial or [])


@dataclass
class FC:
    """A fully connected layer normalised to ``out = W @ in + b`` with ``W`` of shape (O, I)."""

    kind: FCKind
    input: ir.Value
    weight: np.ndarray
    bias: np.ndarray | None
    nodes: list[ir.Node]


@dataclass
class Match:
    """A block with onnx-ir handles into the graph it was found in (the passes edit through these)."""

    scale: ir.Node  # the Mul
    x: ir.Value  # the scaled tensor
    gate_value: ir.Value  # the Mul operand carrying the gate
    squeeze: ir.Node | None  # None when a 1x1 map needs no pooling
    squeeze_kind: SqueezeKind
    fc1: FC  # the only FC of an eSE block
    fc2: FC | None  # None for eSE
    act: Activation
    gate: Gate
    nodes: list[ir.Node]  # every node of the block except the scale Mul
    shape_ops: int = 0
    expand: ir.Node | None = None  # the Resize that expands the gate to N,C,H,W (expand-gate pass), if any
    block: SEBlock | None = field(default=None)

    @property
    def variant(self) -> Variant:
        return Variant.se if self.fc2 is not None else Variant.ese

    @property
    def squeeze_input(self) -> ir.Value:
        """What the squeeze pools: ``x``, or the producer's input for a hoisted squeeze."""
        return self.squeeze.inputs[0] if self.squeeze is not None else self.x


# --------------------------------------------------------------------------- the walk


def _skip_shape_ops(value: ir.Value, nodes: list) -> ir.Value:
    """Walk up through reshape-like ops, collecting them; return the first real value."""
    n = producer(value)
    while n is not None and n.op_type in SHAPE_OPS and n.domain == "":
        nodes.append(n)
        value = n.inputs[0]
        n = producer(value)
    return value


def _clip_bounds(node: ir.Node) -> tuple[float | None, float | None] | None:
    """Clip's (min, max), from inputs (opset >= 11) or attributes; None when not constant."""
    if "min" in node.attributes or "max" in node.attributes:
        return attr(node, "min"), attr(node, "max")
    bounds = []
    for i in (1, 2):
        v = node.inputs[i] if len(node.inputs) > i else None
        if v is None:
            bounds.append(None)
            continue
        c = const_array(v)
        if c is None or c.size != 1:
            return None
        bounds.append(float(c.reshape(())))
    return bounds[0], bounds[1]


def _gate_expansion(g: ir.Value) -> ir.Node | None:
    """A nearest-neighbour Resize that expands an N,C,1,1 gate to the full map (see expand-gate)."""
    n = producer(g)
    if n is None or n.op_type != "Resize" or n.domain != "":
        return None
    src = static_shape(n.inputs[0])
    if attr(n, "mode", "nearest") != "nearest" or src is None or len(src) != 4 or src[2:] != [1, 1]:
        return None
    return n


def _parse_gate(g: ir.Value) -> tuple[ir.Node, Gate] | None:
    n = producer(g)
    if n is None or n.domain != "":
        return None
    if n.op_type == "Sigmoid":
        return n, Gate(GateKind.sigmoid)
    if n.op_type == "HardSigmoid":
        return n, Gate(GateKind.hardsigmoid, float(attr(n, "alpha", 0.2)), float(attr(n, "beta", 0.5)))
    return None


def _parse_fc(value: ir.Value, partial: list) -> FC:
    n = producer(value)
    if n is None:
        raise NoMatch(f"{value.name} is not produced by a Gemm, MatMul or 1x1 Conv", partial)

    def fail(reason: str):
        return NoMatch(reason, partial + [n])

    op = n.op_type
    if op == "Conv":
        w = const_array(n.inputs[1])
        if w is None:
            raise fail(f"excitation Conv {n.name} has non-constant weights")
        if w.ndim != 4 or w.shape[2:] != (1, 1):
            raise fail(f"excitation Conv {n.name} is not 1x1 (kernel {tuple(w.shape[2:])})")
        if int(attr(n, "group", 1)) != 1:
            raise fail(f"excitation Conv {n.name} is grouped (group={attr(n, 'group')})")
        if any(int(p) != 0 for p in attr(n, "pads", None) or ()):
            raise fail(f"excitation Conv {n.name} pads its 1x1 input")
        if attr(n, "auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            raise fail(f"excitation Conv {n.name} uses auto_pad")
        b = None
        if len(n.inputs) > 2 and n.inputs[2] is not None:
            b = const_array(n.inputs[2])
            if b is None:
                raise fail(f"excitation Conv {n.name} has a non-constant bias")
        return FC(FCKind.conv, n.inputs[0], w[:, :, 0, 0], b, [n])
    if op == "Gemm":
        w = const_array(n.inputs[1])
        if w is None:
            raise fail(f"excitation Gemm {n.name} has non-constant weights")
        if int(attr(n, "transA", 0)) != 0:
            raise fail(f"excitation Gemm {n.name} transposes its input")
        if w.ndim != 2:
            raise fail(f"excitation Gemm {n.name} weight is not 2-D")
        w = w if int(attr(n, "transB", 0)) else w.T
        w = w * np.asarray(attr(n, "alpha", 1.0), dtype=w.dtype)
        b = None
        if len(n.inputs) > 2 and n.inputs[2] is not None:
            c = const_array(n.inputs[2])
            if c is None:
                raise fail(f"excitation Gemm {n.name} has a non-constant bias")
            try:
                b = np.broadcast_to(c, (1, w.shape[0])).reshape(-1) * np.asarray(attr(n, "beta", 1.0), dtype=c.dtype)
            except ValueError:
                raise fail(f"excitation Gemm {n.name} bias shape {c.shape} is not per-channel") from None
        return FC(FCKind.gemm, n.inputs[0], w, b, [n])
    if op in ("Add", "MatMul"):
        bias = None
        nodes = []
        mm = n
        if op == "Add":
            for i in (0, 1):
                p = producer(n.inputs[i])
                c = const_array(n.inputs[1 - i])
                if p is not None and p.op_type == "MatMul" and c is not None:
                    mm, bias = p, c
                    break
            else:
                raise fail(f"{n.name} is an Add that is not a MatMul bias")
            nodes.append(n)
            if bias.ndim > 2 or (bias.ndim == 2 and bias.shape[0] != 1):
                raise fail(f"MatMul bias {n.name} is not per-channel (shape {bias.shape})")
        w = const_array(mm.inputs[1])
        if w is None:
            raise fail(f"excitation MatMul {mm.name} has non-constant weights")
        if w.ndim != 2:
            raise fail(f"excitation MatMul {mm.name} weight is not 2-D")
        if bias is not None:
            try:
                bias = np.broadcast_to(bias, (1, w.shape[1])).reshape(-1)
            except ValueError:
                raise fail(f"MatMul bias {n.name} does not match {w.shape[1]} channels") from None
        nodes.insert(0, mm)
        return FC(FCKind.matmul, mm.inputs[0], w.T, bias, nodes)
    raise fail(f"{value.name} is produced by {op}, not a Gemm, MatMul or 1x1 Conv")


def _parse_act(value: ir.Value) -> tuple[list[ir.Node], ir.Value, Activation] | None:
    """(nodes, input, activation) when ``value`` is produced by a supported activation."""
    n = producer(value)
    if n is None or n.domain != "":
        return None
    op = n.op_type
    simple = {"Relu": ActKind.relu, "HardSwish": ActKind.hardswish, "Swish": ActKind.silu, "Silu": ActKind.silu}
    if op in simple:
        return [n], n.inputs[0], Activation(simple[op])
    if op == "LeakyRelu":
        return [n], n.inputs[0], Activation(ActKind.leakyrelu, alpha=float(attr(n, "alpha", 0.01)))
    if op == "Clip":
        bounds = _clip_bounds(n)
        if bounds is None:
            return None
        lo, hi = bounds
        kind = ActKind.relu6 if (lo, hi) == (0.0, 6.0) else ActKind.clip
        return [n], n.inputs[0], Activation(kind, min=lo, max=hi)
    if op == "Mul":
        for i in (0, 1):
            p = producer(n.inputs[1 - i])
            if p is not None and p.op_type in ("Sigmoid", "HardSigmoid") and p.inputs[0] is n.inputs[i]:
                if p.op_type == "Sigmoid":
                    return [n, p], n.inputs[i], Activation(ActKind.silu)
                a, b = float(attr(p, "alpha", 0.2)), float(attr(p, "beta", 0.5))
                if abs(a - 1 / 6) < 1e-6 and abs(b - 0.5) < 1e-6:
                    return [n, p], n.inputs[i], Activation(ActKind.hardswish)
                return [n, p], n.inputs[i], Activation(ActKind.x_hardsigmoid, alpha=a, beta=b)
    return None


_SQUEEZE_OPS = ("GlobalAveragePool", "ReduceMean", "AveragePool")


def _parse_squeeze(value: ir.Value, partial: list) -> tuple[ir.Value, ir.Node, SqueezeKind, list[ir.Node]]:
    """(pooled tensor, pool node, kind, nodes) for the squeeze producing ``value``."""
    n = producer(value)
    if n is None:
        raise NoMatch(f"{value.name} is not produced by a global average pool", partial)

    def fail(reason: str):
        return NoMatch(reason, partial + [n])

    op = n.op_type
    x = n.inputs[0]
    if op == "GlobalAveragePool":
        return x, n, SqueezeKind.global_average_pool, [n]
    if op == "ReduceMean":
        axes = attr(n, "axes", None)
        if axes is None and len(n.inputs) > 1 and n.inputs[1] is not None:
            a = const_array(n.inputs[1])
            if a is None:
                raise fail(f"ReduceMean {n.name} has non-constant axes")
            axes = a.reshape(-1).tolist()
        if not axes:
            raise fail(f"ReduceMean {n.name} reduces over all axes")
        shape = static_shape(x)
        rank = len(shape) if shape is not None else None
        if any(int(a) < 0 for a in axes):
            if rank is None:
                raise fail(f"ReduceMean {n.name} uses negative axes on a tensor of unknown rank")
            axes = [int(a) % rank for a in axes]
        if sorted(int(a) for a in axes) != [2, 3] or (rank is not None and rank != 4):
            raise fail(f"ReduceMean {n.name} reduces axes {sorted(int(a) for a in axes)}, not H,W (2,3)")
        return x, n, SqueezeKind.reduce_mean, [n]
    if op == "AveragePool":
        shape = static_shape(x)
        k = list(attr(n, "kernel_shape", []))
        if any(int(p) != 0 for p in attr(n, "pads", None) or ()):
            raise fail(f"AveragePool {n.name} pads its input")
        if shape is None or len(shape) != 4 or shape[2] is None or shape[3] is None:
            raise fail(f"AveragePool {n.name}: the spatial size is unknown, cannot prove the kernel covers the map")
        if [int(v) for v in k] != shape[2:]:
            raise fail(f"AveragePool {n.name} kernel {k} does not cover the {shape[2]}x{shape[3]} map")
        if attr(n, "auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            raise fail(f"AveragePool {n.name} uses auto_pad")
        return x, n, SqueezeKind.average_pool, [n]
    if op in ("Conv", "BatchNormalization"):
        return _parse_hoisted(value, partial)
    raise fail(f"{value.name} is produced by {op}, not a global average pool")


def _same_op(a: ir.Node, b: ir.Node) -> bool:
    if a.op_type != b.op_type or len(a.inputs) != len(b.inputs):
        return False
    for va, vb in zip(a.inputs[1:], b.inputs[1:]):
        if va is vb:
            continue
        ca, cb = const_array(va), const_array(vb)
        if ca is None or cb is None or ca.shape != cb.shape or not np.array_equal(ca, cb):
            return False
    return {k: v.value for k, v in a.attributes.items()} == {k: v.value for k, v in b.attributes.items()}


def _parse_hoisted(value: ir.Value, partial: list) -> tuple[ir.Value, ir.Node, SqueezeKind, list[ir.Node]]:
    """A squeeze moved above a pointwise producer: Conv/BN(GAP(u)) next to x = Conv/BN(u)."""
    chain = []
    n = producer(value)
    while n is not None and n.op_type in ("Conv", "BatchNormalization"):
        chain.insert(0, n)
        n = producer(n.inputs[0])
    if n is None or n.op_type != "GlobalAveragePool":
        raise NoMatch(f"{value.name} is not a global average pool (nor one hoisted above a pointwise conv)",
                      partial + chain)
    v = n.inputs[0]
    for op in chain:  # the SE input must be the same chain applied to u at full resolution
        users = [c for c in v.consumers() if c is not op and _same_op(c, op)]
        if not users:
            raise NoMatch(f"hoisted squeeze {op.name} has no full-resolution twin", partial + chain)
        v = users[0].outputs[0]
    return v, n, SqueezeKind.hoisted, [n, *chain]


def _position(scale: ir.Node) -> Position:
    consumers = scale.outputs[0].consumers()
    if len(consumers) == 1:
        c = consumers[0]
        if c.op_type in ("Add", "Sum"):
            return Position.before_residual_add
        if c.op_type == "Conv":
            w = const_array(c.inputs[1]) if len(c.inputs) > 1 else None
            if w is None or (w.ndim == 4 and w.shape[2:] == (1, 1)):
                return Position.before_projection_conv
    return Position.other


def _shape_chains(reshapes: list[ir.Node], block: set[ir.Node]) -> list[ir.Node]:
    """The shape computations that feed only the block's reshapes (legacy ``view(b, c)`` chains)."""
    seen: set[ir.Node] = set()
    stack = [v for r in reshapes for v in r.inputs[1:]]
    while stack:
        n = producer(stack.pop())
        if n is None or n in seen or n in block or n.op_type not in SHAPE_COMPUTE_OPS or n.domain != "":
            continue
        seen.add(n)
        if n.op_type not in ("Shape", "Size"):  # Shape reads only the shape of its input
            stack.extend(n.inputs)
    chain: set[ir.Node] = set(seen)
    changed = True
    while changed:  # keep a node only if everything that reads it is in the block or the chain
        changed = False
        for n in list(chain):
            if any(u not in block and u not in chain for o in n.outputs for u in o.consumers()):
                chain.discard(n)
                changed = True
    return [n for n in seen if n in chain]


def walk(mul: ir.Node, x: ir.Value, g: ir.Value) -> Match:
    """Read ``mul = x * g`` as an SE block, walking up ``g``; raise NoMatch with the reason."""
    shape_ops: list[ir.Node] = []
    expand = _gate_expansion(g)
    g_core = expand.inputs[0] if expand is not None else g
    pre_gate = _skip_shape_ops(g_core, shape_ops)
    gate_side = list(shape_ops) + ([expand] if expand is not None else [])
    parsed = _parse_gate(pre_gate)
    if parsed is None:
        raise NoMatch("the other Mul operand is not a Sigmoid/HardSigmoid gate")
    gate_node, gate = parsed
    z = gate_node.inputs[0]
    if z is x:
        raise NoMatch("x * gate(x) is an activation (SiLU / hard-swish), not an SE scale")
    nodes: list[ir.Node] = [gate_node]

    def partial() -> list[ir.Node]:
        return nodes + shape_ops + ([expand] if expand is not None else [])

    last = _parse_fc(_skip_shape_ops(z, shape_ops), partial())
    nodes.extend(last.nodes)
    h = _skip_shape_ops(last.input, shape_ops)
    act_parsed = _parse_act(h) if h is not x else None
    if act_parsed is not None:  # SE: FC1 -> act -> FC2
        act_nodes, h, act = act_parsed
        nodes.extend(act_nodes)
        fc1, fc2 = _parse_fc(_skip_shape_ops(h, shape_ops), partial()), last
        nodes.extend(fc1.nodes)
    else:  # eSE: one FC straight after the squeeze
        n = producer(h)
        if h is not x and (n is None or n.domain != "" or n.op_type not in _SQUEEZE_OPS + ("Conv", "BatchNormalization")):
            what = "a graph input" if n is None else f"{n.name} ({n.op_type})"
            raise NoMatch(f"{what} is neither an activation between two excitation layers nor a squeeze", partial())
        fc1, fc2, act = last, None, Activation(ActKind.none)
    s = _skip_shape_ops(fc1.input, shape_ops)
    if s is x:
        # On a 1x1 map the mean is the identity and simplifiers drop it: still an SE block.
        xs = static_shape(x)
        if xs is None or len(xs) != 4 or xs[2:] != [1, 1]:
            raise NoMatch(f"the excitation reads {x.name} without pooling it, and its map is not known to be 1x1",
                          partial())
        sx, squeeze, squeeze_kind = x, None, SqueezeKind.none
    else:
        sx, squeeze, squeeze_kind, pool_nodes = _parse_squeeze(s, partial())
        nodes.extend(pool_nodes)
    if sx is not x:
        raise NoMatch(f"the squeeze reads {sx.name}, but the Mul scales {x.name}", partial())
    c, cr = fc1.weight.shape[1], fc1.weight.shape[0]
    if fc2 is not None and fc2.weight.shape != (c, cr):
        raise NoMatch(f"excitation shapes do not chain: FC1 {c}->{cr}, FC2 {fc2.weight.shape[1]}->{fc2.weight.shape[0]}",
                      partial())
    if fc2 is None and cr != c:
        raise NoMatch(f"a single excitation layer maps {c}->{cr} channels; an effective SE block maps C->C", partial())
    xs = static_shape(x)
    if xs is not None and (len(xs) != 4 or (xs[1] is not None and xs[1] != c)):
        raise NoMatch(f"scaled tensor {x.name} has shape {xs}, the gate has {c} channels", partial())
    gs = static_shape(g_core)
    if gs is not None and (len(gs) != 4 or any(d is not None and d != 1 for d in gs[2:])
                           or (gs[1] is not None and gs[1] != c)):
        raise NoMatch(f"the gate {g_core.name} has shape {gs}: it does not broadcast per channel over N,C,1,1",
                      partial())
    block_nodes = partial()
    block_set = set(block_nodes) | {mul}
    chains = _shape_chains([n for n in shape_ops if n.op_type == "Reshape"], block_set)
    block_nodes += chains
    block_set |= set(chains)
    graph_outputs = set(mul.graph.outputs) if mul.graph is not None else set()
    what = {id(n): "gate" for n in [gate_node, *gate_side]}
    what[id(squeeze)] = "squeeze"
    for n in block_nodes:
        for out in n.outputs:
            users = out.consumers()
            if any(u not in block_set for u in users) or out in graph_outputs:
                kind = what.get(id(n), f"{n.op_type} {n.name}")
                extra = " and is a graph output" if out in graph_outputs else ""
                count = f"{len(users)} consumer" + ("s" if len(users) != 1 else "")
                raise NoMatch(f"{kind} output {out.name} has {count}{extra}; the block is not self-contained",
                              block_nodes)
    return Match(mul, x, g_core, squeeze, squeeze_kind, fc1, fc2, act, gate, block_nodes, len(shape_ops),
                 expand=expand)


def _input_activation(x: ir.Value) -> ActKind | None:
    parsed = _parse_act(x)
    return parsed[2].kind if parsed is not None else None


def _block_of(m: Match) -> SEBlock:
    """The block in the terms of the graph ``m`` was found in."""
    c, cr = int(m.fc1.weight.shape[1]), int(m.fc1.weight.shape[0])
    order = {id(n): i for i, n in enumerate(m.scale.graph)} if m.scale.graph is not None else {}
    exc = sorted(m.nodes, key=lambda n: order.get(id(n), 0))
    prod = m.x.producer()
    inside = set(m.nodes) | {m.scale}
    bias = m.fc1.bias is not None and (m.fc2 is None or m.fc2.bias is not None)
    return SEBlock(
        input=m.x.name or "",
        output=m.scale.outputs[0].name or "",
        channels=c,
        reduced_channels=cr,
        ratio=round(c / cr, 4) if cr else float("inf"),
        squeeze=m.squeeze_kind,
        excitation=m.fc1.kind,
        activation=m.act,
        gate=m.gate.kind,
        position=_position(m.scale),
        node_names=tuple(n.name or "" for n in exc) + (m.scale.name or "",),
        excitation_nodes=tuple(n.name or "" for n in exc),
        scale_node=m.scale.name or "",
        gate_output=m.gate_value.name or "",
        has_bias=bias,
        shape_ops=m.shape_ops,
        input_producer=prod.op_type if prod is not None else None,
        input_shared=any(u not in inside for u in m.x.consumers()),
        gate_expanded=m.expand is not None,
        variant=m.variant,
        input_activation=_input_activation(m.x),
        node_outputs=tuple(n.outputs[0].name or "" for n in exc) + (m.scale.outputs[0].name or "",),
    )


# --------------------------------------------------------------------------- the rule


class SEScale(RewriteRuleClassBase):
    """The root of every SE block: ``Mul(x, g)``; ``check`` walks up ``g`` (see :func:`walk`).

    Detection only matches (it never rewrites). The SE passes subclass it: ``why_not(m)``
    declines a block with a reason, ``rewrite`` returns the new scale output.
    """

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name or type(self).__name__, remove_nodes=True)
        self.match: Match | None = None  # the block ``check`` accepted last, for ``rewrite``

    def pattern(self, op, x, g):
        return op.Mul(x, g)

    def why_not(self, m: Match) -> str | None:
        return None

    def check(self, context, x: ir.Value, g: ir.Value, **_) -> MatchResult:
        result = MatchResult()
        self.match = None
        try:
            m = walk(context.root, x, g)
        except NoMatch as e:
            return result.fail(e.reason, e.partial or None)
        reason = self.why_not(m)
        if reason:
            return result.fail(reason, m.nodes)
        self.match = m
        return result

    def rewrite(self, op, x, g, **_):
        raise NotImplementedError("SEScale only detects; an SE pass supplies rewrite()")

    def as_rule(self) -> RewriteRule:
        """This instance as a RewriteRule (``RewriteRuleClassBase.rule()`` would build a fresh instance)."""
        return RewriteRule(self.pattern, self.rewrite, self.check, name=self.name, remove_nodes=self.remove_nodes,
                           graph_pre_visitor=self.setup, graph_post_visitor=self.cleanup)

    def variants(self) -> list[RewriteRule]:
        """``Mul(x, g)`` and ``Mul(g, x)``."""
        return list(RewriteRuleSet([self.as_rule()], commute=True).rules)


_DETECT = SEScale()
_DETECT_RULES = _DETECT.variants()


def _try(model: ir.Model, mul: ir.Node) -> tuple[Match | None, NoMatch | None]:
    """Match ``mul`` with both operand orders; the tracer carries a failed check's reason out."""
    best: NoMatch | None = None
    for rule in _DETECT_RULES:
        tracer = MatchingTracer()
        if rule.match(model, mul.graph, mul, check_nodes_are_removable=False, tracer=tracer):
            return _DETECT.match, None
        for info in tracer.best_matches_map.get(rule, ()):
            if info.status is MatchStatus.CONDITION_FAILED:
                r = info.match_result
                sources = [s for s in r.failure_nodes_and_values if isinstance(s, ir.Node)]
                if best is None or len(sources) > len(best.partial):
                    best = NoMatch(r.reason, sources)
    return None, best


def find_matches(model: ir.Model) -> tuple[list[Match], list[dict]]:
    """All SE matches in an onnx-ir model (in its own names), plus the near misses with their reasons.

    A near miss is a Mul whose other operand is an SE gate but whose block did not match;
    ``matched`` lists the nodes recognised before the walk failed.
    """
    matches, misses = [], []
    for node in list(model.graph):
        if node.op_type != "Mul" or node.domain != "" or len(node.inputs) != 2:
            continue
        m, miss = _try(model, node)
        if m is not None:
            m.block = _block_of(m)
            matches.append(m)
        elif miss is not None and miss.partial:
            misses.append({"scale_node": node.name, "output": node.outputs[0].name, "reason": miss.reason,
                           "matched": [n.name for n in miss.partial]})
    return matches, misses


# --------------------------------------------------------------------------- the user's graph


@dataclass
class _UserGraph:
    """The user's graph, read once, to name blocks found in the normalized copy in its own terms."""

    labels: list[str]
    ops: list[str]
    inputs: list[list[str]]
    outputs: list[list[str]]
    producer: dict[str, int]
    consumers: dict[str, list[int]]
    graph_outputs: set[str]

    @classmethod
    def of(cls, proto: onnx.ModelProto) -> _UserGraph:
        g = proto.graph
        producer_of, consumers = {}, {}
        for i, n in enumerate(g.node):
            for o in n.output:
                if o:
                    producer_of[o] = i
            for v in n.input:
                if v:
                    consumers.setdefault(v, []).append(i)
        return cls([node_label(n, i) for i, n in enumerate(g.node)], [n.op_type for n in g.node],
                   [list(n.input) for n in g.node], [list(n.output) for n in g.node], producer_of, consumers,
                   {o.name for o in g.output})


#: Nodes normalization may have folded or rewritten away inside a block: weight routing, shape
#: computations, expand_as, the hard-sigmoid arithmetic.
_FOLDABLE = frozenset(SHAPE_COMPUTE_OPS) | {"Flatten", "Expand", "ConstantOfShape", "Range", "Transpose", "Add",
                                             "Sub", "Mul", "Div", "Clip"}


def _in_user_terms(m: Match, user: _UserGraph) -> SEBlock:
    """``m.block`` renamed to the user's graph, with the nodes normalization folded away put back."""
    b = m.block
    scale_out = m.scale.outputs[0].name
    scale_i = user.producer.get(scale_out)
    if scale_i is None:
        return b
    core = {user.producer[o.name] for n in [*m.nodes, m.scale] for o in n.outputs if o.name in user.producer}
    boundary = {m.x.name, m.squeeze_input.name}
    x_side = [v for v in user.inputs[scale_i] if v in boundary]
    extra: set[int] = set()
    if x_side:  # walk up from the block towards constants and shapes, never past its input
        stack = [v for i in core for v in user.inputs[i] if v not in boundary]
        seen: set[int] = set()
        while stack:
            i = user.producer.get(stack.pop())
            if i is None or i in core or i in seen or user.ops[i] not in _FOLDABLE:
                continue
            seen.add(i)
            if user.ops[i] not in ("Shape", "Size"):
                stack.extend(v for v in user.inputs[i] if v and v not in boundary)
        extra = set(seen)
        changed = True
        while changed:  # keep only nodes whose every reader is in the block
            changed = False
            for i in list(extra):
                outs = user.outputs[i]
                if any(o in user.graph_outputs for o in outs) or any(
                        j not in core and j not in extra for o in outs for j in user.consumers.get(o, ())):
                    extra.discard(i)
                    changed = True
    members = sorted((core | extra) - {scale_i})
    gate_in = [v for v in user.inputs[scale_i] if v not in x_side]
    return replace(b, node_names=tuple(user.labels[i] for i in members) + (user.labels[scale_i],),
                    excitation_nodes=tuple(user.labels[i] for i in members),
                    node_outputs=tuple(user.outputs[i][0] for i in members) + (scale_out,),
                    scale_node=user.labels[scale_i],
                    gate_output=gate_in[0] if len(gate_in) == 1 else b.gate_output)


@dataclass
class Detection:
    """SE blocks and near misses of a user's model, named in that model's terms."""

    blocks: list[SEBlock]
    near_misses: list[dict]


def detect(model: onnx.ModelProto) -> Detection:
    """Normalize a copy of ``model`` and find its SE blocks; ``model`` itself is not modified."""
    irm = normalized_copy(model)
    matches, misses = find_matches(irm)
    user = _UserGraph.of(model)
    label = {o: user.labels[i] for o, i in user.producer.items()}
    for miss in misses:
        miss["scale_node"] = label.get(miss["output"], miss["scale_node"])
    return Detection([_in_user_terms(m, user) for m in matches], misses)


def to_ir(model: onnx.ModelProto) -> ir.Model:
    """onnx.ModelProto -> normalized onnx-ir copy (shapes inferred, every node named) for the SE passes."""
    return normalized_copy(model)


def find_se_blocks(model: onnx.ModelProto) -> list[SEBlock]:
    """Every SE block in ``model`` (an onnx.ModelProto), in graph order, named in its terms."""
    return detect(model).blocks


def explain_near_misses(model: onnx.ModelProto) -> list[dict]:
    """Candidates that looked like SE blocks but did not match, each with the reason."""
    return detect(model).near_misses


__all__ = ["ActKind", "Activation", "Detection", "FC", "FCKind", "Gate", "GateKind", "Match", "NoMatch", "POSITIONS",
           "Position", "SEBlock", "SEScale", "SqueezeKind", "Variant", "detect", "explain_near_misses", "find_matches",
           "find_se_blocks", "to_ir", "walk"]
