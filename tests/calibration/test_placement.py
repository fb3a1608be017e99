"""The tensorrt placement rules, one small handwritten graph per rule, each quantized and run under onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from se_deploy.calibration.dataset import CalibrationSet
from se_deploy.calibration.qdq_lint import lint
from se_deploy.calibration.quantize import QuantConfig, quantize_int8
from tests.calibration.qdq_graphs import G, reads_dq


def _quantize(g: G, out_name: str, tmp_path, batch: int = 1, **cfg):
    src = g.save(out_name, tmp_path / "f32.onnx")
    rng = np.random.default_rng(1)
    shape = (batch * 24, *g.shape[1:])
    x = rng.standard_normal(shape).astype(np.float32)
    calib = CalibrationSet(x[: batch * 16], "input", "npz", {"role": "calibration"})
    held = CalibrationSet(x[batch * 16:], "input", "npz", {"role": "held-out"})
    cfg.setdefault("preprocess_model", False)
    side = quantize_int8(src, tmp_path / "int8.onnx", calib, QuantConfig(**cfg), eval_set=held)
    model = onnx.load(str(tmp_path / "int8.onnx"))
    # every placement is checked numerically: the INT8 graph tracks FP32 on held-out inputs
    assert side["accuracy"]["candidates"]["int8"]["cosine"] > 0.99, side["accuracy"]
    return model, side


def _decision(side, node):
    return next(d for d in side["placement"]["decisions"] if d["node"] == node)


def test_rule_weighted_ops_int8_data_and_per_channel_weights(tmp_path):
    g = G((1, 8, 8, 8))
    a = g.op("Relu", [g.conv("input", 8, 16, 3, name="conv")], "relu")
    w = (g.rng.standard_normal((16, 4, 2, 2)) * 0.2).astype(np.float32)  # ConvTranspose: (Cin, Cout, k, k)
    up = g.op("ConvTranspose", [a, g.init("wt", w)], "deconv", strides=[2, 2])
    model, side = _quantize(g, up, tmp_path, high_precision="fp32")
    assert reads_dq(model, "conv", 0) and reads_dq(model, "conv", 1)
    assert reads_dq(model, "deconv", 0) and reads_dq(model, "deconv", 1)
    assert not reads_dq(model, "relu", 0)  # Relu fuses into the Conv: no Q/DQ of its own
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node, axis, channels in (("conv", 0, 16), ("deconv", 1, 4)):
        dq = producer[next(n for n in model.graph.node if n.name == node).input[1]]
        assert inits[dq.input[0]].dtype == np.int8 and inits[dq.input[1]].shape == (channels,)
        assert next((a.i for a in dq.attribute if a.name == "axis"), 1) == axis
    assert _decision(side, "conv")["rule"] == "weighted-op"
    # FP32 float layers are this form's only findings (a strongly typed build would run them in FP32)
    assert {f["rule"] for f in side["lint"]} == {"fp32_layer"} and side["high_precision"] == "fp32"


def test_rule_residual_add_leaves_the_conv_input_float(tmp_path):
    g = G((1, 8, 8, 8))
    x = g.op("Relu", [g.conv("input", 8, 8, name="stem")], "stem_relu")
    y = g.op("Relu", [g.conv(x, 8, 8, 3, name="c1")], "r1")
    z = g.conv(y, 8, 8, 3, name="c2")
    s = g.op("Add", [z, x], "add")  # identity residual: c2 fuses the Add, the skip x is quantized
    d = g.conv(s, 8, 16, name="ds")  # a downsample block: both Add inputs come from Convs
    m = g.conv(g.op("Relu", [g.conv(s, 8, 16, 3, name="c3")], "r3"), 16, 16, 3, name="c4")
    out = g.op("Relu", [g.op("Add", [d, m], "add2")], "out")
    model, side = _quantize(g, out, tmp_path)
    assert not reads_dq(model, "add", 0) and reads_dq(model, "add", 1)
    # both from Convs: c4 is farther from the common ancestor (the first Add) than ds, so c4 fuses
    assert reads_dq(model, "add2", 0) and not reads_dq(model, "add2", 1)
    assert reads_dq(model, "c1", 0)  # the skip's Q/DQ is shared with the next conv's input
    edges = {(e["node"], e["input_index"]) for e in side["placement"]["float_inputs"]}
    assert edges == {("add", 0), ("add2", 1)} and side["placement"]["float_inputs_restored"] == 2
    assert "farther from their common ancestor" in _decision(side, "add2")["reason"]
    assert side["lint"] == []


def test_rule_residual_add_not_residual_when_one_conv_feeds_both(tmp_path):
    g = G((1, 8, 8, 8))
    c = g.op("Relu", [g.conv("input", 8, 8, name="c")], "relu")
    b = g.op("Sigmoid", [g.conv(c, 8, 8, name="branch")], "sig")
    out = g.op("Add", [c, b], "add")  # the Conv c feeds the other input too: no epilogue to fuse into
    model, side = _quantize(g, out, tmp_path)
    assert reads_dq(model, "add", 0) and reads_dq(model, "add", 1)
    assert "also feeds the other input" in _decision(side, "add")["reason"]


@pytest.mark.parametrize("batch, k, n, quantized", [(1, 32, 32, False), ("N", 32, 32, False), (16, 32, 32, True),
                                                    (16, 32, 8, False), (16, 8, 32, False)])
def test_rule_matrix_vector_gemm_stays_float(tmp_path, batch, k, n, quantized):
    g = G((1, k, 4, 4), batch=batch)
    flat = g.op("Flatten", [g.op("GlobalAveragePool", [g.conv("input", k, k, name="conv")], "pool")], "flat")
    out = g.gemm(flat, k, n, name="fc")
    static = batch if isinstance(batch, int) else 1
    model, side = _quantize(g, out, tmp_path, batch=static)
    assert reads_dq(model, "fc", 0) is quantized and reads_dq(model, "fc", 1) is quantized
    assert _decision(side, "fc")["rule"] == ("weighted-op" if quantized else "matrix-vector")


def test_rule_pooling_quantizes_a_pool_that_feeds_int8(tmp_path):
    g = G((1, 8, 8, 8))
    x = g.op("Relu", [g.conv("input", 8, 8, 3, name="stem")], "relu")
    p = g.op("MaxPool", [x], "pool", kernel_shape=[2, 2], strides=[2, 2])
    y = g.conv(p, 8, 8, name="c1")
    tail = g.op("AveragePool", [y], "tail_pool", kernel_shape=[2, 2], strides=[2, 2])  # feeds the graph output
    model, side = _quantize(g, tail, tmp_path)
    assert reads_dq(model, "pool", 0) and reads_dq(model, "c1", 0)
    assert not reads_dq(model, "tail_pool", 0)
    assert _decision(side, "pool")["rule"] == "pooling" and not _decision(side, "tail_pool")["quantize"]


def _se_graph(squeeze: str):
    g = G((1, 16, 8, 8))
    x = g.op("Relu", [g.conv("input", 16, 16, 3, name="c")], "relu")
    y = g.se(x, 16, squeeze=squeeze)
    return g, g.conv(y, 16, 16, name="after")


@pytest.mark.parametrize("mode", ["cheap", "float", "all"])
def test_rule_se_modes_on_the_canonical_form(tmp_path, mode):
    g, out = _se_graph("gap")
    model, side = _quantize(g, out, tmp_path, se_mode=mode)
    squeeze_in, scale_map, scale_gate = (reads_dq(model, "se/squeeze", 0), reads_dq(model, "se/scale", 0),
                                         reads_dq(model, "se/scale", 1))
    fc1, fc2 = reads_dq(model, "se/fc1", 0), reads_dq(model, "se/fc2", 1)
    if mode == "float":
        assert not (squeeze_in or scale_map or scale_gate or fc1 or fc2)
    else:
        # the squeeze reads INT8 and writes INT8 (the FC's input), the Mul reads INT8 map and gate
        assert squeeze_in and scale_map and scale_gate and fc1
        assert fc2 is (mode == "all")  # the FC weights: INT8 only when everything is
        assert not reads_dq(model, "se/gate", 0) and not reads_dq(model, "se/act", 0)
    assert side["se_mode"] == mode and side["se_blocks"] == 1
    findings = {f["rule"] for f in side["lint"]}
    assert findings == (set() if mode != "float" else {"se_float_map", "fp32_layer"} - {"fp32_layer"})


def test_rule_se_cheap_on_the_reducemean_gemm_spelling(tmp_path):
    g, out = _se_graph("mean")
    model, side = _quantize(g, out, tmp_path)
    # the map is read in INT8 by both the squeeze and the Mul (one shared Q/DQ); the Gemm FCs are
    # matrix-vector and stay float, as does ReduceMean's output (it has no Q/DQ form)
    assert reads_dq(model, "se/squeeze", 0) and reads_dq(model, "se/scale", 0) and reads_dq(model, "se/scale", 1)
    assert not reads_dq(model, "se/fc1", 0) and not reads_dq(model, "se/fc2", 1)
    assert side["lint"] == []


def test_rule_user_exclude_wins(tmp_path):
    g = G((1, 8, 8, 8))
    out = g.conv(g.op("Relu", [g.conv("input", 8, 8, name="a")], "r"), 8, 8, name="b")
    model, side = _quantize(g, out, tmp_path, exclude=("b",))
    assert reads_dq(model, "a", 0) and not reads_dq(model, "b", 0) and not reads_dq(model, "b", 1)
    assert _decision(side, "b")["rule"] == "user-exclude"
    assert [f["rule"] for f in side["lint"]] == ["unquantized_input", "unquantized_input"]


def test_fp16_high_precision_types(tmp_path):
    """Default tensorrt form: FP32 graph I/O behind one Cast each, every float layer FP16, FP16 scales, opset 19."""
    g, out = _se_graph("gap")
    out = g.op("Add", [out, g.op("Relu", [g.conv("input", 16, 16, name="skip")], "skip_relu")], "add")
    model, side = _quantize(g, out, tmp_path)
    assert side["high_precision"] == "fp16" and side["structure"]["opset"] >= 19
    typed = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in list(typed.graph.value_info) + list(typed.graph.output)}
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert typed.graph.input[0].type.tensor_type.elem_type == f32 and typed.graph.output[0].type.tensor_type.elem_type == f32
    assert [n.op_type for n in model.graph.node].count("Cast") == 2
    for n in typed.graph.node:
        if n.op_type in ("Conv", "Relu", "Sigmoid", "Mul", "Add", "GlobalAveragePool", "DequantizeLinear"):
            assert types[n.output[0]] == f16, n.name
    inits = {i.name: i for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            assert inits[n.input[1]].data_type == f16 and inits[n.input[2]].data_type == onnx.TensorProto.INT8
    assert not any(i.data_type == f32 for i in model.graph.initializer)
    assert side["lint"] == [] and lint(model) == []
    assert side["accuracy"]["candidates"]["int8"]["sqnr_db"] > 25


def test_weight_scales_are_not_enlarged_for_an_int32_bias(tmp_path):
    """Tiny activations and a large float bias: onnxruntime enlarges the weight scales to fit an int32 bias unless
    QDQDisableWeightAdjustForInt32Bias is set (the tensorrt target sets it; the bias stays float anyway). The
    linter's structural check catches the enlarged form."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from se_deploy.calibration.qdq_lint import lint

    g = G((1, 16, 4, 4))
    w = (g.rng.standard_normal((16, 16, 1, 1)) * 0.1).astype(np.float32)
    out = g.op("Conv", ["input", g.init("w", w), g.init("b", np.full(16, 50.0, np.float32))], "conv")
    src = g.save(out, tmp_path / "f32.onnx")
    x = (np.random.default_rng(1).standard_normal((24, 16, 4, 4)) * 1e-5).astype(np.float32)
    side = quantize_int8(src, tmp_path / "ours.onnx", CalibrationSet(x, "input", "npz", {}),
                         QuantConfig(preprocess_model=False))
    assert side["lint"] == []

    class Reader:
        def __init__(self):
            self.it = iter([{"input": x[i:i + 1]} for i in range(8)])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(src), str(tmp_path / "adjusted.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False})
    (finding,) = [f for f in lint(onnx.load(str(tmp_path / "adjusted.onnx"))) if f.rule == "inflated_weight_scale"]
    assert finding.node == "conv" and "16 channel(s)" in finding.detail
