"""SE graph passes: exact op structure, onnxruntime parity, rollback, fold-gates, ablate-se."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest

from se_deploy.runtime.onnxruntime import run_onnx
from se_deploy.export import passes as P
from se_deploy.export.se_detect import find_se_blocks
from tests.export.se_graphs import SESpec, all_variant_specs, export_zoo, input_shape, make_se_model

VARIANTS = all_variant_specs()
CANONICAL_OPS = {"GlobalAveragePool", "Conv", "Relu", "Clip", "LeakyRelu", "HardSwish", "Sigmoid", "HardSigmoid", "Mul",
                 "Add"}


def _outputs(model, feed):
    return list(run_onnx(model, feed).values())


def _feed(spec: SESpec, extra: dict, batch: int | None = None, seed: int = 0) -> dict:
    x = np.random.default_rng(seed).standard_normal(input_shape(spec, batch)).astype(np.float32)
    return {"input": x, **extra}


def _rel_err(a, b) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-12))


def _ops(model) -> collections.Counter:
    return collections.Counter(n.op_type for n in model.graph.node)


@pytest.mark.parametrize("spec", VARIANTS, ids=lambda s: f"{s.squeeze}-{s.fc}-{s.reshape}-{s.act}-{s.gate}-b{s.batch}")
def test_canonicalize_is_exact_and_leaves_only_the_canonical_form(spec):
    model, extra = make_se_model(spec)
    out, report = P.run_passes(model, ["canonicalize"])
    onnx.checker.check_model(out)
    ops = _ops(out)
    assert not {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Shape", "Gather", "Concat", "Gemm", "MatMul",
                "ReduceMean", "AveragePool", "Div"} & set(ops), ops
    assert set(ops) <= CANONICAL_OPS
    assert ops["GlobalAveragePool"] == 1
    assert ops["Conv"] == 3  # producer + two excitation convs
    for b in (1, 3) if spec.batch == "N" else (None,):
        feed = _feed(spec, extra, b)
        for ref, got in zip(_outputs(model, feed), _outputs(out, feed)):
            assert _rel_err(ref, got) <= 1e-5
    [blk] = find_se_blocks(out)
    assert (blk.squeeze, blk.excitation, blk.shape_ops) == ("GlobalAveragePool", "conv", 0)
    # idempotent: a second run finds nothing to do
    again, rep2 = P.run_passes(out, ["canonicalize"])
    assert rep2["passes"][0]["status"] == "no-op" and again is out


def test_canonicalize_report_records_the_measured_error():
    model, _ = make_se_model(SESpec(fc="gemm", reshape="flatten"))
    _, report = P.run_passes(model, ["canonicalize"])
    [entry] = report["passes"]
    assert entry["status"] == "applied" and entry["changed"] == 1
    v = entry["verification"]
    assert 0 <= v["rel_max_abs"] <= 1e-5 and v["inputs"] == ["random(b=1)", "constant(b=1)"]
    assert report["se_blocks_before"] == report["se_blocks_after"] == 1


@pytest.mark.parametrize("producer", ["conv1x1", "conv1x1_bn"])
def test_hoist_squeeze_pools_the_producer_input(producer):
    spec = SESpec(producer=producer, fc="gemm", reshape="flatten")
    model, _ = make_se_model(spec)
    out, report = P.run_passes(model, ["canonicalize", "hoist-squeeze"])
    assert [e["status"] for e in report["passes"]] == ["applied", "applied"]
    gap = next(n for n in out.graph.node if n.op_type == "GlobalAveragePool")
    assert gap.input[0] == "input"  # pools the 1x1 conv's input, not its output
    feed = _feed(spec, {})
    for ref, got in zip(_outputs(model, feed), _outputs(out, feed)):
        assert _rel_err(ref, got) <= 1e-5
    [blk] = find_se_blocks(out)
    assert blk.squeeze == "GlobalAveragePool(hoisted)"


def test_hoist_squeeze_skips_spatial_producers_with_reason():
    model, _ = make_se_model(SESpec(producer="conv3x3"))
    out, report = P.run_passes(model, ["hoist-squeeze"])
    [entry] = report["passes"]
    assert entry["status"] == "no-op" and out is model
    assert "not 1x1" in next(iter(entry["details"]["skipped"].values()))


def test_ablate_se_gives_the_plain_function():
    spec = SESpec(fc="matmul_add", reshape="flatten", producer="conv1x1", consumer="add")
    model, _ = make_se_model(spec)
    plain = P.ablate_se(model)
    assert find_se_blocks(plain) == []
    assert _ops(plain) == collections.Counter({"Conv": 1, "Add": 1})
    # independent reference: y = conv1x1(input) + input, computed in numpy
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    w, b = inits[conv.input[1]][:, :, 0, 0], inits[conv.input[2]]
    x = _feed(spec, {})["input"]
    ref = np.einsum("oc,nchw->nohw", w, x) + b[None, :, None, None] + x
    [got] = _outputs(plain, {"input": x})
    assert np.allclose(got, ref, atol=1e-5)


def test_ablate_se_keeps_a_graph_output_name():
    model, _ = make_se_model(SESpec(consumer="output"))
    plain = P.ablate_se(model)
    onnx.checker.check_model(plain)
    assert [o.name for o in plain.graph.output] == [o.name for o in model.graph.output]


# ---------------------------------------------------------------------- proof and rollback


@pytest.fixture
def broken_pass():
    """A deliberately wrong pass: doubles the second excitation layer's weights."""
    from se_deploy.export.ir_helpers import add_initializer
    from se_deploy.export.passes._registry import _PASSES
    from se_deploy.export.se_detect import find_matches

    def corrupt(model, ctx):
        matches, _ = find_matches(model)
        for m in matches:
            node = m.fc2.nodes[0]
            w = add_initializer(model.graph, "corrupt", (m.fc2.weight * 2).reshape(node.inputs[1].shape.numpy()
                                                                                         if node.op_type == "Conv"
                                                                                         else m.fc2.weight.shape))
            node.replace_input_with(1, w)
        return {"changed": len(matches)}

    def crash(model, ctx):
        raise RuntimeError("boom")

    P.register_pass("test-corrupt", kind=P.PassKind.exact, summary="test only")(corrupt)
    P.register_pass("test-crash", kind=P.PassKind.exact, summary="test only")(crash)
    yield
    _PASSES.pop("test-corrupt")
    _PASSES.pop("test-crash")


def test_a_pass_that_changes_outputs_is_rolled_back(broken_pass):
    model, _ = make_se_model(SESpec())
    before = model.SerializeToString()
    out, report = P.run_passes(model, ["test-corrupt", "test-crash", "canonicalize"])
    corrupt, crash, canon = report["passes"]
    assert corrupt["status"] == "rolled_back" and "tolerance" in corrupt["reason"]
    assert corrupt["verification"]["rel_max_abs"] > 1e-3
    assert crash["status"] == "rolled_back" and "boom" in crash["reason"]
    assert canon["status"] == "no-op"  # already canonical
    assert out.SerializeToString() == before


def test_dynamic_batch_is_verified_at_several_batch_sizes():
    model, _ = make_se_model(SESpec(fc="gemm", reshape="reshape_dynamic", batch="N"))
    _, report = P.run_passes(model, ["canonicalize"], options=P.PassOptions(batch_sizes=(1, 3)))
    assert report["passes"][0]["verification"]["inputs"] == ["random(b=1)", "constant(b=1)", "random(b=3)",
                                                             "constant(b=3)"]


def test_pass_options_are_validated():
    from se_deploy.errors import UsageError

    with pytest.raises(UsageError):
        P.PassOptions(tolerance=0)
    with pytest.raises(UsageError):
        P.PassOptions(batch_sizes=(0,))
    with pytest.raises(UsageError, match="unknown pass"):
        P.run_passes(make_se_model(SESpec())[0], ["nope"])


# ---------------------------------------------------------------------- fold-gates


def _constant_gate_model():
    """SE block whose second FC has zero weights: the gate is sigmoid(bias), the same for every input."""
    model, _ = make_se_model(SESpec(fc="conv", producer="conv1x1"))
    fc2 = [n for n in model.graph.node if n.op_type == "Conv"][2]
    for init in model.graph.initializer:
        if init.name == fc2.input[1]:
            init.CopyFrom(onnx.numpy_helper.from_array(np.zeros_like(onnx.numpy_helper.to_array(init)), init.name))
    return model


def _calib(n=8, seed=1):
    rng = np.random.default_rng(seed)
    return [{"input": rng.standard_normal((1, 8, 5, 5)).astype(np.float32)} for _ in range(n)]


def test_fold_gates_folds_constant_gates_into_the_producer_conv():
    model = _constant_gate_model()
    out, report = P.run_passes(model, ["fold-gates"], calib_feeds=_calib())
    [entry] = report["passes"]
    assert entry["status"] == "applied" and entry["changed"] == 1
    [blk] = entry["details"]["blocks"]
    assert blk["folded"] and blk["into"] == "conv" and blk["gate_std_max"] < 1e-6
    assert find_se_blocks(out) == [] and _ops(out) == collections.Counter({"Conv": 1, "Add": 1})
    cal = entry["verification"]["calibration"]
    assert cal["rel_max_abs"] < 1e-5
    x = _calib(1, seed=9)[0]
    assert _rel_err(_outputs(model, x)[0], _outputs(out, x)[0]) < 1e-5


def test_fold_gates_refuses_when_the_error_exceeds_the_tolerance():
    model, _ = make_se_model(SESpec())
    opts = P.PassOptions(gate_std_threshold=10.0, fold_tolerance=1e-4)  # folds everything, then must refuse
    out, report = P.run_passes(model, ["fold-gates"], options=opts, calib_feeds=_calib())
    [entry] = report["passes"]
    assert entry["status"] == "rolled_back" and "exceeds the tolerance" in entry["reason"]
    assert entry["verification"]["calibration"]["rel_max_abs"] > 1e-4
    assert out is model


def test_fold_gates_keeps_varying_gates():
    model, _ = make_se_model(SESpec())
    out, report = P.run_passes(model, ["fold-gates"], options=P.PassOptions(gate_std_threshold=1e-6),
                               calib_feeds=_calib())
    [entry] = report["passes"]
    assert entry["status"] == "no-op" and entry["details"]["blocks"][0]["gate_std_max"] > 1e-3
    assert out is model


def test_fold_gates_without_data_is_a_calibration_error():
    from se_deploy.errors import CalibrationError

    with pytest.raises(CalibrationError):
        P.run_passes(make_se_model(SESpec())[0], ["fold-gates"])


# ---------------------------------------------------------------------- zoo models


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("zoo_passes")


@pytest.mark.parametrize("name,exporter", [("se_resnet18", "legacy"), ("se_mobilenet_v2", "dynamo")])
def test_fuse_default_on_zoo_exports(zoo_dir, name, exporter):
    model, torch_model = export_zoo(name, exporter, zoo_dir)
    out, report = P.fuse_default(model)
    n = len(find_se_blocks(model))
    [entry] = report["passes"]
    assert entry["status"] in ("applied", "no-op") and report["se_blocks_after"] == n
    if entry["status"] == "applied":
        assert entry["verification"]["rel_max_abs"] <= 1e-5
    assert not {"Shape", "Gather", "Flatten", "Gemm"} & {
        nd.op_type for nd in out.graph.node if nd.name in {x for b in find_se_blocks(out) for x in b.node_names}}
    ablated = P.ablate_se(out)
    assert find_se_blocks(ablated) == []
    assert _ops(ablated)["Sigmoid"] == 0
    assert "summary" in report


def _stacked_se_model(c=8, cr=2, hw=4):
    """input -> SE1 (Gemm spelling) -> SE2 (Gemm spelling) -> output: the second block scales the first's output."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    nodes, inits = [], []

    def w(name, *shape):
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * 0.5).astype(np.float32), name))
        return name

    inits.append(numpy_helper.from_array(np.array([-1, c, 1, 1], np.int64), "shape4"))
    x = "input"
    for k in (1, 2):
        p = f"se{k}_"
        nodes += [
            helper.make_node("GlobalAveragePool", [x], [p + "gap"], name=p + "gap"),
            helper.make_node("Flatten", [p + "gap"], [p + "flat"], name=p + "flat"),
            helper.make_node("Gemm", [p + "flat", w(p + "w1", cr, c), w(p + "b1", cr)], [p + "h"], transB=1, name=p + "fc1"),
            helper.make_node("Relu", [p + "h"], [p + "a"], name=p + "act"),
            helper.make_node("Gemm", [p + "a", w(p + "w2", c, cr), w(p + "b2", c)], [p + "z"], transB=1, name=p + "fc2"),
            helper.make_node("Sigmoid", [p + "z"], [p + "g"], name=p + "gate"),
            helper.make_node("Reshape", [p + "g", "shape4"], [p + "g4"], name=p + "reshape"),
            helper.make_node("Mul", [x, p + "g4"], [p + "y"], name=p + "scale"),
        ]
        x = p + "y"
    g = helper.make_graph(nodes, "stacked", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, c, hw, hw])],
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, c, hw, hw])], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("names", [["canonicalize"], ["canonicalize", "hoist-squeeze"], ["ablate-se"]])
def test_back_to_back_blocks(names):
    model = _stacked_se_model()
    assert len(find_se_blocks(model)) == 2
    out, report = P.run_passes(model, names, verify=False)
    onnx.checker.check_model(out, full_check=True)
    assert report["passes"][0]["changed"] == 2
    x = {"input": np.random.default_rng(0).standard_normal((1, 8, 4, 4)).astype(np.float32)}
    if names == ["ablate-se"]:
        assert find_se_blocks(out) == [] and np.allclose(_outputs(out, x)[0], x["input"])
    else:
        assert len(find_se_blocks(out)) == 2
        assert _rel_err(_outputs(model, x)[0], _outputs(out, x)[0]) <= 1e-5


# ---------------------------------------------------------------------- expand-gate


def test_expand_gate_is_exact_and_stays_detectable():
    spec = SESpec(fc="gemm", reshape="reshape_dynamic", batch="N", c=16, r=4)
    model, _ = make_se_model(spec)
    out, report = P.run_passes(model, ["canonicalize", "expand-gate"])
    assert [e["status"] for e in report["passes"]] == ["applied", "applied"]
    resize = [n for n in out.graph.node if n.op_type == "Resize"]
    assert len(resize) == 1
    mul = next(n for n in out.graph.node if n.op_type == "Mul")
    assert resize[0].output[0] in mul.input
    # the expanded gate carries the scaled tensor's shape, symbolic batch included
    vi = {v.name: v for v in out.graph.value_info}[resize[0].output[0]]
    dims = [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
    assert dims[1:] == [16, 5, 5] and isinstance(dims[0], str)
    for b in (1, 3):
        feed = _feed(spec, {}, b)
        assert _rel_err(_outputs(model, feed)[0], _outputs(out, feed)[0]) <= 1e-5
    [blk] = find_se_blocks(out)
    assert blk.gate_expanded and blk.squeeze == "GlobalAveragePool"
    # idempotent, and canonicalize leaves the expanded form alone
    again, rep = P.run_passes(out, ["canonicalize", "expand-gate"])
    assert [e["status"] for e in rep["passes"]] == ["no-op", "no-op"] and again is out
    plain = P.ablate_se(out)
    assert not {"Resize", "Sigmoid", "GlobalAveragePool"} & {n.op_type for n in plain.graph.node}


def test_expand_gate_skips_blocks_it_cannot_prove():
    model, _ = make_se_model(SESpec(fc="gemm", reshape="flatten"))
    out, report = P.run_passes(model, ["expand-gate"])
    [entry] = report["passes"]
    assert entry["status"] == "no-op" and "canonicalize first" in next(iter(entry["details"]["skipped"].values()))


def test_expand_gate_keeps_onnxruntime_in_the_blocked_layout():
    """Structural check of the optimised graph (no timing): fewer layout reorders after expand-gate."""
    from se_deploy.runtime.onnxruntime import OrtConfig, OrtRunner

    def optimised_ops(model, path):
        with OrtRunner(model, OrtConfig(graph_optimization="all", optimized_model_path=str(path), threads=1)):
            pass
        return [(n.domain, n.op_type) for n in onnx.load(str(path)).graph.node]

    import tempfile
    from pathlib import Path

    model, _ = make_se_model(SESpec(c=32, r=4, hw=8, producer="conv3x3", consumer="add"))
    canon, _ = P.run_passes(model, ["canonicalize"])
    expanded, _ = P.run_passes(canon, ["expand-gate"])
    with tempfile.TemporaryDirectory() as td:
        before = optimised_ops(canon, Path(td) / "a.onnx")
        after = optimised_ops(expanded, Path(td) / "b.onnx")
    if not any(d == "com.microsoft.nchwc" for d, _ in before):
        pytest.skip("onnxruntime's NCHWc layout is not used on this CPU")
    reorders = lambda ops: sum(t in ("ReorderInput", "ReorderOutput") for _, t in ops)  # noqa: E731
    assert reorders(after) < reorders(before)
