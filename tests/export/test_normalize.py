"""Graph normalization before SE detection: the rules it adds, exactness, and that the user's model is untouched."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from se_deploy.export.normalize import normalized_copy
from se_deploy.runtime.onnxruntime import run_onnx
from tests.export.se_graphs import SESpec, input_shape, make_se_model, real_world_specs


def _gate_model(scale_op: str, shift_op: str, a: float, d: float, order: str = "clip_first", lo: float = 0.0):
    k = d if scale_op == "Div" else 1.0 / d
    inits = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in
             (("a", a), ("lo", lo), ("hi", d), ("k", k))]
    clip_in = ["z", "a"] if order == "clip_first" or shift_op == "Sub" else ["a", "z"]
    scale_in = ["c", "k"] if order == "clip_first" or scale_op == "Div" else ["k", "c"]
    nodes = [helper.make_node(shift_op, clip_in, ["s"], name="shift"),
             helper.make_node("Clip", ["s", "lo", "hi"], ["c"], name="clip"),
             helper.make_node(scale_op, scale_in, ["g"], name="scale")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("z", TensorProto.FLOAT, [4096])],
                          [helper.make_tensor_value_info("g", TensorProto.FLOAT, [4096])], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("scale_op,shift_op,a,d,order", [
    ("Div", "Add", 3.0, 6.0, "clip_first"),  # onnxscript's HardSigmoidFusion
    ("Div", "Add", 3.0, 6.0, "swapped"),
    ("Mul", "Add", 3.0, 6.0, "clip_first"),  # * (1/6): not covered by onnxscript's rule
    ("Mul", "Add", 3.0, 6.0, "swapped"),
    ("Div", "Sub", -3.0, 6.0, "clip_first"),
    ("Div", "Add", 2.0, 4.0, "clip_first"),  # other constants
])
def test_hard_sigmoid_spellings_become_one_hardsigmoid(scale_op, shift_op, a, d, order):
    model = _gate_model(scale_op, shift_op, a, d, order)
    norm = ir.to_proto(normalized_copy(model))
    onnx.checker.check_model(norm)
    assert [n.op_type for n in norm.graph.node] == ["HardSigmoid"]
    assert norm.graph.node[0].name == "scale"  # the name of the node whose output it took over
    z = {"z": np.linspace(-8, 8, 4096, dtype=np.float32)}
    ref, got = run_onnx(model, z)["g"], run_onnx(norm, z)["g"]
    assert float(np.max(np.abs(ref - got))) <= 1.2e-7  # one float rounding at most


def test_a_clip_that_is_no_hard_sigmoid_stays():
    model = _gate_model("Div", "Add", 3.0, 6.0, lo=-1.0)
    norm = ir.to_proto(normalized_copy(model))
    assert [n.op_type for n in norm.graph.node] == ["Add", "Clip", "Div"]


@pytest.mark.parametrize("form", list(real_world_specs()))
def test_normalization_is_exact_keeps_io_and_leaves_the_input_alone(form):
    spec = real_world_specs()[form]
    model, _ = make_se_model(spec)
    before = model.SerializeToString()
    norm = ir.to_proto(normalized_copy(model))
    assert model.SerializeToString() == before
    onnx.checker.check_model(norm)
    assert [i.name for i in norm.graph.input] == [i.name for i in model.graph.input]
    assert [o.name for o in norm.graph.output] == [o.name for o in model.graph.output]
    ops = collections.Counter(n.op_type for n in norm.graph.node)
    assert not {"Identity", "Constant", "Cast"} & set(ops), ops
    assert {n.name for n in norm.graph.node} <= {n.name for n in model.graph.node}  # names restored
    for b in (1, 3) if spec.batch == "N" else (None,):
        x = {"input": np.random.default_rng(1).standard_normal(input_shape(spec, b)).astype(np.float32)}
        for ref, got in zip(run_onnx(model, x).values(), run_onnx(norm, x).values()):
            if spec.gate in ("hs_div", "hs_mul"):
                assert np.allclose(ref, got, rtol=0, atol=1e-6)  # the hard-sigmoid fusion: one rounding
            else:
                assert np.array_equal(ref, got)


def test_unnamed_nodes_get_labels_of_the_users_graph():
    model, _ = make_se_model(SESpec(fc="gemm", reshape="flatten"))
    for n in model.graph.node:
        n.name = ""
    irm = normalized_copy(model)
    labels = {f"{n.op_type}_{i}" for i, n in enumerate(model.graph.node)}
    assert {n.name for n in irm.graph} <= labels
    assert all(n.name == "" for n in model.graph.node)
