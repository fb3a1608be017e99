"""Per-op profile: trace parsing, mapping onnxruntime's fused names back, and the SE bucket."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from se_deploy.bench.profile import SE_BUCKET, aggregate, profile_onnx
from se_deploy.runtime.base import NodeProfile, NodeTime
from se_deploy.runtime.ort_profile import attribute_nodes, parse_trace
from se_deploy.errors import BenchmarkError, InputError, UsageError

SE_NODES = {"se/squeeze", "se/fc1", "se/act", "se/fc2", "se/gate", "se/scale"}
OTHER_NODES = {"stem/conv", "stem/relu", "head/conv", "head/add", "head/relu"}


def se_graph(c: int = 16, hw: int = 32) -> onnx.ModelProto:
    """stem conv -> SE block (GAP, 1x1 conv, relu, 1x1 conv, sigmoid, mul) -> conv + residual, named nodes."""
    rng = np.random.default_rng(0)

    def w(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype(np.float32), name)

    inits = [w("stem_w", c, 3, 3, 3), w("stem_b", c), w("fc1_w", c // 4, c, 1, 1), w("fc1_b", c // 4),
             w("fc2_w", c, c // 4, 1, 1), w("fc2_b", c), w("head_w", c, c, 3, 3), w("head_b", c)]
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "stem_w", "stem_b"], ["stem"], name="stem/conv", pads=[1, 1, 1, 1]),
        n("Relu", ["stem"], ["a"], name="stem/relu"),
        n("GlobalAveragePool", ["a"], ["s"], name="se/squeeze"),
        n("Conv", ["s", "fc1_w", "fc1_b"], ["f1"], name="se/fc1"),
        n("Relu", ["f1"], ["r1"], name="se/act"),
        n("Conv", ["r1", "fc2_w", "fc2_b"], ["f2"], name="se/fc2"),
        n("Sigmoid", ["f2"], ["g"], name="se/gate"),
        n("Mul", ["a", "g"], ["se_out"], name="se/scale"),
        n("Conv", ["se_out", "head_w", "head_b"], ["hc"], name="head/conv", pads=[1, 1, 1, 1]),
        n("Add", ["hc", "a"], ["res"], name="head/add"),
        n("Relu", ["res"], ["y"], name="head/relu"),
    ]
    graph = helper.make_graph(nodes, "tiny_se", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, hw, hw])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, hw, hw])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _feed():
    return {"x": np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)}


def _ev(cat, name, ts, dur, op=None):
    e = {"cat": cat, "name": name, "ts": ts, "dur": dur, "ph": "X"}
    if op:
        e["args"] = {"op_name": op, "provider": "CPUExecutionProvider"}
    return e


def test_parse_trace_averages_runs_after_warmup():
    events = [
        _ev("Session", "session_initialization", 0, 50),
        _ev("Session", "model_run", 100, 100),  # warm-up run: its nodes are ignored
        _ev("Node", "conv_kernel_time", 110, 80, "Conv"),
        _ev("Session", "model_run", 300, 40),
        _ev("Node", "conv_kernel_time", 305, 20, "Conv"),
        _ev("Node", "conv_fence_before", 305, 1, "Conv"),  # not a kernel event
        _ev("Node", "mul_kernel_time", 326, 10, "Mul"),
        _ev("Session", "model_run", 400, 30),
        _ev("Node", "conv_kernel_time", 402, 16, "Conv"),
        _ev("Node", "mul_kernel_time", 420, 6, "Mul"),
        _ev("Node", "stray_kernel_time", 1000, 99, "Add"),  # outside every run window
    ]
    nodes, runs = parse_trace(events, skip_runs=1)
    assert runs == [40.0, 30.0]
    assert nodes == {"conv": {"op_type": "Conv", "provider": "CPUExecutionProvider", "us": 18.0},
                     "mul": {"op_type": "Mul", "provider": "CPUExecutionProvider", "us": 8.0}}
    with pytest.raises(BenchmarkError, match="leave nothing to measure"):
        parse_trace(events, skip_runs=3)


def test_aggregate_groups_se_and_reports_mixed_nodes():
    prof = NodeProfile((NodeTime("c1", "Conv", 60.0, ("conv1",)), NodeTime("gap", "GlobalAveragePool", 10.0, ("se.gap",)),
                        NodeTime("fused", "FusedConv", 20.0, ("se.mul", "conv2")), NodeTime("odd", "Reshape", 10.0)),
                       runs_ms=(0.2,))
    r = aggregate(prof, {"se.gap", "se.mul"})
    assert r["total_ms"] == pytest.approx(0.1)
    assert r["by_op"] == {
        "Conv": {"ms": pytest.approx(0.06), "pct": pytest.approx(60.0), "count": 1},
        "FusedConv": {"ms": pytest.approx(0.02), "pct": pytest.approx(20.0), "count": 1},
        SE_BUCKET: {"ms": pytest.approx(0.01), "pct": pytest.approx(10.0), "count": 1},
        "Reshape": {"ms": pytest.approx(0.01), "pct": pytest.approx(10.0), "count": 1},
    }
    assert r["se_blocks"]["mixed_nodes"] == ["fused"]
    assert r["se_blocks"]["by_op"] == {"GlobalAveragePool": {"ms": pytest.approx(0.01), "pct": pytest.approx(10.0),
                                                             "count": 1}}
    assert r["unattributed"] == ["odd"]
    assert sum(v["pct"] for v in r["by_op"].values()) == pytest.approx(100.0)


@pytest.mark.parametrize("level", ["disable", "basic", "extended", "all"])
def test_profile_attributes_fused_nodes_back_to_the_se_block(level):
    r = profile_onnx(se_graph(), _feed(), iters=3, warmup=1, threads=1, se_node_names=SE_NODES,
                     graph_optimization=level)
    assert r["unattributed"] == []
    # Op types (with SE grouped) sum to the total kernel time, and kernels fit inside the runs.
    assert math.isclose(sum(v["ms"] for v in r["by_op"].values()), r["total_ms"], rel_tol=1e-9)
    assert math.isclose(sum(v["ms"] for v in r["by_op_type"].values()), r["total_ms"], rel_tol=1e-9)
    assert 0 < r["total_ms"] <= r["run_ms"]
    se = r["se_blocks"]
    assert SE_BUCKET in r["by_op"] and se["count"] >= 1 and se["ms"] > 0
    assert se["mixed_nodes"] == [] and se["se_nodes_not_seen"] == []
    covered_se = {o for n in r["nodes"] if n["se"] for o in n["original"]}
    covered_other = {o for n in r["nodes"] if not n["se"] for o in n["original"]}
    assert covered_se == SE_NODES  # every SE node is accounted for inside the bucket ...
    assert not covered_other & SE_NODES  # ... and no SE node leaks into the other rows
    assert covered_other <= OTHER_NODES and "head/conv" in covered_other and "stem/conv" in covered_other
    if level == "disable":  # no fusion: trace names are exactly the node names
        assert {n["name"] for n in r["nodes"]} == SE_NODES | OTHER_NODES
        assert se["count"] == 6 and "Sigmoid" in se["by_op"]


def test_se_nodes_detected_automatically(tmp_path):
    path = tmp_path / "se.onnx"
    onnx.save(se_graph(), str(path))
    r = profile_onnx(str(path), _feed(), iters=2, warmup=1, graph_optimization="extended")
    assert r["notes"] == []
    assert {o for n in r["nodes"] if n["se"] for o in n["original"]} == SE_NODES
    none = profile_onnx(str(path), _feed(), iters=2, warmup=1, se_node_names=set())
    assert none["se_blocks"] is None and SE_BUCKET not in none["by_op"]


def test_unexplained_trace_names_are_reported_not_guessed():
    model = se_graph()
    mapping, unattributed = attribute_nodes(model, None, ["stem/conv", "a_nchwc", "MysteryKernel_token_3"])
    assert mapping["stem/conv"] == ["stem/conv"]
    assert "stem/relu" in mapping["a_nchwc"]  # named after the tensor its fusion writes
    assert unattributed == ["MysteryKernel_token_3"]


def test_bad_arguments():
    with pytest.raises(UsageError, match="iterations"):
        profile_onnx(se_graph(), _feed(), iters=0)
    with pytest.raises(InputError, match="missing"):
        profile_onnx(se_graph(), {"input": _feed()["x"]}, iters=1)
    with pytest.raises(InputError, match="not found"):
        profile_onnx("/no/such/model.onnx", _feed(), iters=1)


def test_quantized_model_groups_se_blocks_found_in_its_float_source(tmp_path):
    # Q/DQ nodes hide the SE pattern; the float source named in the INT8 sidecar supplies the names,
    # and a QLinear kernel fused from an SE node plus its Q/DQ counts as SE work.
    from se_deploy.calibration.dataset import load_calibration
    from se_deploy.calibration.preprocess import make_preprocess
    from se_deploy.calibration.quantize import QuantConfig, quantize_int8

    src = tmp_path / "se.onnx"
    onnx.save(se_graph(), str(src))
    calib = load_calibration(None, input_name="x", input_shape=(1, 3, 32, 32), preprocess=make_preprocess("none"),
                             calib_size=8, seed=0, synthetic=True)
    q = tmp_path / "se.int8.onnx"
    quantize_int8(src, q, calib, QuantConfig(target="cpu", method="minmax"))
    qmodel = onnx.load(str(q))
    assert any(n.op_type == "QuantizeLinear" for n in qmodel.graph.node)
    r = profile_onnx(str(q), _feed(), iters=2, warmup=1)
    assert any("float source model" in note for note in r["notes"])
    se_rows = [n for n in r["nodes"] if n["se"]]
    assert se_rows and r["se_blocks"]["ms"] > 0
    assert {o for n in se_rows for o in n["original"]} >= {"se/fc1", "se/gate"}
    assert SE_BUCKET in r["by_op"]
