"""Tiny handwritten ONNX graphs with one SE block, in every spelling exporters produce.

``make_se_model(SESpec(...))`` builds: producer -> x -> SE(x) -> consumer. Options cover the
squeeze, excitation, reshape, activation, gate and Mul-order variants, the effective-SE
variant (one FC), how constants reach their nodes (initializers, Identity routing, Constant
nodes, fp16 + Cast), plus the defects that must stop a match (``defect``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SQUEEZES = ("gap", "reducemean_k1", "reducemean_k0", "avgpool", "none")  # none: 1x1 map, mean elided
FCS = ("conv", "gemm", "gemm_tb0", "matmul", "matmul_add")
ACTS = ("relu", "relu6", "silu", "hardswish", "hardswish_mul", "leakyrelu")
GATES = ("sigmoid", "hardsigmoid", "hs_div", "hs_mul")
RESHAPES = ("none", "flatten", "reshape_const", "reshape_dynamic", "squeeze_unsqueeze", "reshape_dynamic_pooled")
# How constants reach their consumers: initializers, legacy-exporter Identity routing, Constant
# nodes, or fp16 initializers behind a Cast.
WEIGHTS = ("init", "identity", "constant", "cast")
VARIANTS = ("se", "ese")
PRODUCERS = ("conv1x1", "conv1x1_bn", "conv3x3", "relu", "input")
CONSUMERS = ("add", "conv1x1", "output")
DEFECTS = (None, "x_used_elsewhere", "nonconst_weight", "gate_two_consumers", "wrong_axis", "squeeze_other_tensor",
           "fc_output_used", "gate_broadcast_wrong")
# Defects after which the graph is no SE block and nothing may change it.
NON_MATCH_DEFECTS = ("nonconst_weight", "gate_two_consumers", "wrong_axis", "squeeze_other_tensor",
                     "fc_output_used", "gate_broadcast_wrong")


@dataclass(frozen=True)
class SESpec:
    c: int = 8
    r: int = 4
    hw: int = 5
    batch: int | str = 1
    squeeze: str = "gap"
    fc: str = "conv"
    bias: bool = True
    act: str = "relu"
    gate: str = "sigmoid"
    reshape: str = "none"
    mul_order: str = "xg"
    producer: str = "conv1x1"
    consumer: str = "add"
    defect: str | None = None
    opset: int = 17
    seed: int = 0
    weights: str = "init"
    variant: str = "se"


def all_variant_specs() -> list[SESpec]:
    """One spec per value of each option (the rest default), valid combinations only."""
    out = []
    for sq in SQUEEZES:
        out.append(SESpec(squeeze=sq, fc="gemm", reshape="flatten", hw=1 if sq == "none" else 5))
    for fc in FCS:
        out.append(SESpec(fc=fc, reshape="none" if fc == "conv" else "flatten"))
    for act, gate in itertools.product(ACTS, GATES):
        out.append(SESpec(act=act, gate=gate))
    for rs in RESHAPES[1:]:
        out.append(SESpec(fc="gemm", reshape=rs, batch="N" if rs == "reshape_dynamic" else 1))
    out.append(SESpec(mul_order="gx"))
    out.append(SESpec(bias=False, fc="matmul_add"))
    out.append(SESpec(bias=False))
    out.append(SESpec(opset=18, squeeze="reducemean_k0", fc="gemm"))
    return [s for s in out if valid(s)]


def real_world_specs() -> dict[str, SESpec]:
    """The untidy forms real graphs arrive in (issue 13), one spec each."""
    return {
        "identity_routed_weights": SESpec(fc="gemm", reshape="flatten", weights="identity"),
        "identity_routed_conv": SESpec(weights="identity"),
        "constant_nodes": SESpec(fc="gemm", reshape="reshape_const", weights="constant"),
        "fp16_weights_cast": SESpec(fc="matmul_add", reshape="flatten", weights="cast"),
        "shape_chain_of_x": SESpec(fc="gemm", reshape="reshape_dynamic", batch="N", weights="constant"),
        "shape_chain_of_pool": SESpec(fc="gemm", reshape="reshape_dynamic_pooled", batch="N"),
        "reducemean_k0_unsqueeze_op13": SESpec(squeeze="reducemean_k0", fc="gemm", opset=13),
        "reducemean_k0_unsqueeze_op18": SESpec(squeeze="reducemean_k0", fc="gemm", opset=18, weights="identity"),
        "ese_hardsigmoid": SESpec(variant="ese", gate="hardsigmoid", consumer="add"),
        "ese_relu6_div": SESpec(variant="ese", gate="hs_div", weights="constant"),
        "ese_mul_one_sixth": SESpec(variant="ese", gate="hs_mul", fc="gemm", reshape="flatten"),
        "ese_mbconv": SESpec(variant="ese", producer="relu", consumer="conv1x1"),
    }


def valid(s: SESpec) -> bool:
    if s.squeeze == "none" and (s.hw != 1 or s.defect in ("wrong_axis", "squeeze_other_tensor", "gate_broadcast_wrong")):
        return False
    if s.fc == "conv" and s.reshape != "none":
        return s.reshape in ("reshape_const", "reshape_dynamic") and s.squeeze != "reducemean_k0"
    if s.fc != "conv" and s.reshape == "none" and s.squeeze != "reducemean_k0":
        return False
    if s.squeeze == "reducemean_k0" and (s.fc == "conv" or s.reshape == "squeeze_unsqueeze"):
        return False
    if s.reshape in ("reshape_dynamic", "reshape_dynamic_pooled") and s.batch != "N":
        return False
    if s.reshape == "reshape_dynamic_pooled" and (s.fc == "conv" or s.squeeze not in ("gap", "reducemean_k1")):
        return False
    if s.weights == "cast" and s.defect == "nonconst_weight":
        return False
    return True


class _B:
    def __init__(self, seed: int, weights: str = "init"):
        self.nodes: list = []
        self.inits: list = []
        self.rng = np.random.default_rng(seed)
        self.k = 0
        self.weights = weights

    def name(self, p: str) -> str:
        self.k += 1
        return f"{p}_{self.k}"

    def const(self, arr, p="c") -> str:
        arr = np.asarray(arr)
        n = self.name(p)
        if self.weights == "constant":
            self.nodes.append(helper.make_node("Constant", [], [n], name=self.name("n_Constant"),
                                               value=numpy_helper.from_array(arr, n)))
            return n
        if self.weights == "cast" and arr.dtype == np.float32 and arr.size > 1:  # weights, not scalars
            self.inits.append(numpy_helper.from_array(arr.astype(np.float16), n))
            return self.op("Cast", [n], to=TensorProto.FLOAT)
        self.inits.append(numpy_helper.from_array(arr, n))
        if self.weights == "identity":  # the legacy exporter's deduplicated initializers
            return self.op("Identity", [self.op("Identity", [n])])
        return n

    def op(self, op_type, inputs, n_out=1, **attrs):
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.name("n_" + op_type), **attrs))
        return outs[0] if n_out == 1 else outs

    def w(self, *shape, scale=0.5):
        return (self.rng.standard_normal(shape) * scale).astype(np.float32)


def _fc(b: _B, s: SESpec, v: str, cin: int, cout: int, extra_inputs: list) -> str:
    w = b.w(cout, cin)
    bias = b.w(cout, scale=0.2) if s.bias else None
    if s.defect == "nonconst_weight" and not extra_inputs:
        wname = "w_runtime"
        wdata = {"conv": w.reshape(cout, cin, 1, 1), "gemm": w, "gemm_tb0": w.T, "matmul": w.T, "matmul_add": w.T}[s.fc]
        extra_inputs.append(helper.make_tensor_value_info(wname, TensorProto.FLOAT, list(wdata.shape)))
        extra_inputs.append(("w_runtime", wdata))
        wvals = wname
    else:
        wvals = None
    if s.fc == "conv":
        ins = [v, wvals or b.const(w.reshape(cout, cin, 1, 1), "w")]
        if bias is not None:
            ins.append(b.const(bias, "b"))
        return b.op("Conv", ins, kernel_shape=[1, 1])
    if s.fc in ("gemm", "gemm_tb0"):
        tb = 1 if s.fc == "gemm" else 0
        ins = [v, wvals or b.const(w if tb else w.T, "w")]
        if bias is not None:
            ins.append(b.const(bias, "b"))
        return b.op("Gemm", ins, transB=tb)
    out = b.op("MatMul", [v, wvals or b.const(w.T, "w")])
    if s.fc == "matmul_add" and bias is not None:
        out = b.op("Add", [b.const(bias.reshape(1, cout), "b"), out])
    return out


def make_se_model(s: SESpec) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """Return the model and any extra runtime feeds (for ``nonconst_weight``)."""
    if s.defect == "wrong_axis":  # a per-row gate: valid ONNX, not an SE block
        s = replace(s, fc="conv", reshape="none", squeeze="reducemean_k1")
    if s.defect == "gate_broadcast_wrong":  # gate reshaped to N,1,1,C scales columns: valid, not SE
        c2 = max(s.c, 2)  # with one channel, N,1,1,C is still a per-channel scale
        s = replace(s, c=c2, hw=c2, fc="gemm" if s.fc == "conv" else s.fc, reshape="flatten" if s.reshape == "none" else s.reshape)
    b = _B(s.seed, s.weights)
    c, hw = s.c, s.hw
    cr = c if s.variant == "ese" else max(1, s.c // s.r)
    extra_inputs: list = []
    # producer of x
    if s.producer.startswith("conv1x1"):
        x = b.op("Conv", ["input", b.const(b.w(c, c, 1, 1), "pw"), b.const(b.w(c, scale=0.1), "pb")], kernel_shape=[1, 1])
        if s.producer == "conv1x1_bn":
            x = b.op("BatchNormalization", [x, b.const(1 + b.w(c, scale=0.1)), b.const(b.w(c, scale=0.1)),
                                            b.const(b.w(c, scale=0.1)), b.const(1 + np.abs(b.w(c, scale=0.1)))])
    elif s.producer == "conv3x3":
        x = b.op("Conv", ["input", b.const(b.w(c, c, 3, 3, scale=0.2), "pw")], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    elif s.producer == "relu":
        x = b.op("Relu", ["input"])
    else:
        x = "input"
    # squeeze
    if s.defect == "squeeze_other_tensor":
        sq_in = b.op("Relu", [x])
    else:
        sq_in = x
    axes = [3] if s.defect == "wrong_axis" else [2, 3]
    if s.squeeze == "gap" and s.defect == "wrong_axis":
        sq = b.op("ReduceMean", [sq_in], axes=axes, keepdims=1)
    elif s.squeeze == "gap":
        sq = b.op("GlobalAveragePool", [sq_in])
    elif s.squeeze.startswith("reducemean"):
        kd = 1 if s.squeeze.endswith("k1") else 0
        if s.opset >= 18:
            sq = b.op("ReduceMean", [sq_in, b.const(np.array(axes, np.int64), "axes")], keepdims=kd)
        else:
            sq = b.op("ReduceMean", [sq_in], axes=axes, keepdims=kd)
    elif s.squeeze == "avgpool":
        sq = b.op("AveragePool", [sq_in], kernel_shape=[hw, hw])
    else:
        sq = sq_in
    # flatten to [N, C] for FC layers that need it
    flat = sq
    if s.reshape == "flatten":
        flat = b.op("Flatten", [sq], axis=1)
    elif s.reshape == "reshape_const":
        flat = b.op("Reshape", [sq, b.const(np.array([-1, c] if s.fc != "conv" else [-1, c, 1, 1], np.int64), "shp")])
    elif s.reshape == "squeeze_unsqueeze":
        flat = b.op("Squeeze", [sq, b.const(np.array([2, 3], np.int64), "ax")])
    elif s.reshape == "reshape_dynamic":
        shp = b.op("Shape", [x])
        n0 = b.op("Gather", [shp, b.const(np.array(0, np.int64), "i0")], axis=0)
        n1 = b.op("Gather", [shp, b.const(np.array(1, np.int64), "i1")], axis=0)
        u0 = b.op("Unsqueeze", [n0, b.const(np.array([0], np.int64), "ax")])
        u1 = b.op("Unsqueeze", [n1, b.const(np.array([0], np.int64), "ax")])
        dims = [u0, u1] if s.fc != "conv" else [u0, u1, b.const(np.array([1], np.int64)), b.const(np.array([1], np.int64))]
        cat = b.op("Concat", dims, axis=0)
        flat = b.op("Reshape", [sq, cat])
    elif s.reshape == "reshape_dynamic_pooled":  # y.view(y.size(0), -1): the shape comes from the pooled tensor
        n0 = b.op("Gather", [b.op("Shape", [sq]), b.const(np.array(0, np.int64), "i0")], axis=0)
        cat = b.op("Concat", [b.op("Unsqueeze", [n0, b.const(np.array([0], np.int64), "ax")]),
                              b.const(np.array([-1], np.int64), "m1")], axis=0)
        flat = b.op("Reshape", [sq, cat])
    h = _fc(b, s, flat, c, cr, extra_inputs)
    if s.variant == "ese":
        return _finish(b, s, x, h, extra_inputs, side=h if s.defect == "fc_output_used" else None)
    # activation
    if s.act == "relu":
        a = b.op("Relu", [h])
    elif s.act == "relu6":
        a = b.op("Clip", [h, b.const(np.array(0, np.float32)), b.const(np.array(6, np.float32))])
    elif s.act == "silu":
        a = b.op("Mul", [h, b.op("Sigmoid", [h])])
    elif s.act == "hardswish":
        a = b.op("HardSwish", [h])
    elif s.act == "hardswish_mul":
        a = b.op("Mul", [b.op("HardSigmoid", [h], alpha=1 / 6, beta=0.5), h])
    else:
        a = b.op("LeakyRelu", [h], alpha=0.1)
    side = h if s.defect == "fc_output_used" else None
    return _finish(b, s, x, _fc2(b, s, a, cr, c), extra_inputs, side)


def _finish(b: _B, s: SESpec, x: str, z: str, extra_inputs: list, side: str | None):
    """Gate, reshape back to N,C,1,1, scale, consumer: the rest of the model after the last FC."""
    c, hw, n = s.c, s.hw, s.batch
    if side is not None:
        side = b.op("Identity", [side])
    # gate
    if s.gate == "sigmoid":
        g = b.op("Sigmoid", [z])
    elif s.gate == "hardsigmoid":
        g = b.op("HardSigmoid", [z], alpha=1 / 6, beta=0.5)
    else:
        add = b.op("Add", [z, b.const(np.array(3, np.float32))])
        clip = b.op("Clip", [add, b.const(np.array(0, np.float32)), b.const(np.array(6, np.float32))])
        if s.gate == "hs_div":
            g = b.op("Div", [clip, b.const(np.array(6, np.float32))])
        else:
            g = b.op("Mul", [b.const(np.array(1 / 6, np.float32)), clip])
    if s.fc != "conv" and s.reshape != "none" or s.squeeze == "reducemean_k0":
        if s.defect == "gate_broadcast_wrong":
            g = b.op("Reshape", [g, b.const(np.array([-1, 1, 1, c], np.int64), "shp")])
        elif s.reshape == "reshape_dynamic":
            shp = b.op("Shape", [x])
            n0 = b.op("Gather", [shp, b.const(np.array(0, np.int64), "i0")], axis=0)
            n1 = b.op("Gather", [shp, b.const(np.array(1, np.int64), "i1")], axis=0)
            u0 = b.op("Unsqueeze", [n0, b.const(np.array([0], np.int64), "ax")])
            u1 = b.op("Unsqueeze", [n1, b.const(np.array([0], np.int64), "ax")])
            cat = b.op("Concat", [u0, u1, b.const(np.array([1], np.int64)), b.const(np.array([1], np.int64))], axis=0)
            g = b.op("Reshape", [g, cat])
        elif s.reshape == "squeeze_unsqueeze" or s.squeeze == "reducemean_k0":
            g = b.op("Unsqueeze", [g, b.const(np.array([2, 3], np.int64), "ax")])
        elif s.reshape == "reshape_dynamic_pooled":  # y[:, :, None, None], as the legacy exporter writes it
            g = b.op("Unsqueeze", [b.op("Unsqueeze", [g, b.const(np.array([2], np.int64), "ax")]),
                                   b.const(np.array([3], np.int64), "ax")])
        else:
            g = b.op("Reshape", [g, b.const(np.array([-1, c, 1, 1], np.int64), "shp")])
    elif s.defect == "gate_broadcast_wrong":
        g = b.op("Transpose", [g], perm=[0, 3, 2, 1])
    outputs = []
    if s.defect == "gate_two_consumers":
        outputs.append(_out(b.op("Identity", [g]), 4))
    if side is not None:
        outputs.append(_out(side, 4 if s.fc == "conv" else 2))
    y = b.op("Mul", [x, g] if s.mul_order == "xg" else [g, x])
    if s.defect == "x_used_elsewhere":
        outputs.append(_out(b.op("Relu", [x]), 4))
    if s.consumer == "add":
        y = b.op("Add", [y, "input"])
    elif s.consumer == "conv1x1":
        y = b.op("Conv", [y, b.const(b.w(c, c, 1, 1), "qw")], kernel_shape=[1, 1])
    out = helper.make_tensor_value_info(y, TensorProto.FLOAT, [n, c, hw, hw])
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [n, c, hw, hw])
    graph_inputs = [inp] + [e for e in extra_inputs if not isinstance(e, tuple)]
    feeds = {k: v for e in extra_inputs if isinstance(e, tuple) for k, v in [e]}
    graph = helper.make_graph(b.nodes, "se", graph_inputs, [out] + outputs, initializer=b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", s.opset)], ir_version=8)
    inferred = onnx.shape_inference.infer_shapes(model)
    known = {vi.name: vi for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    for o in model.graph.output:
        if o.name in known and known[o.name].type.tensor_type.HasField("shape"):
            o.type.CopyFrom(known[o.name].type)
    onnx.checker.check_model(model)
    return model, feeds


def _out(name: str, rank: int):
    """A graph output of known rank; shape inference fills in the dims where it can."""
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [f"{name}_d{i}" for i in range(rank)])


def _fc2(b: _B, s: SESpec, a: str, cin: int, cout: int) -> str:
    return _fc(b, replace(s, defect=None), a, cin, cout, [])


def input_shape(s: SESpec, batch: int | None = None) -> tuple[int, ...]:
    n = batch if batch is not None else (s.batch if isinstance(s.batch, int) else 2)
    return (n, s.c, s.hw, s.hw)


_ZOO_CACHE: dict = {}


def export_zoo(name: str, exporter: str, tmp_root, **kwargs):
    """Export a small (64x64, 5-class) zoo model once per test session; returns (onnx model, torch model)."""
    import onnx

    from se_deploy.export.torch_export import export_model
    from se_deploy.models import create_model

    key = (name, exporter, tuple(sorted(kwargs.items())))
    if key not in _ZOO_CACHE:
        torch_model = create_model(name, num_classes=5, **kwargs)
        out = tmp_root / f"{name}_{exporter}_{len(_ZOO_CACHE)}.onnx"
        export_model(torch_model, out, input_shape=(1, 3, 64, 64), exporter=exporter,
                     dynamic_batch=exporter == "legacy", simplify=False, fuse=False)
        _ZOO_CACHE[key] = (onnx.load(str(out)), torch_model)
    return _ZOO_CACHE[key]


def make_shared_bias_model(routing: str = "identity", c: int = 8, cr: int = 2, hw: int = 4) -> onnx.ModelProto:
    """Two SE blocks (Gemm spelling) whose zero biases are one initializer, as the legacy exporter
    deduplicates freshly initialized biases: ``routing="shared"`` reads it directly in both blocks,
    ``"identity"`` routes the second block's copy through an Identity node."""
    rng = np.random.default_rng(5)
    nodes, inits = [], [numpy_helper.from_array(np.zeros(cr, np.float32), "se1.fc1.bias"),
                        numpy_helper.from_array(np.zeros(c, np.float32), "se1.fc2.bias"),
                        numpy_helper.from_array(np.array([-1, c, 1, 1], np.int64), "shape4")]
    x = "input"
    for k in (1, 2):
        p = f"se{k}"
        b1, b2 = "se1.fc1.bias", "se1.fc2.bias"
        if k == 2 and routing == "identity":
            nodes += [helper.make_node("Identity", [b1], ["se2.fc1.bias"], name="Identity_0"),
                      helper.make_node("Identity", [b2], ["se2.fc2.bias"], name="Identity_1")]
            b1, b2 = "se2.fc1.bias", "se2.fc2.bias"
        for name, shape in ((f"{p}.fc1.weight", (cr, c)), (f"{p}.fc2.weight", (c, cr))):
            inits.append(numpy_helper.from_array((rng.standard_normal(shape) * 0.5).astype(np.float32), name))
        nodes += [
            helper.make_node("Conv", [x, f"{p}.conv"], [f"{p}/conv"], name=f"/{p}/conv/Conv", kernel_shape=[1, 1]),
            helper.make_node("ReduceMean", [f"{p}/conv"], [f"{p}/pool"], name=f"/{p}/ReduceMean", axes=[2, 3],
                             keepdims=0),
            helper.make_node("Gemm", [f"{p}/pool", f"{p}.fc1.weight", b1], [f"{p}/h"], transB=1, name=f"/{p}/fc1/Gemm"),
            helper.make_node("Relu", [f"{p}/h"], [f"{p}/a"], name=f"/{p}/Relu"),
            helper.make_node("Gemm", [f"{p}/a", f"{p}.fc2.weight", b2], [f"{p}/z"], transB=1, name=f"/{p}/fc2/Gemm"),
            helper.make_node("Sigmoid", [f"{p}/z"], [f"{p}/g"], name=f"/{p}/Sigmoid"),
            helper.make_node("Reshape", [f"{p}/g", "shape4"], [f"{p}/g4"], name=f"/{p}/Reshape"),
            helper.make_node("Mul", [f"{p}/conv", f"{p}/g4"], [f"{p}/y"], name=f"/{p}/Mul"),
            helper.make_node("Add", [f"{p}/y", x], [f"{p}/out"], name=f"/{p}/Add"),
        ]
        inits.append(numpy_helper.from_array((rng.standard_normal((c, c, 1, 1)) * 0.3).astype(np.float32), f"{p}.conv"))
        x = f"{p}/out"
    g = helper.make_graph(nodes, "shared", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, c, hw, hw])],
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, c, hw, hw])], initializer=inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def route_through_identity(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose every initializer reaches its consumers through an Identity node (legacy-exporter style)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    idents = []
    for k, init in enumerate(g.initializer):
        routed = f"{init.name}__routed"
        idents.append(helper.make_node("Identity", [init.name], [routed], name=f"/route/Identity_{k}"))
        for node in g.node:
            for i, name in enumerate(node.input):
                if name == init.name:
                    node.input[i] = routed
    nodes = idents + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    onnx.checker.check_model(out)
    return out
