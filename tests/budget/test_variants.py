"""Per-block removal and folding: exact where they claim to be, against references built independently."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from se_deploy.budget.variants import Fate, Variants
from se_deploy.export.passes import ablate_se
from tests.budget.se_models import make_se_classifier

X = np.random.default_rng(3).standard_normal((8, 3, 16, 16)).astype(np.float32)


def run(model: onnx.ModelProto, x: np.ndarray = X) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(a)))


def bypass(model: onnx.ModelProto, block: int) -> onnx.ModelProto:
    """The reference for removal, by hand: the scale Mul's readers read its input instead."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    mul = next(n for n in m.graph.node if n.name == f"b{block}.se.scale")
    src, out = mul.input[0], mul.output[0]
    m.graph.node.remove(mul)
    for n in m.graph.node:
        for i, v in enumerate(n.input):
            if v == out:
                n.input[i] = src
    return m


@pytest.fixture(scope="module")
def model():
    return make_se_classifier(3, constant_gate=(1,))


def test_blocks_are_found_in_graph_order_and_named_as_the_user_named_them(model):
    v = Variants(model)
    assert [b.label for b in v.blocks] == ["b0.se.scale", "b1.se.scale", "b2.se.scale"]
    assert all(len(b.nodes) >= 6 for b in v.blocks)


def test_every_block_removed_one_at_a_time_is_the_plain_twin(model):
    v = Variants(model)
    assert rel(run(ablate_se(model)), run(v.build([Fate.remove] * 3))) <= 1e-6


@pytest.mark.parametrize("block", [0, 1, 2])
def test_removing_one_block_bypasses_its_scale_and_nothing_else(model, block):
    got = run(Variants(model).only(block, Fate.remove))
    assert rel(run(bypass(model, block)), got) <= 1e-6
    assert rel(run(model), got) > 1e-3  # the block did something: the comparison can fail


def test_the_full_variant_is_the_model(model):
    before = model.SerializeToString()
    v = Variants(model)
    assert rel(run(model), run(v.full())) <= 1e-6
    assert model.SerializeToString() == before  # the user's model is never edited


def test_a_constant_gate_folds_exactly_and_its_statistics_say_so(model):
    v = Variants(model)
    stats = v.gate_stats([{"input": X}])
    const = stats[1]
    assert const["channel_std_max"] == pytest.approx(0.0, abs=1e-7)
    b = next(i for i in model.graph.initializer if i.name == "b1.fc2.b")
    np.testing.assert_allclose(const["mean_gate"], 1 / (1 + np.exp(-onnx.numpy_helper.to_array(b))), rtol=1e-6)
    means = [s["mean_gate"] for s in stats]
    assert rel(run(model), run(v.only(1, Fate.fold, means))) <= 1e-6
    # a varying gate folds only approximately, and its statistics show the spread
    assert stats[0]["channel_std_max"] > 1e-3
    assert rel(run(model), run(v.only(0, Fate.fold, means))) > 1e-4


def test_a_fold_goes_into_the_producing_conv_and_stays_exact():
    m = make_se_classifier(2, constant_gate=(0, 1), relu=False)
    v = Variants(m)
    means = [s["mean_gate"] for s in v.gate_stats([{"input": X}])]
    folded = v.build([Fate.fold, Fate.fold], means)
    assert rel(run(m), run(folded)) <= 1e-5
    assert [n.op_type for n in folded.graph.node].count("Mul") == 0  # no scale left: the convs carry it
    assert len(folded.graph.node) == len(v.build([Fate.remove, Fate.remove]).graph.node)


def test_mixed_fates_match_the_hand_built_reference(model):
    v = Variants(model)
    means = [s["mean_gate"] for s in v.gate_stats([{"input": X}])]
    got = run(v.build([Fate.remove, Fate.fold, Fate.keep], means))
    assert rel(run(bypass(model, 0)), got) <= 1e-6  # block 1's gate is constant: folding it changes nothing


def test_a_model_without_se_blocks_is_refused():
    from onnx import TensorProto, helper

    from se_deploy.errors import GraphPassError

    g = helper.make_graph([helper.make_node("Relu", ["input"], ["y"])], "g",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])])
    with pytest.raises(GraphPassError, match="no SE blocks found"):
        Variants(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
