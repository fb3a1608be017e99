"""Where Q/DQ goes: the placement rules, one named function each, for the two targets.

onnxruntime's ``quantize_static`` inserts the Q/DQ pairs; this module only decides which nodes
it quantizes and which node inputs must read the float tensor afterwards. Every decision is
recorded with the rule that made it, so the sidecar (and ``se-deploy inspect --qdq``) can say
why a layer is or is not INT8.

Target ``tensorrt`` follows TensorRT's own fusion rules, as NVIDIA ModelOpt 0.47 implements
them (``modelopt.onnx.quantization.int8``), rule by rule:

* :func:`rule_weighted_ops`: Conv, ConvTranspose, Gemm and MatMul with constant weights read
  INT8 data and INT8 per-channel weights.
* :func:`rule_matrix_vector`: a Gemm/MatMul with one output row at batch 1 (a batch-1
  classifier), or fewer than 16 output columns or inner dimensions, stays float: it cannot use
  INT8 tensor cores, and its Q/DQ would only cost time.
* :func:`rule_residual_add`: an Add of two feature maps is quantized, except the input that
  comes straight from a Conv (the *non-residual* input), which stays float so that TensorRT
  fuses the Add into that Conv's epilogue. When both inputs come from Convs, the one farther
  from their lowest common ancestor is the one that fuses.
* :func:`rule_se`: per :class:`~se_deploy.names.SeMode`, the SE squeeze reads the INT8 map and
  writes an INT8 vector, and the scale Mul reads the INT8 map and an INT8 gate; the excitation
  (FCs, activation, gate) stays in the high-precision type (``cheap``), or is INT8 too
  (``all``), or the whole block stays float (``float``).
* :func:`rule_pooling`: MaxPool/AveragePool/GlobalAveragePool read INT8 when their output feeds
  a quantized input (then TensorRT runs them between a DQ and a Q, in INT8).

Everything else (activations, Sigmoid, reshapes, ReduceMean, Concat, element-wise ops with a
constant operand) gets no Q/DQ of its own. Q/DQ goes only on node inputs, one pair per tensor
shared by all its consumers.

Target ``cpu`` keeps what measured fastest on onnxruntime's x86 kernels: every op onnxruntime
quantizes, except the SE excitation (and, in ``float`` mode, the squeeze and the scale).
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from se_deploy.names import QuantTarget, SeMode

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
CONV_OPS = ("Conv", "ConvTranspose")
POOL_OPS = ("MaxPool", "AveragePool", "GlobalAveragePool")
# ops that only move data: a Q/DQ may sit on either side of them
COPY_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Transpose")
# what may sit between a Conv and the Add it fuses into (TensorRT's conv epilogues; ModelOpt's
# get_fusible_backbone patterns without the BatchNormalization-only ones, as exports fold BN)
EPILOGUE_OPS = ("Relu", "BatchNormalization", "Add", "Mul")
MIN_GEMM_DIM = 16  # TensorRT's INT8 GEMM kernels need K and N >= 16 (ModelOpt's _MIN_MATMUL_DIM)

# onnxruntime's per-channel axis for each weighted op (ConvTranspose weights are (Cin, Cout/g, ...))
PER_CHANNEL_AXIS = {"Conv": 0, "ConvTranspose": 1}


@dataclass(frozen=True)
class Decision:
    """One node's placement: quantized or not, by which rule, and why."""

    node: str
    op_type: str
    quantize: bool
    rule: str
    reason: str


@dataclass(frozen=True)
class FloatEdge:
    """A node input that reads the float tensor although the tensor is quantized for other consumers."""

    node: str
    input_index: int
    tensor: str
    rule: str
    reason: str


@dataclass
class Placement:
    """What onnxruntime is asked to quantize, and the edges to restore to float afterwards.

    ``nodes_to_quantize`` None means every node of ``op_types`` (None: every type onnxruntime
    knows) except ``nodes_to_exclude``. ``output_op_types``: op types whose outputs get a Q/DQ
    of their own (None: onnxruntime's default for the target).
    """

    target: str
    se_mode: str
    nodes_to_quantize: tuple[str, ...] | None
    nodes_to_exclude: tuple[str, ...]
    op_types: tuple[str, ...] | None
    output_op_types: tuple[str, ...] | None
    float_edges: tuple[FloatEdge, ...]
    decisions: tuple[Decision, ...]
    all_op_types: tuple[str, ...] = field(default=())

    def outputs_excluded(self) -> list[str] | None:
        """``OpTypesToExcludeOutputQuantization`` for onnxruntime: every op type but ``output_op_types``."""
        if self.output_op_types is None:
            return None
        return sorted(set(self.all_op_types) - set(self.output_op_types))

    def quantized(self) -> list[str]:
        return [d.node for d in self.decisions if d.quantize]

    def by_rule(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for d in self.decisions:
            key = f"{d.rule}:{'int8' if d.quantize else 'float'}"
            counts[key] = counts.get(key, 0) + 1
        for e in self.float_edges:
            counts[f"{e.rule}:float-input"] = counts.get(f"{e.rule}:float-input", 0) + 1
        return dict(sorted(counts.items()))

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "se_mode": self.se_mode, "by_rule": self.by_rule(),
                "decisions": [asdict(d) for d in self.decisions],
                "float_inputs": [asdict(e) for e in self.float_edges]}


# --------------------------------------------------------------------------- ONNX proto helpers


def name_nodes(model) -> int:
    """Give every unnamed node of an onnx.ModelProto a unique name in place; return the count."""
    used = {n.name for n in model.graph.node if n.name}
    named = 0
    for i, node in enumerate(model.graph.node):
        if node.name:
            continue
        base = f"{node.op_type}_{i}"
        name, k = base, 0
        while name in used:
            k += 1
            name = f"{base}_{k}"
        node.name = name
        used.add(name)
        named += 1
    return named


def restore_float_inputs(model, edges) -> int:
    """Make each ``FloatEdge``'s node read the tensor its DequantizeLinear <- QuantizeLinear pair was made from,
    then drop Q/DQ nodes nobody reads any more. Returns the number of inputs restored."""
    producer = {o: n for n in model.graph.node for o in n.output}
    by_name = {n.name: n for n in model.graph.node}
    restored = 0
    for e in edges:
        node = by_name.get(e.node)
        if node is None or e.input_index >= len(node.input):
            continue
        dq = producer.get(node.input[e.input_index])
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if q is None or q.op_type != "QuantizeLinear":
            continue
        node.input[e.input_index] = q.input[0]
        restored += 1
    drop_dead_qdq(model)
    return restored


def drop_dead_qdq(model) -> None:
    """Remove Q/DQ nodes whose outputs nothing reads, then initializers nothing uses."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    used = {i for n in graph.node for i in n.input} | outputs
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)


def drop_unused_opsets(model) -> None:
    """Keep only the opset imports some node uses (onnxruntime's pre-processing adds several)."""
    used = {n.domain or "" for n in model.graph.node}
    for imp in [o for o in model.opset_import if (o.domain or "") not in used and o.domain not in ("", "ai.onnx")]:
        model.opset_import.remove(imp)


# --------------------------------------------------------------------------- graph facts (onnx-ir)


def is_const(value) -> bool:
    """A missing optional input, an initializer, a Constant node's output, or a DequantizeLinear/Cast of one."""
    if value is None:
        return True
    if value.const_value is not None or value.is_initializer():
        return True
    p = value.producer()
    if p is None or p.domain != "":
        return False
    if p.op_type == "Constant":
        return True
    return p.op_type in ("DequantizeLinear", "Cast") and all(is_const(v) for v in p.inputs)


def variable_inputs(node) -> list[tuple[int, Any]]:
    return [(i, v) for i, v in enumerate(node.inputs) if not is_const(v)]


def consumers_through_copies(value) -> list[tuple[Any, int]]:
    """(node, input index) of every real consumer of ``value``, looking through copy ops."""
    out, todo, seen = [], [value], set()
    while todo:
        v = todo.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        for use in v.uses():
            node, idx = use[0], use[1]
            if node.op_type in COPY_OPS and node.domain == "" and idx == 0:
                todo.extend(node.outputs)
            else:
                out.append((node, idx))
    return out


def conv_backbone(value):
    """The Conv whose epilogue computes ``value`` (Conv, then optional bias Add / constant Mul,
    BatchNormalization and a final Relu, looking through copy ops), else None."""
    node = value.producer() if value is not None else None
    stage = 0  # 0: Relu allowed, 1: BatchNormalization allowed, 2: bias/scale allowed
    while node is not None and node.domain == "":
        op = node.op_type
        if op in CONV_OPS:
            return node
        if op in COPY_OPS:
            pass
        elif op == "Relu" and stage == 0:
            stage = 1
        elif op == "BatchNormalization" and stage <= 1:
            stage = 2
        elif op in ("Add", "Mul") and len(variable_inputs(node)) == 1:
            stage = 2
        else:
            return None
        node = variable_inputs(node)[0][1].producer() if variable_inputs(node) else None
    return None


def _ancestor_distances(node) -> dict[int, tuple[int, Any]]:
    """id(ancestor) -> (hops, ancestor) for ``node`` itself (0 hops) and every node above it (BFS)."""
    out = {id(node): (0, node)}
    q = deque([node])
    while q:
        n = q.popleft()
        d = out[id(n)][0]
        for _, v in variable_inputs(n):
            p = v.producer()
            if p is not None and id(p) not in out:
                out[id(p)] = (d + 1, p)
                q.append(p)
    return out


def lowest_common_ancestor(a, b) -> tuple[Any, int, int]:
    """(ancestor, hops from a, hops from b): of the common ancestors, the one closest to ``a``
    (ties: closest to ``b``). (None, 0, 0) when the two share none."""
    da, db = _ancestor_distances(a), _ancestor_distances(b)
    common = [k for k in da if k in db]
    if not common:
        return None, 0, 0
    best = min(common, key=lambda k: (da[k][0], db[k][0]))
    return da[best][1], da[best][0], db[best][0]


@dataclass(frozen=True)
class ResidualAdd:
    """How an Add of two feature maps fuses: ``float_input`` (0 or 1) is the non-residual input,
    None when the Add is not a Conv+residual pattern."""

    float_input: int | None
    reason: str


def classify_add(node) -> ResidualAdd | None:
    """The residual rule for one Add; None when it is not an Add of two variable inputs."""
    if node.op_type != "Add" or node.domain != "" or len(node.inputs) != 2:
        return None
    if any(is_const(v) for v in node.inputs):
        return None
    p0, p1 = (v.producer() for v in node.inputs)
    if p0 is None or p1 is None:
        return ResidualAdd(None, "an input is a graph input")
    b0, b1 = conv_backbone(node.inputs[0]), conv_backbone(node.inputs[1])
    _, d0, d1 = lowest_common_ancestor(p0, p1)
    anc0, anc1 = _ancestor_distances(p0), _ancestor_distances(p1)
    # a Conv fuses the Add only if the other input does not depend on its output (ModelOpt checks
    # only "the common ancestor is the Conv itself"; a Relu after a shared Conv hides that case)
    fusible = [b is not None and id(b) not in (anc1, anc0)[side] for side, b in ((0, b0), (1, b1))]
    if b0 is not None and b1 is not None and b0 is b1:
        return ResidualAdd(None, f"both inputs come from the same Conv {b0.name}")
    if all(fusible):
        side = 0 if d0 > d1 else 1
        return ResidualAdd(side, f"both inputs come from Convs; input {side} ({(b0, b1)[side].name}) is farther "
                                 f"from their common ancestor ({max(d0, d1)} vs {min(d0, d1)} hops) and fuses, "
                                 f"input {1 - side} is the residual")
    for side, b in ((0, b0), (1, b1)):
        if fusible[side]:
            return ResidualAdd(side, f"input {side} comes straight from Conv {b.name} and fuses into its epilogue; "
                                     f"input {1 - side} is the residual")
    for b in (b0, b1):
        if b is not None:
            return ResidualAdd(None, f"the Conv {b.name} also feeds the other input, so the Add cannot fuse into it")
    return ResidualAdd(None, "neither input comes from a Conv")


def _rows_and_dims(node) -> tuple[int | None, int | None, int | None]:
    """(output rows at batch 1, N, K) of a Gemm/MatMul from inferred shapes; symbolic dims count as 1
    (the smallest batch the model accepts). None where unknown."""
    def dims(v):
        if v is None or v.shape is None:
            return None
        return [d if isinstance(d, int) else 1 for d in v.shape]

    a, b = node.inputs[0], node.inputs[1]
    da, db = dims(a), dims(b)
    out = dims(node.outputs[0])
    trans_a = node.op_type == "Gemm" and bool(node.attributes.get("transA") and node.attributes["transA"].value)
    trans_b = node.op_type == "Gemm" and bool(node.attributes.get("transB") and node.attributes["transB"].value)
    rows = n = k = None
    if out is not None and len(out) >= 2:
        rows = 1
        for d in out[:-1]:
            rows *= d
        n = out[-1]
    if da is not None and len(da) >= 1:
        k = da[0] if trans_a else da[-1]
    elif db is not None and len(db) >= 2:
        k = db[-1] if trans_b else db[-2]
    if n is None and db is not None and len(db) >= 2:
        n = db[-2] if trans_b else db[-1]
    return rows, n, k


def matrix_vector_reason(node) -> str | None:
    """Why a Gemm/MatMul is matrix-vector or too small for INT8 tensor cores; None when it is neither."""
    rows, n, k = _rows_and_dims(node)
    if rows == 1:
        return "one output row at batch 1 (matrix-vector)"
    if n is not None and 0 < n < MIN_GEMM_DIM:
        return f"N = {n} < {MIN_GEMM_DIM}"
    if k is not None and 0 < k < MIN_GEMM_DIM:
        return f"K = {k} < {MIN_GEMM_DIM}"
    return None


# --------------------------------------------------------------------------- SE blocks


@dataclass(frozen=True)
class SeNodes:
    """The node names of one SE block, by role."""

    squeeze: str | None
    squeeze_op: str | None
    excitation: tuple[str, ...]  # FCs (with their bias/reshape nodes), activation, gate
    fcs: tuple[str, ...]  # the FC nodes proper (Conv / Gemm / MatMul)
    scale: str


def se_nodes(matches) -> list[SeNodes]:
    out = []
    for m in matches:
        fcs = tuple(n.name for fc in (m.fc1, m.fc2) for n in fc.nodes if n.op_type in WEIGHTED_OPS)
        squeeze = m.squeeze.name if m.squeeze is not None else None
        exc = tuple(n.name for n in m.nodes if n is not m.squeeze)
        out.append(SeNodes(squeeze, m.squeeze.op_type if m.squeeze is not None else None, exc, fcs, m.scale.name))
    return out


# --------------------------------------------------------------------------- the rules (tensorrt)


class _Plan:
    """Decisions being made; a later rule never overrides an earlier one for the same node."""

    def __init__(self) -> None:
        self.decisions: dict[str, Decision] = {}
        self.float_edges: list[FloatEdge] = []

    def decide(self, node, quantize: bool, rule: str, reason: str) -> None:
        self.decisions.setdefault(node.name, Decision(node.name, node.op_type, quantize, rule, reason))

    def quantizes(self, name: str) -> bool:
        d = self.decisions.get(name)
        return d is not None and d.quantize


def rule_user_exclude(plan: _Plan, nodes: dict, excluded: dict[str, str]) -> None:
    """``--exclude``: the user's sensitive layers stay float whatever the other rules say."""
    for name, why in excluded.items():
        if name in nodes:
            plan.decide(nodes[name], False, "user-exclude", why)


def rule_se(plan: _Plan, nodes: dict, blocks: list[SeNodes], se_mode: str) -> None:
    """SE blocks per ``se_mode`` (see the module docstring)."""
    for b in blocks:
        squeeze = nodes.get(b.squeeze) if b.squeeze else None
        if se_mode == SeMode.float:
            for name in (*b.excitation, b.scale, *([b.squeeze] if b.squeeze else [])):
                if name in nodes:
                    plan.decide(nodes[name], False, "se-float", "SE block kept float (--se-mode float)")
            continue
        if squeeze is not None:
            if squeeze.op_type in POOL_OPS:
                plan.decide(squeeze, True, "se-squeeze", "the squeeze reads the INT8 map and writes an INT8 vector "
                                                         "(a pool between DQ and Q runs in INT8)")
            else:
                plan.decide(squeeze, False, "se-squeeze", f"{squeeze.op_type} has no Q/DQ form of its own; it reads "
                                                          "the map through the scale Mul's shared Q/DQ")
        plan.decide(nodes[b.scale], True, "se-scale", "the scale Mul reads the INT8 map and the INT8 gate, so it runs "
                                                      "as one fused INT8 element-wise op")
        for name in b.excitation:
            n = nodes.get(name)
            if n is None:
                continue
            if se_mode == SeMode.all and name in b.fcs:
                plan.decide(n, True, "se-excitation", "--se-mode all: the excitation FCs are INT8 too")
            else:
                plan.decide(n, False, "se-excitation", "the tiny excitation runs in the high-precision type")


def rule_matrix_vector(plan: _Plan, graph) -> None:
    """Matrix-vector and tiny Gemm/MatMul stay float (no INT8 tensor-core kernel for them)."""
    for node in graph:
        if node.op_type in ("Gemm", "MatMul") and node.domain == "":
            why = matrix_vector_reason(node)
            if why:
                plan.decide(node, False, "matrix-vector", why)


def rule_weighted_ops(plan: _Plan, graph) -> None:
    """Conv/ConvTranspose/Gemm/MatMul read INT8 data and INT8 per-channel weights."""
    for node in graph:
        if node.op_type not in WEIGHTED_OPS or node.domain != "":
            continue
        if node.op_type in CONV_OPS and not is_const(node.inputs[1]):
            plan.decide(node, False, "weighted-op", "the weight is not a constant")
            continue
        plan.decide(node, True, "weighted-op", "data input and per-channel weights in INT8")


def rule_residual_add(plan: _Plan, graph) -> None:
    """Adds of two feature maps are INT8; the non-residual input (the one a Conv fuses) stays float."""
    for node in graph:
        res = classify_add(node)
        if res is None:
            continue
        plan.decide(node, True, "residual-add", res.reason)
        if res.float_input is not None and plan.quantizes(node.name):
            v = node.inputs[res.float_input]
            plan.float_edges.append(FloatEdge(node.name, res.float_input, v.name, "residual-add",
                                              "a Q/DQ here would split the Conv+Add fusion"))


def _quantized_inputs(plan: _Plan, node) -> list[int]:
    """Input indices of ``node`` that onnxruntime gives a Q/DQ when the node is quantized."""
    if not plan.quantizes(node.name):
        return []
    if node.op_type in WEIGHTED_OPS or node.op_type in POOL_OPS:
        idx = [0] + ([1] if node.op_type in ("Gemm", "MatMul") and not is_const(node.inputs[1]) else [])
    else:
        idx = [i for i, _ in variable_inputs(node)]
    floats = {e.input_index for e in plan.float_edges if e.node == node.name}
    return [i for i in idx if i not in floats]


def rule_pooling(plan: _Plan, graph) -> None:
    """A pool reads INT8 when its output feeds a quantized input: DQ -> pool -> Q is an INT8 pool."""
    changed = True
    while changed:
        changed = False
        for node in graph:
            if node.op_type not in POOL_OPS or node.domain != "" or node.name in plan.decisions:
                continue
            feeds = [(c, i) for c, i in consumers_through_copies(node.outputs[0]) if i in _quantized_inputs(plan, c)]
            if feeds:
                plan.decide(node, True, "pooling", f"its output feeds the quantized input of {feeds[0][0].name}")
                changed = True
    for node in graph:
        if node.op_type in POOL_OPS and node.domain == "":
            plan.decide(node, False, "pooling", "its output feeds no quantized input, so INT8 would buy nothing")


def tensorrt_placement(graph, blocks: list[SeNodes], se_mode: str, excluded: dict[str, str]) -> _Plan:
    """Apply the rules in order: user exclusions, SE, matrix-vector, weighted ops, residual Adds, pools."""
    plan = _Plan()
    nodes = {n.name: n for n in graph}
    rule_user_exclude(plan, nodes, excluded)
    rule_se(plan, nodes, blocks, se_mode)
    rule_matrix_vector(plan, graph)
    rule_weighted_ops(plan, graph)
    rule_residual_add(plan, graph)
    rule_pooling(plan, graph)
    return plan


def cpu_placement(graph, blocks: list[SeNodes], se_mode: str, excluded: dict[str, str]) -> _Plan:
    """onnxruntime's own op list, minus the SE parts ``se_mode`` keeps float and the user's exclusions."""
    plan = _Plan()
    nodes = {n.name: n for n in graph}
    rule_user_exclude(plan, nodes, excluded)
    for b in blocks:
        if se_mode == SeMode.all:
            continue
        keep = list(b.excitation)
        if se_mode == SeMode.float:
            keep += [b.scale] + ([b.squeeze] if b.squeeze else [])
        for name in keep:
            if name in nodes:
                plan.decide(nodes[name], False, "se-float" if se_mode == SeMode.float else "se-excitation",
                            f"SE {'block' if se_mode == SeMode.float else 'excitation'} kept float")
    return plan


def place(irm, matches, target: str, se_mode: str, excluded: dict[str, str] | None = None) -> Placement:
    """The placement for ``target`` on the onnx-ir model ``irm`` with SE ``matches`` (from se_detect)."""
    graph = irm.graph
    blocks = se_nodes(matches)
    excluded = excluded or {}
    all_types = tuple(sorted({n.op_type for n in graph}))
    if target == QuantTarget.tensorrt:
        plan = tensorrt_placement(graph, blocks, se_mode, excluded)
        quantize = tuple(d.node for d in plan.decisions.values() if d.quantize)
        op_types = tuple(sorted({d.op_type for d in plan.decisions.values() if d.quantize}))
        # pools whose output must be INT8 too: the SE squeeze (its vector feeds a float FC)
        squeezes = {b.squeeze_op for b in blocks if b.squeeze and plan.quantizes(b.squeeze)}
        outputs = tuple(sorted(op for op in squeezes if op in ("GlobalAveragePool", "AveragePool")))
        order = _order(graph)
        decisions = tuple(sorted(plan.decisions.values(), key=lambda d: order[d.node]))
        return Placement(str(target), str(se_mode), quantize, (), op_types, outputs, tuple(plan.float_edges),
                         decisions, all_types)
    plan = cpu_placement(graph, blocks, se_mode, excluded)
    exclude = tuple(d.node for d in plan.decisions.values() if not d.quantize)
    order = _order(graph)
    decisions = tuple(sorted(plan.decisions.values(), key=lambda d: order[d.node]))
    return Placement(str(target), str(se_mode), None, exclude, None, None, (), decisions, all_types)


def _order(graph) -> dict[str, int]:
    return {n.name: i for i, n in enumerate(graph)}


__all__ = ["drop_dead_qdq", "drop_unused_opsets", "name_nodes", "restore_float_inputs", "COPY_OPS", "Decision", "FloatEdge", "PER_CHANNEL_AXIS", "POOL_OPS", "Placement", "ResidualAdd",
           "SeNodes", "WEIGHTED_OPS", "classify_add", "consumers_through_copies", "conv_backbone", "cpu_placement",
           "is_const", "lowest_common_ancestor", "matrix_vector_reason", "place", "rule_matrix_vector",
           "rule_pooling", "rule_residual_add", "rule_se", "rule_user_exclude", "rule_weighted_ops", "se_nodes",
           "tensorrt_placement", "variable_inputs"]
