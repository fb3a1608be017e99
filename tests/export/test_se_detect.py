"""SE block detection on handwritten graphs (every spelling) and on zoo exports through both exporters."""

from __future__ import annotations

import json

import pytest

from se_deploy.export.se_detect import explain_near_misses, find_se_blocks
from tests.export.se_graphs import NON_MATCH_DEFECTS, SESpec, all_variant_specs, export_zoo, make_se_model

VARIANTS = all_variant_specs()


def _id(s: SESpec) -> str:
    return f"{s.squeeze}-{s.fc}-{s.reshape}-{s.act}-{s.gate}-{s.mul_order}-b{s.batch}-o{s.opset}-bias{int(s.bias)}"


@pytest.mark.parametrize("spec", VARIANTS, ids=[_id(s) for s in VARIANTS])
def test_every_spelling_is_found_once(spec):
    model, _ = make_se_model(spec)
    blocks = find_se_blocks(model)
    assert len(blocks) == 1, explain_near_misses(model)
    b = blocks[0]
    assert (b.channels, b.reduced_channels, b.ratio) == (8, 2, 4.0)
    assert b.position == "before_residual_add"
    expected_gate = "sigmoid" if spec.gate == "sigmoid" else "hardsigmoid"
    assert b.gate == expected_gate
    expected_act = {"hardswish_mul": "hardswish"}.get(spec.act, spec.act)
    assert b.activation.kind == expected_act and str(b.activation) == expected_act
    expected_squeeze = {"gap": "GlobalAveragePool", "avgpool": "AveragePool",
                        "none": "none (1x1 map)"}.get(spec.squeeze, "ReduceMean")
    assert b.squeeze == expected_squeeze
    assert b.excitation == {"gemm_tb0": "gemm", "matmul_add": "matmul"}.get(spec.fc, spec.fc)
    # the scale Mul is part of the block but not of the excitation path kept in float
    assert b.scale_node in b.node_names and b.scale_node not in b.excitation_nodes
    assert set(b.excitation_nodes) < set(b.node_names)
    names = {n.name for n in model.graph.node}
    assert set(b.node_names) <= names
    ops = {n.name: n.op_type for n in model.graph.node}
    assert ops[b.scale_node] == "Mul"
    # every node of the block is listed: the squeeze and both FC layers are in it
    assert any(ops[n] in ("GlobalAveragePool", "ReduceMean", "AveragePool") for n in b.excitation_nodes) or (
        spec.squeeze == "none")
    assert sum(ops[n] in ("Gemm", "MatMul", "Conv") for n in b.excitation_nodes) == 2
    assert b.input == next(n for n in model.graph.node if n.name == b.scale_node).input[0 if spec.mul_order == "xg" else 1]
    json.dumps(b.to_dict())  # serialisable for `inspect --json`


@pytest.mark.parametrize("consumer,position", [("add", "before_residual_add"), ("conv1x1", "before_projection_conv"),
                                               ("output", "other")])
def test_position(consumer, position):
    model, _ = make_se_model(SESpec(consumer=consumer))
    [b] = find_se_blocks(model)
    assert b.position == position


@pytest.mark.parametrize("defect,reason", [
    ("gate_two_consumers", "gate output"),
    ("nonconst_weight", "non-constant weights"),
    ("wrong_axis", "not H,W"),
    ("squeeze_other_tensor", "the squeeze reads"),
    ("fc_output_used", "not self-contained"),
    ("gate_broadcast_wrong", "does not broadcast per channel"),
])
def test_near_misses_do_not_match_and_say_why(defect, reason):
    assert defect in NON_MATCH_DEFECTS
    model, _ = make_se_model(SESpec(defect=defect, fc="gemm", reshape="flatten"))
    assert find_se_blocks(model) == []
    misses = explain_near_misses(model)
    assert len(misses) == 1 and reason in misses[0]["reason"], misses


def test_gate_with_two_consumers_reports_the_count():
    model, _ = make_se_model(SESpec(defect="gate_two_consumers"))
    [miss] = explain_near_misses(model)
    # normalization folds the Identity that read the gate, so the gate itself is now the graph output
    assert "gate output" in miss["reason"] and "has 1 consumer and is a graph output" in miss["reason"]
    assert miss["matched"][0].startswith("n_Sigmoid")  # the partial match the tracer carried out of check()


def test_shared_se_input_is_a_block_flagged_as_shared():
    model, _ = make_se_model(SESpec(defect="x_used_elsewhere"))
    [b] = find_se_blocks(model)
    assert b.input_shared is True
    [plain] = find_se_blocks(make_se_model(SESpec())[0])
    assert plain.input_shared is False


def test_swish_activation_in_the_main_path_is_not_an_se_block():
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["y"])], "swish",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 3, 3])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    assert find_se_blocks(model) == [] and explain_near_misses(model) == []


# ---------------------------------------------------------------------- zoo, both exporters


ZOO_CASES = [("se_resnet18", "dynamo", {}), ("se_resnet18", "legacy", {}), ("se_mobilenet_v2", "dynamo", {}),
             ("se_mobilenet_v2", "legacy", {}), ("se_resnet18", "legacy", {"se_fc": "conv", "se_gate": "hard_sigmoid"})]


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("zoo")


@pytest.mark.parametrize("name,exporter,kwargs", ZOO_CASES, ids=[f"{n}-{e}-{len(k)}" for n, e, k in ZOO_CASES])
def test_zoo_exports_find_one_block_per_se_module(zoo_dir, name, exporter, kwargs):
    from se_deploy.models.sources import count_se_modules

    model, torch_model = export_zoo(name, exporter, zoo_dir, **kwargs)
    blocks = find_se_blocks(model)
    assert len(blocks) == count_se_modules(torch_model) > 0
    expected_pos = "before_residual_add" if "resnet" in name else "before_projection_conv"
    assert {b.position for b in blocks} == {expected_pos}
    assert {b.gate for b in blocks} == {"hardsigmoid" if kwargs.get("se_gate") == "hard_sigmoid" else "sigmoid"}
    assert all(b.ratio >= 1 and b.channels > b.reduced_channels for b in blocks)


def test_plain_twin_has_no_blocks(zoo_dir):
    model, _ = export_zoo("mobilenet_v2", "legacy", zoo_dir)
    assert find_se_blocks(model) == []
