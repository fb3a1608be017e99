"""The Q/DQ linter on known-bad and known-good handwritten graphs, and `se-deploy inspect --qdq tensorrt`."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from se_deploy.calibration.qdq_lint import lint
from se_deploy.cli import app
from tests.calibration.qdq_graphs import G

runner = CliRunner()


def _rules(model) -> list[tuple[str, str]]:
    return sorted((str(f.rule), f.node) for f in lint(model) if f.rule != "fp32_layer")


def _qconv(g: G, x: str, cin: int, cout: int, name: str) -> str:
    """A Conv reading DQ data and DQ per-channel int8 weights (the right form)."""
    q = np.clip(np.round(g.rng.standard_normal((cout, cin, 1, 1)) * 60), -127, 127)
    q[:, 0, 0, 0] = 127  # every channel uses its full range
    w = g.int8_weight(q, np.full(cout, 0.01))
    return g.op("Conv", [g.qdq(x), w], name)


def test_a_good_graph_has_no_findings():
    g = G((1, 8, 4, 4))
    x = g.op("Relu", [_qconv(g, "input", 8, 8, "c1")], "r1")
    y = _qconv(g, x, 8, 8, "c2")
    out = g.op("Add", [y, g.qdq(x)], "add")  # conv side float, residual side DQ
    assert _rules(g.model(out)) == []


def test_qdq_between_conv_and_add_and_a_float_residual():
    g = G((1, 8, 4, 4))
    x = g.op("Relu", [_qconv(g, "input", 8, 8, "c1")], "r1")
    y = _qconv(g, x, 8, 8, "c2")
    bad = g.op("Add", [g.qdq(y), x], "add")  # Q/DQ on the conv side, residual float
    assert _rules(g.model(bad)) == [("conv_add_qdq", "add"), ("float_residual", "add")]


def test_se_blocks_reading_float_maps():
    g = G((1, 16, 4, 4))
    x = g.op("Relu", [_qconv(g, "input", 16, 16, "c")], "relu")
    y = g.se(x, 16)  # squeeze, Mul map and gate all float
    out = _qconv(g, y, 16, 16, "after")
    found = [f for f in lint(g.model(out)) if f.rule == "se_float_map"]
    assert sorted((f.node, f.detail.split(" (")[0]) for f in found) == [
        ("se/scale", "the SE scale reads a float gate"), ("se/scale", "the SE scale reads a float map"),
        ("se/squeeze", "the SE squeeze reads a float map")]
    # the Conv FCs on a 1x1 map at batch 1 are matrix-vector products: no finding for their float inputs
    assert not [f for f in lint(g.model(out)) if f.rule == "unquantized_input"]


def test_se_squeeze_with_an_int8_input_but_float_output():
    g = G((1, 16, 4, 4))
    x = g.qdq(g.op("Relu", [_qconv(g, "input", 16, 16, "c")], "relu"))
    s = g.op("GlobalAveragePool", [x], "sq")
    h = g.op("Relu", [g.conv(s, 16, 4, name="fc1")], "act")
    gate = g.qdq(g.op("Sigmoid", [g.conv(h, 4, 16, name="fc2")], "gate"))
    out = _qconv(g, g.op("Mul", [x, gate], "scale"), 16, 16, "after")
    found = [f for f in lint(g.model(out)) if f.rule == "se_float_map"]
    assert [(f.node, "output is not quantized" in f.detail) for f in found] == [("sq", True)]


def test_inflated_weight_scales_and_rounded_away_channels():
    g = G((1, 3, 4, 4))
    q = np.zeros((4, 3, 1, 1))
    q[0, :, 0, 0] = [127, -20, 3]  # full range: fine
    q[1, :, 0, 0] = [50, -20, 3]  # 127/50 = 2.54x amax/127
    q[2, :, 0, 0] = [126, 0, 0]  # 127/126 = 1.008: rounding, fine
    # channel 3: all zero with a scale that is not onnxruntime's 1.0 for a zero channel: rounded away
    w = g.int8_weight(q, np.array([0.01, 0.01, 0.01, 0.5]))
    out = g.op("Conv", [g.qdq("input"), w], "conv")
    (f,) = [f for f in lint(g.model(out)) if f.rule == "inflated_weight_scale"]
    assert f.node == "conv" and "2 channel(s)" in f.detail and "channel 3, rounded to zero" in f.detail
    # float weights behind Q -> DQ (ModelOpt's form): scale * 127 / amax
    g2 = G((1, 3, 4, 4))
    wf = np.array([[1.0, 0.5, 0.1], [0.2, 0.1, 0.0]], np.float32).reshape(2, 3, 1, 1)
    s = g2.init("s", np.array([1.0 / 127, 0.5 / 127], np.float32))  # channel 1: 2.5x its amax of 0.2
    z = g2.init("z", np.zeros(2, np.int8))
    wq = g2.op("QuantizeLinear", [g2.init("w", wf), s, z], axis=0)
    out2 = g2.op("Conv", [g2.qdq("input"), g2.op("DequantizeLinear", [wq, s, z], axis=0)], "conv")
    (f2,) = [f for f in lint(g2.model(out2)) if f.rule == "inflated_weight_scale"]
    assert "1 channel(s)" in f2.detail and "channel 1, 2.5" in f2.detail


def test_int32_bias_unquantized_inputs_float_pool_and_asymmetric_zero_points():
    g = G((1, 8, 4, 4))
    bias = g.op("DequantizeLinear", [g.init("bq", np.arange(8, dtype=np.int32)), g.init("bs", np.array(1e-4, np.float32))])
    c1 = g.op("Conv", [g.qdq("input"), g.int8_weight(np.full((8, 8, 1, 1), 127), np.full(8, 0.01)), bias], "c1")
    c2 = g.conv(g.qdq(c1), 8, 8, name="c2")  # float weights
    p = g.op("MaxPool", [g.op("Relu", [c2], "r")], "pool", kernel_shape=[2, 2])
    out = g.op("Conv", [g.qdq(p, zp_type=np.uint8, zp=128), g.int8_weight(np.full((8, 8, 1, 1), 127), np.full(8, 0.01))],
               "c3")
    rules = _rules(g.model(out))
    assert ("int32_bias", "DequantizeLinear_2") in rules or any(r == "int32_bias" for r, _ in rules)
    assert ("unquantized_input", "c2") in rules and ("float_pool", "pool") in rules
    assert sum(r == "asymmetric_qdq" for r, _ in rules) == 2  # the uint8 Q and its DQ
    assert not any(n == "c1" for r, n in rules if r == "unquantized_input")


def test_fp32_layers_are_listed_and_fp16_layers_are_not():
    g = G((1, 8, 4, 4))
    out = g.op("Relu", [_qconv(g, "input", 8, 8, "c")], "r")
    fp32 = g.model(out)
    assert sorted(f.node for f in lint(fp32) if f.rule == "fp32_layer") == ["c", "r"]
    from se_deploy.calibration.fp16 import qdq_to_high_precision, raise_opset

    fp16, report = qdq_to_high_precision(raise_opset(fp32, 19))
    assert lint(fp16) == [] and report["moved_beyond_fp16_rounding"] == 0


def test_a_model_without_qdq_has_nothing_to_lint():
    g = G((1, 8, 4, 4))
    assert lint(g.model(g.conv("input", 8, 8))) == []


def test_cli_inspect_qdq(tmp_path):
    g = G((1, 8, 4, 4))
    x = g.op("Relu", [_qconv(g, "input", 8, 8, "c1")], "r1")
    bad = g.op("Add", [g.qdq(_qconv(g, x, 8, 8, "c2")), g.qdq(x)], "add")
    onnx.save(g.model(bad), str(tmp_path / "bad.onnx"))
    r = runner.invoke(app, ["inspect", str(tmp_path / "bad.onnx"), "--qdq", "tensorrt"])
    assert r.exit_code == 1 and "conv_add_qdq" in r.output and "add" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["inspect", str(tmp_path / "bad.onnx"), "--qdq", "tensorrt", "--json"])
    report = json.loads(r.output)
    assert r.exit_code == 1 and report["summary"]["conv_add_qdq"] == 1 and report["qdq_nodes"] > 0
    g2 = G((1, 8, 4, 4))
    onnx.save(g2.model(g2.conv("input", 8, 8)), str(tmp_path / "plain.onnx"))
    r = runner.invoke(app, ["inspect", str(tmp_path / "plain.onnx"), "--qdq", "tensorrt"])
    assert r.exit_code == 1 and "no Q/DQ nodes" in r.output
    r = runner.invoke(app, ["inspect", str(tmp_path / "plain.onnx"), "--qdq", "cpu"])
    assert r.exit_code == 2 and "tensorrt only" in r.output


@pytest.mark.parametrize("mode", ["cheap", "all"])
def test_se_deploy_output_lints_clean(tiny_se_onnx, tmp_path, mode):
    from se_deploy.calibration.dataset import CalibrationSet
    from se_deploy.calibration.quantize import QuantConfig, quantize_int8

    x = np.random.default_rng(0).standard_normal((16, 3, 16, 16)).astype(np.float32)
    out = tmp_path / "q.onnx"
    quantize_int8(tiny_se_onnx, out, CalibrationSet(x, "input", "npz", {}), QuantConfig(se_mode=mode))
    r = runner.invoke(app, ["inspect", str(out), "--qdq", "tensorrt"])
    assert r.exit_code == 0 and "no placement findings" in r.output, r.output
