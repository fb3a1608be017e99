"""Find Squeeze-and-Excitation blocks in any ONNX graph, whatever produced it.

An SE block computes ``y = x * gate(FC2(act(FC1(squeeze(x)))))``. Exporters spell each
piece differently, so matching starts at every ``Mul`` and walks *up* the gate operand:

* scale: ``Mul(x, g)`` or ``Mul(g, x)``;
* gate: ``Sigmoid``, ``HardSigmoid``, or ``Clip(z + a, 0, d) / d`` (also ``* 1/d``);
* FC: ``Gemm``, ``MatMul`` (+ ``Add`` bias) or a 1x1 ``Conv``, weights constant;
* activation: ``Relu``, ``Clip`` (ReLU6), ``LeakyRelu``, ``HardSwish``, ``z * Sigmoid(z)`` (SiLU),
  ``z * HardSigmoid(z)``;
* squeeze: ``GlobalAveragePool``, ``ReduceMean`` over H,W (keepdims 0 or 1), or an
  ``AveragePool`` whose kernel covers the whole map;
* any number of ``Reshape``/``Flatten``/``Squeeze``/``Unsqueeze``/``Identity`` between the
  pieces, including reshapes fed by ``Shape -> Gather -> Unsqueeze -> Concat`` chains.

The pattern has many equivalent spellings and must explain *why* a near match failed, so
the walk is written here on top of onnx-ir's graph (uses/producers), instead of one
rewrite-rule pattern per spelling.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

SHAPE_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")
POSITIONS = ("before_residual_add", "before_projection_conv", "other")


@dataclass(frozen=True)
class SEBlock:
    """One SE block as found in an ONNX graph (names refer to that graph)."""

    input: str
    output: str
    channels: int
    reduced_channels: int
    ratio: float
    squeeze: str
    excitation: str
    activation: str
    gate: str
    position: str
    node_names: tuple[str, ...]
    excitation_nodes: tuple[str, ...]
    scale_node: str
    gate_output: str
    has_bias: bool = True
    shape_ops: int = 0
    input_producer: str | None = None
    input_shared: bool = False
    gate_expanded: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["node_names"] = list(self.node_names)
        d["excitation_nodes"] = list(self.excitation_nodes)
        return d


class NoMatch(Exception):
    """Raised inside the matcher; ``stage`` says how far the match got."""

    def __init__(self, reason: str, stage: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.stage = stage


@dataclass
class FC:
    """A fully connected layer normalised to ``out = W @ in + b`` with ``W`` of shape (O, I)."""

    kind: str
    input: Any  # ir.Value
    weight: np.ndarray
    bias: np.ndarray | None
    nodes: list


@dataclass
class Match:
    """Internal match with onnx-ir handles, used by the rewrite passes."""

    scale: Any  # ir.Node (Mul)
    x: Any  # ir.Value scaled by the gate
    gate_value: Any  # ir.Value: the Mul operand carrying the gate
    squeeze: Any  # ir.Node, or None when a 1x1 map needs no pooling
    squeeze_kind: str
    fc1: FC
    fc2: FC
    act: tuple  # (kind, params dict)
    gate: tuple  # (kind, params dict)
    nodes: list  # every node of the block except the scale Mul
    shape_ops: int = 0
    expand: Any = None  # the Resize that expands the gate to N,C,H,W (expand-gate pass), if any
    block: SEBlock | None = field(default=None)


# --------------------------------------------------------------------------- helpers


def _const(value) -> np.ndarray | None:
    import onnx_ir as ir

    if value is None:
        return None
    try:
        t = ir.convenience.get_const_tensor(value)
    except ValueError:
        return None
    return None if t is None else np.asarray(t.numpy())


def _attr(node, name: str, default=None):
    a = node.attributes.get(name)
    return default if a is None else a.value


def _producer(value):
    return None if value is None else value.producer()


def _skip_shape_ops(value, nodes: list) -> Any:
    """Walk up through reshape-like ops, collecting them; return the first real value."""
    n = _producer(value)
    while n is not None and n.op_type in SHAPE_OPS and n.domain == "":
        nodes.append(n)
        value = n.inputs[0]
        n = _producer(value)
    return value


def _is_scalar(arr: np.ndarray | None, target: float, tol: float = 1e-6) -> bool:
    return arr is not None and arr.size == 1 and abs(float(arr.reshape(())) - target) <= tol * max(1.0, abs(target))


def _clip_bounds(node) -> tuple[float | None, float | None]:
    if len(node.inputs) > 1 or "min" not in node.attributes and "max" not in node.attributes:
        lo = _const(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] is not None else None
        hi = _const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None else None
        if (len(node.inputs) > 1 and node.inputs[1] is not None and lo is None) or (
                len(node.inputs) > 2 and node.inputs[2] is not None and hi is None):
            raise NoMatch(f"Clip {node.name} has non-constant bounds", 1)
        return (None if lo is None else float(lo.reshape(()))), (None if hi is None else float(hi.reshape(())))
    return _attr(node, "min"), _attr(node, "max")


def _shape(value) -> list | None:
    s = getattr(value, "shape", None)
    if s is None:
        return None
    return [d if isinstance(d, int) else None for d in s]


# --------------------------------------------------------------------------- pieces


def _gate_expansion(g):
    """A nearest-neighbour Resize that expands an N,C,1,1 gate to the full map (see expand-gate)."""
    n = _producer(g)
    if n is None or n.op_type != "Resize" or n.domain != "":
        return None
    mode = _attr(n, "mode", "nearest")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    src = _shape(n.inputs[0])
    if mode != "nearest" or src is None or len(src) != 4 or src[2:] != [1, 1]:
        return None
    return n


def _parse_gate(g, nodes: list):
    """Return (pre-gate value, (kind, params)) or None when ``g`` is no gate."""
    n = _producer(g)
    if n is None or n.domain != "":
        return None
    if n.op_type == "Sigmoid":
        nodes.append(n)
        return n.inputs[0], ("sigmoid", {})
    if n.op_type == "HardSigmoid":
        nodes.append(n)
        return n.inputs[0], ("hardsigmoid", {"alpha": float(_attr(n, "alpha", 0.2)), "beta": float(_attr(n, "beta", 0.5))})
    if n.op_type in ("Div", "Mul"):
        # hard-sigmoid spelled Clip(z + a, 0, d) / d   or   Clip(z + a, 0, d) * (1/d)
        for ci in (0, 1) if n.op_type == "Mul" else (0,):
            clip_v, k_v = n.inputs[ci], n.inputs[1 - ci]
            k = _const(k_v)
            c = _producer(clip_v)
            if k is None or k.size != 1 or c is None or c.op_type != "Clip":
                continue
            d = float(k.reshape(())) if n.op_type == "Div" else (1.0 / float(k.reshape(())) if float(k.reshape(())) else 0.0)
            if d <= 0:
                continue
            try:
                lo, hi = _clip_bounds(c)
            except NoMatch:
                return None
            if lo is None or hi is None or abs(lo) > 1e-9 or abs(hi - d) > 1e-6 * d:
                return None
            add = _producer(c.inputs[0])
            if add is None or add.op_type not in ("Add", "Sub"):
                return None
            for ai in (0, 1) if add.op_type == "Add" else (1,):
                a = _const(add.inputs[ai])
                if a is not None and a.size == 1:
                    off = float(a.reshape(())) * (1.0 if add.op_type == "Add" else -1.0)
                    nodes.extend([n, c, add])
                    return add.inputs[1 - ai], ("hardsigmoid", {"alpha": 1.0 / d, "beta": off / d})
    return None


def _parse_fc(value, stage: int) -> FC:
    n = _producer(value)
    if n is None:
        raise NoMatch(f"{value.name} is not produced by a Gemm, MatMul or 1x1 Conv", stage)
    op = n.op_type
    if op == "Conv":
        w = _const(n.inputs[1])
        if w is None:
            raise NoMatch(f"excitation Conv {n.name} has non-constant weights", stage)
        if w.ndim != 4 or w.shape[2:] != (1, 1):
            raise NoMatch(f"excitation Conv {n.name} is not 1x1 (kernel {tuple(w.shape[2:])})", stage)
        if int(_attr(n, "group", 1)) != 1:
            raise NoMatch(f"excitation Conv {n.name} is grouped (group={_attr(n, 'group')})", stage)
        pads = _attr(n, "pads", None)
        if pads is not None and any(int(p) != 0 for p in pads):
            raise NoMatch(f"excitation Conv {n.name} pads its 1x1 input", stage)
        if _attr(n, "auto_pad", "NOTSET") not in ("NOTSET", "VALID", b"NOTSET", b"VALID"):
            raise NoMatch(f"excitation Conv {n.name} uses auto_pad", stage)
        b = None
        if len(n.inputs) > 2 and n.inputs[2] is not None:
            b = _const(n.inputs[2])
            if b is None:
                raise NoMatch(f"excitation Conv {n.name} has a non-constant bias", stage)
        return FC("conv", n.inputs[0], w[:, :, 0, 0], b, [n])
    if op == "Gemm":
        w = _const(n.inputs[1])
        if w is None:
            raise NoMatch(f"excitation Gemm {n.name} has non-constant weights", stage)
        if int(_attr(n, "transA", 0)) != 0:
            raise NoMatch(f"excitation Gemm {n.name} transposes its input", stage)
        if w.ndim != 2:
            raise NoMatch(f"excitation Gemm {n.name} weight is not 2-D", stage)
        w = w if int(_attr(n, "transB", 0)) else w.T
        w = w * np.asarray(_attr(n, "alpha", 1.0), dtype=w.dtype)
        b = None
        if len(n.inputs) > 2 and n.inputs[2] is not None:
            c = _const(n.inputs[2])
            if c is None:
                raise NoMatch(f"excitation Gemm {n.name} has a non-constant bias", stage)
            try:
                b = (np.broadcast_to(c, (1, w.shape[0])).reshape(-1) * np.asarray(_attr(n, "beta", 1.0), dtype=c.dtype))
            except ValueError:
                raise NoMatch(f"excitation Gemm {n.name} bias shape {c.shape} is not per-channel", stage) from None
        return FC("gemm", n.inputs[0], w, b, [n])
    if op in ("Add", "MatMul"):
        bias = None
        nodes = []
        mm = n
        if op == "Add":
            for i in (0, 1):
                p = _producer(n.inputs[i])
                c = _const(n.inputs[1 - i])
                if p is not None and p.op_type == "MatMul" and c is not None:
                    mm, bias = p, c
                    break
            else:
                raise NoMatch(f"{n.name} is an Add that is not a MatMul bias", stage)
            nodes.append(n)
            if bias.ndim > 2 or (bias.ndim == 2 and bias.shape[0] != 1):
                raise NoMatch(f"MatMul bias {n.name} is not per-channel (shape {bias.shape})", stage)
        w = _const(mm.inputs[1])
        if w is None:
            raise NoMatch(f"excitation MatMul {mm.name} has non-constant weights", stage)
        if w.ndim != 2:
            raise NoMatch(f"excitation MatMul {mm.name} weight is not 2-D", stage)
        if bias is not None:
            try:
                bias = np.broadcast_to(bias, (1, w.shape[1])).reshape(-1)
            except ValueError:
                raise NoMatch(f"MatMul bias {n.name} does not match {w.shape[1]} channels", stage) from None
        nodes.insert(0, mm)
        return FC("matmul", mm.inputs[0], w.T, bias, nodes)
    raise NoMatch(f"{value.name} is produced by {op}, not a Gemm, MatMul or 1x1 Conv", stage)


def _parse_act(value, nodes: list, stage: int):
    n = _producer(value)
    if n is None or n.domain != "":
        raise NoMatch("no activation between the two excitation layers", stage)
    op = n.op_type
    if op == "Relu":
        nodes.append(n)
        return n.inputs[0], ("relu", {})
    if op == "LeakyRelu":
        nodes.append(n)
        return n.inputs[0], ("leakyrelu", {"alpha": float(_attr(n, "alpha", 0.01))})
    if op == "HardSwish":
        nodes.append(n)
        return n.inputs[0], ("hardswish", {})
    if op in ("Swish", "Silu"):
        nodes.append(n)
        return n.inputs[0], ("silu", {})
    if op == "Clip":
        lo, hi = _clip_bounds(n)
        nodes.append(n)
        kind = "relu6" if lo == 0.0 and hi == 6.0 else "clip"
        return n.inputs[0], (kind, {"min": lo, "max": hi})
    if op == "Mul":
        for i in (0, 1):
            p = _producer(n.inputs[1 - i])
            if p is not None and p.op_type in ("Sigmoid", "HardSigmoid") and p.inputs[0] is n.inputs[i]:
                nodes.extend([n, p])
                if p.op_type == "Sigmoid":
                    return n.inputs[i], ("silu", {})
                a, b = float(_attr(p, "alpha", 0.2)), float(_attr(p, "beta", 0.5))
                if abs(a - 1 / 6) < 1e-6 and abs(b - 0.5) < 1e-6:
                    return n.inputs[i], ("hardswish", {})
                return n.inputs[i], ("x*hardsigmoid", {"alpha": a, "beta": b})
    raise NoMatch(f"{n.name} ({op}) is not a supported activation between the excitation layers", stage)


def _parse_squeeze(value, nodes: list, stage: int):
    n = _producer(value)
    if n is None:
        raise NoMatch(f"{value.name} is not produced by a global average pool", stage)
    op = n.op_type
    x = n.inputs[0]
    if op == "GlobalAveragePool":
        nodes.append(n)
        return x, n, op
    if op == "ReduceMean":
        axes = _attr(n, "axes", None)
        if axes is None and len(n.inputs) > 1 and n.inputs[1] is not None:
            a = _const(n.inputs[1])
            if a is None:
                raise NoMatch(f"ReduceMean {n.name} has non-constant axes", stage)
            axes = a.reshape(-1).tolist()
        if not axes:
            raise NoMatch(f"ReduceMean {n.name} reduces over all axes", stage)
        shape = _shape(x)
        rank = len(shape) if shape is not None else None
        if any(int(a) < 0 for a in axes):
            if rank is None:
                raise NoMatch(f"ReduceMean {n.name} uses negative axes on a tensor of unknown rank", stage)
            axes = [int(a) % rank for a in axes]
        if sorted(int(a) for a in axes) != [2, 3] or (rank is not None and rank != 4):
            raise NoMatch(f"ReduceMean {n.name} reduces axes {sorted(int(a) for a in axes)}, not H,W (2,3)", stage)
        nodes.append(n)
        return x, n, op
    if op == "AveragePool":
        shape = _shape(x)
        k = list(_attr(n, "kernel_shape", []))
        pads = _attr(n, "pads", None)
        if pads is not None and any(int(p) != 0 for p in pads):
            raise NoMatch(f"AveragePool {n.name} pads its input", stage)
        if shape is None or len(shape) != 4 or shape[2] is None or shape[3] is None:
            raise NoMatch(f"AveragePool {n.name}: the spatial size is unknown, cannot prove the kernel covers the map", stage)
        if [int(v) for v in k] != shape[2:]:
            raise NoMatch(f"AveragePool {n.name} kernel {k} does not cover the {shape[2]}x{shape[3]} map", stage)
        if _attr(n, "auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            raise NoMatch(f"AveragePool {n.name} uses auto_pad", stage)
        nodes.append(n)
        return x, n, op
    if op in ("Conv", "BatchNormalization"):
        return _parse_hoisted(value, nodes, stage)
    raise NoMatch(f"{value.name} is produced by {op}, not a global average pool", stage)


def _same_op(a, b) -> bool:
    if a.op_type != b.op_type or len(a.inputs) != len(b.inputs):
        return False
    for va, vb in zip(a.inputs[1:], b.inputs[1:]):
        if va is vb:
            continue
        ca, cb = _const(va), _const(vb)
        if ca is None or cb is None or ca.shape != cb.shape or not np.array_equal(ca, cb):
            return False
    attrs_a = {k: v.value for k, v in a.attributes.items()}
    attrs_b = {k: v.value for k, v in b.attributes.items()}
    return attrs_a == attrs_b


def _parse_hoisted(value, nodes: list, stage: int):
    """A squeeze moved above a pointwise producer: Conv/BN(GAP(u)) next to x = Conv/BN(u)."""
    chain = []
    n = _producer(value)
    while n is not None and n.op_type in ("Conv", "BatchNormalization"):
        chain.insert(0, n)
        n = _producer(n.inputs[0])
    if n is None or n.op_type != "GlobalAveragePool":
        raise NoMatch(f"{value.name} is not a global average pool (nor one hoisted above a pointwise conv)", stage)
    u = n.inputs[0]
    v = u
    for op in chain:  # the SE input must be the same chain applied to u at full resolution
        users = [c for c in v.consumers() if c is not op and _same_op(c, op)]
        if not users:
            raise NoMatch(f"hoisted squeeze {op.name} has no full-resolution twin", stage)
        v = users[0].outputs[0]
    nodes.extend([n, *chain])
    return v, n, "GlobalAveragePool(hoisted)"


def _position(scale_node) -> str:
    out = scale_node.outputs[0]
    consumers = out.consumers()
    if len(consumers) == 1:
        c = consumers[0]
        if c.op_type in ("Add", "Sum"):
            return "before_residual_add"
        if c.op_type == "Conv":
            w = _const(c.inputs[1]) if len(c.inputs) > 1 else None
            if w is None or (w.ndim == 4 and w.shape[2:] == (1, 1)):
                return "before_projection_conv"
    return "other"


def match_scale(mul) -> Match:
    """Try to read ``mul`` as the scale of an SE block; raise NoMatch with the reason."""
    if mul.op_type != "Mul" or mul.domain != "" or len(mul.inputs) != 2:
        raise NoMatch("not a Mul", 0)
    best: NoMatch | None = None
    for xi in (0, 1):
        x, g = mul.inputs[xi], mul.inputs[1 - xi]
        try:
            return _match_order(mul, x, g)
        except NoMatch as e:
            if best is None or e.stage > best.stage:
                best = e
    assert best is not None
    raise best


def _match_order(mul, x, g) -> Match:
    nodes: list = []
    shape_ops: list = []
    expand = _gate_expansion(g)
    g_core = expand.inputs[0] if expand is not None else g
    pre_gate = _skip_shape_ops(g_core, shape_ops)
    gate_chain = list(shape_ops) + ([expand] if expand is not None else [])
    parsed = _parse_gate(pre_gate, nodes)
    if parsed is None:
        raise NoMatch("the other Mul operand is not a Sigmoid/HardSigmoid gate", 0)
    z, gate = parsed
    if z is x:
        raise NoMatch("x * gate(x) is an activation (SiLU / hard-swish), not an SE scale", 0)
    gate_node = nodes[0]
    gate_chain.append(gate_node)
    z = _skip_shape_ops(z, shape_ops)
    fc2 = _parse_fc(z, 2)
    nodes.extend(fc2.nodes)
    h = _skip_shape_ops(fc2.input, shape_ops)
    h, act = _parse_act(h, nodes, 3)
    h = _skip_shape_ops(h, shape_ops)
    fc1 = _parse_fc(h, 4)
    nodes.extend(fc1.nodes)
    s = _skip_shape_ops(fc1.input, shape_ops)
    if s is x:
        # On a 1x1 map the mean is the identity and simplifiers drop it: still an SE block.
        xs = _shape(x)
        if xs is None or len(xs) != 4 or xs[2:] != [1, 1]:
            raise NoMatch(f"the excitation reads {x.name} without pooling it, and its map is not known to be 1x1", 5)
        sx, squeeze, squeeze_kind = x, None, "none (1x1 map)"
    else:
        sx, squeeze, squeeze_kind = _parse_squeeze(s, nodes, 5)
    if sx is not x:
        raise NoMatch(f"the squeeze reads {sx.name}, but the Mul scales {x.name}", 6)
    c, cr = fc1.weight.shape[1], fc1.weight.shape[0]
    if fc2.weight.shape != (c, cr):
        raise NoMatch(f"excitation shapes do not chain: FC1 {c}->{cr}, FC2 {fc2.weight.shape[1]}->{fc2.weight.shape[0]}", 6)
    xs = _shape(x)
    if xs is not None and (len(xs) != 4 or (xs[1] is not None and xs[1] != c)):
        raise NoMatch(f"scaled tensor {x.name} has shape {xs}, the gate has {c} channels", 6)
    gs = _shape(g_core)
    if gs is not None and (len(gs) != 4 or any(d is not None and d != 1 for d in gs[2:])
                           or (gs[1] is not None and gs[1] != c)):
        raise NoMatch(f"the gate {g_core.name} has shape {gs}: it does not broadcast per channel over N,C,1,1", 6)
    all_nodes = nodes + shape_ops + ([expand] if expand is not None else [])
    block_set = set(all_nodes) | {mul}
    graph_outputs = set(mul.graph.outputs) if mul.graph is not None else set()
    what = {id(squeeze): "squeeze"}
    what.update({id(n): "gate" for n in gate_chain})
    for n in all_nodes:
        for out in n.outputs:
            users = out.consumers()
            outside = [u for u in users if u not in block_set]
            if outside or out in graph_outputs:
                kind = what.get(id(n), f"{n.op_type} {n.name}")
                extra = " and is a graph output" if out in graph_outputs else ""
                raise NoMatch(f"{kind} output {out.name} has {len(users)} consumers{extra}; the block is not self-contained", 7)
    return Match(mul, x, g_core, squeeze, squeeze_kind, fc1, fc2, act, gate, all_nodes, len(shape_ops), expand=expand)


def _block_of(m: Match) -> SEBlock:
    c, cr = int(m.fc1.weight.shape[1]), int(m.fc1.weight.shape[0])
    order = {id(n): i for i, n in enumerate(m.scale.graph)} if m.scale.graph is not None else {}
    exc = sorted(m.nodes, key=lambda n: order.get(id(n), 0))
    prod = m.x.producer()
    inside = set(m.nodes) | {m.scale}
    shared = [u for u in m.x.consumers() if u not in inside]
    act_kind, act_params = m.act
    act = act_kind if act_kind not in ("clip",) else f"clip({act_params['min']},{act_params['max']})"
    return SEBlock(
        input=m.x.name or "",
        output=m.scale.outputs[0].name or "",
        channels=c,
        reduced_channels=cr,
        ratio=round(c / cr, 4) if cr else float("inf"),
        squeeze=m.squeeze_kind,
        excitation=m.fc1.kind,
        activation=act,
        gate=m.gate[0],
        position=_position(m.scale),
        node_names=tuple(n.name or "" for n in exc) + (m.scale.name or "",),
        excitation_nodes=tuple(n.name or "" for n in exc),
        scale_node=m.scale.name or "",
        gate_output=m.gate_value.name or "",
        has_bias=m.fc1.bias is not None and m.fc2.bias is not None,
        shape_ops=m.shape_ops,
        input_producer=prod.op_type if prod is not None else None,
        input_shared=bool(shared),
        gate_expanded=m.expand is not None,
    )


# --------------------------------------------------------------------------- public API


def to_ir(model):
    """onnx.ModelProto -> onnx_ir.Model with inferred shapes and every node named."""
    import onnx
    import onnx_ir as ir
    from onnx_ir.passes.common import NameFixPass

    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:
        # Stale or inconsistent value_info (from another tool) can stop inference; shapes
        # are a help, not a requirement, so retry from the inputs alone before giving up.
        try:
            bare = onnx.ModelProto()
            bare.CopyFrom(model)
            del bare.graph.value_info[:]
            model = onnx.shape_inference.infer_shapes(bare)
        except Exception:
            pass
    irm = ir.from_proto(model)
    NameFixPass()(irm)
    return irm


def find_matches(irm) -> tuple[list[Match], list[dict]]:
    """All SE matches in an onnx-ir model, plus the near misses with their reasons."""
    matches, misses = [], []
    for node in list(irm.graph):
        if node.op_type != "Mul" or node.domain != "":
            continue
        try:
            m = match_scale(node)
        except NoMatch as e:
            if e.stage >= 2:
                misses.append({"scale_node": node.name, "output": node.outputs[0].name, "stage": e.stage,
                               "reason": e.reason})
            continue
        m.block = _block_of(m)
        matches.append(m)
    return matches, misses


def find_se_blocks(model) -> list[SEBlock]:
    """Every SE block in ``model`` (an onnx.ModelProto), in graph order."""
    matches, _ = find_matches(to_ir(model))
    return [m.block for m in matches]


def explain_near_misses(model) -> list[dict]:
    """Candidates that looked like SE blocks but did not match, each with the reason."""
    _, misses = find_matches(to_ir(model))
    return misses


__all__ = ["SEBlock", "find_se_blocks", "explain_near_misses", "find_matches", "to_ir", "match_scale", "Match", "FC",
           "NoMatch", "POSITIONS"]
