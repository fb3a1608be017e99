"""INT8 Q/DQ structure per target, SE-aware exclusions, --exclude, and FP16 conversion, on a tiny SE model."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from se_deploy.calibration.dataset import CalibrationSet
from se_deploy.calibration.fp16 import Fp16Config, convert_fp16
from se_deploy.calibration.quantize import QuantConfig, quantize_int8
from se_deploy.runtime.onnxruntime import run_onnx
from se_deploy.errors import CalibrationError, InputError, UsageError
from se_deploy.export.se_detect import find_se_blocks
from se_deploy.numerics import compare_arrays


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((48, 3, 16, 16)).astype(np.float32)
    calib = CalibrationSet(x[:32], "input", "npz", {"role": "calibration"})
    held = CalibrationSet(x[32:], "input", "npz", {"role": "held-out evaluation"})
    return calib, held


def _excitation_nodes(model) -> set[str]:
    return {n for b in find_se_blocks(model) for n in b.excitation_nodes}


def _zero_points(model) -> list[np.ndarray]:
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return [inits[n.input[2]] for n in model.graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2 and n.input[2] in inits]


def _decisions(side) -> dict[str, dict]:
    return {d["node"]: d for d in side["placement"]["decisions"]}


@pytest.fixture(scope="module")
def trt_int8(tiny_se_onnx, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "tiny.trt.int8.onnx"
    side = quantize_int8(tiny_se_onnx, out, data[0], QuantConfig(target="tensorrt"), eval_set=data[1])
    return out, side


def test_tensorrt_form_is_symmetric_s8_float_bias_per_channel(trt_int8):
    out, side = trt_int8
    model = onnx.load(str(out))
    zps = _zero_points(model)
    assert zps and all(z.dtype == np.int8 and not z.any() for z in zps)
    ops = [n.op_type for n in model.graph.node]
    assert "DynamicQuantizeLinear" not in ops
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name: i for i in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    for conv in convs:
        if len(conv.input) > 2:  # bias: a float (FP16) initializer, never an int32 DequantizeLinear
            assert conv.input[2] in inits and inits[conv.input[2]].data_type == onnx.TensorProto.FLOAT16
    adds = [n for n in model.graph.node if n.op_type == "Add"]
    assert len(adds) == 2  # neither Add can fuse into a Conv here, so both read INT8 on both inputs
    for add in adds:
        assert all(producer[i].op_type == "DequantizeLinear" for i in add.input), add.name
    # per-channel weights: the weight DequantizeLinear of a quantized conv has one scale per output channel
    dec = _decisions(side)
    conv = next(c for c in convs if dec[c.name]["quantize"])
    wdq = producer[conv.input[1]]
    assert numpy_helper.to_array(inits[wdq.input[1]]).shape == (16,)
    assert side["structure"]["int32_bias_dequantize"] == 0 and side["structure"]["dynamic_quantize_linear"] == 0
    assert side["lint"] == [] and side["high_precision"] == "fp16" and side["se_mode"] == "cheap"
    onnx.checker.check_model(model)


def test_cheap_se_reads_int8_and_keeps_the_excitation_in_fp16(tiny_se_onnx, trt_int8):
    out, side = trt_int8
    model = onnx.load(str(out))
    exc = _excitation_nodes(onnx.load(str(tiny_se_onnx)))
    assert len(exc) == 10, "SE detection must find both blocks (2 x squeeze, FC, act, FC, gate)"
    producer = {o: n for n in model.graph.node for o in n.output}
    nodes = {n.name: n for n in model.graph.node}
    dec = _decisions(side)
    for name in exc:
        node = nodes[name]
        if node.op_type == "Conv":  # excitation FC weights stay FP16 initializers
            assert node.input[1] not in producer, f"{name} has quantized weights"
            assert dec[name]["rule"] == "se-excitation" and not dec[name]["quantize"]
    for scale in (n for n in model.graph.node if n.op_type == "Mul"):  # the scale reads INT8 map and gate
        assert all(producer[i].op_type == "DequantizeLinear" for i in scale.input), scale.name
        assert dec[scale.name]["rule"] == "se-scale"
    assert side["se_blocks"] == 2 and side["status"] == "accepted" and side["target"] == "tensorrt"
    acc = side["accuracy"]["candidates"]["int8"]
    assert acc["cosine"] > 0.999 and acc["sqnr_db"] > 25
    assert side["calibration"]["samples"] == 32 and side["accuracy"]["samples"] == 16


def test_quantize_all_puts_the_excitation_in_int8(tiny_se_onnx, data, tmp_path):
    out = tmp_path / "all.onnx"
    side = quantize_int8(tiny_se_onnx, out, data[0], QuantConfig(target="tensorrt", se_mode="all"))
    model = onnx.load(str(out))
    producer = {o: n for n in model.graph.node for o in n.output}
    fcs = [n for n in model.graph.node if n.op_type == "Conv" and "fc" in n.name]
    assert len(fcs) == 4 and all(producer[n.input[1]].op_type == "DequantizeLinear" for n in fcs)
    assert side["se_mode"] == "all" and side["lint"] == []


def test_float_se_is_the_comparison_form(tiny_se_onnx, data, tmp_path):
    out = tmp_path / "float.onnx"
    side = quantize_int8(tiny_se_onnx, out, data[0], QuantConfig(target="tensorrt", se_mode="float"))
    assert side["se_mode"] == "float"
    assert {f["rule"] for f in side["lint"]} == {"se_float_map"}
    assert any("placement finding(s)" in w for w in side["warnings"])


def test_cpu_form_is_u8_activations_s8_per_channel_weights(tiny_se_onnx, data, tmp_path):
    out = tmp_path / "cpu.onnx"
    side = quantize_int8(tiny_se_onnx, out, data[0], QuantConfig(target="cpu"), eval_set=data[1])
    model = onnx.load(str(out))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    q_zps = {inits[n.input[2]].dtype for n in model.graph.node if n.op_type == "QuantizeLinear"}
    assert q_zps == {np.dtype(np.uint8)}
    weights = [v for v in inits.values() if v.dtype == np.int8 and v.ndim == 4]
    assert weights, "conv weights are stored as int8"
    assert side["high_precision"] == "fp32" and side["structure"]["fp16_tensors"] == 0
    producer = {o: n for n in model.graph.node for o in n.output}
    fcs = [n for n in model.graph.node if n.op_type == "Conv" and "fc" in n.name]
    assert fcs and not any(n.input[1] in producer for n in fcs)  # the excitation stays float
    ref = run_onnx(str(tiny_se_onnx), {"input": data[1].arrays})["logits"]
    got = run_onnx(str(out), {"input": data[1].arrays})["logits"]
    assert compare_arrays(ref, got).cosine > 0.999


def test_exclude_by_op_type_and_node_name(tiny_se_onnx, data, tmp_path):
    out = tmp_path / "ex.onnx"
    side = quantize_int8(tiny_se_onnx, out, data[0], QuantConfig(target="tensorrt", exclude=("Gemm",)))
    gemm = [e for e in side["excluded_nodes"] if e["reason"] == "user-exclude"]
    assert len(gemm) == 1
    model = onnx.load(str(out))
    producer = {o: n for n in model.graph.node for o in n.output}
    node = next(n for n in model.graph.node if n.op_type == "Gemm")
    assert all(i not in producer or producer[i].op_type != "DequantizeLinear" for i in node.input)
    with pytest.raises(UsageError, match="--exclude 'NoSuchLayer' matches no node"):
        quantize_int8(tiny_se_onnx, tmp_path / "bad.onnx", data[0], QuantConfig(exclude=("NoSuchLayer",)))
    assert not (tmp_path / "bad.onnx").exists()


def test_small_calibration_warns_and_wrong_input_name_fails(tiny_se_onnx, data, tmp_path):
    side = quantize_int8(tiny_se_onnx, tmp_path / "w.onnx", data[0], QuantConfig())
    assert any("only 32 calibration samples (< 100)" in w for w in side["warnings"])
    wrong = CalibrationSet(data[0].arrays, "images", "npz", {})
    with pytest.raises(CalibrationError, match="keyed 'images' but the model input is 'input'"):
        quantize_int8(tiny_se_onnx, tmp_path / "x.onnx", wrong, QuantConfig())
    assert not (tmp_path / "x.onnx").exists()


def test_fp16_or_quantized_models_are_refused_with_one_line(tiny_se_onnx, data, trt_int8, tmp_path):
    fp16 = tmp_path / "m.fp16.onnx"
    convert_fp16(tiny_se_onnx, fp16, Fp16Config())
    with pytest.raises(InputError, match=r"is an FP16 model \(\d+ FP16 tensors\): quantize the FP32 model instead"):
        quantize_int8(fp16, tmp_path / "x.onnx", data[0], QuantConfig())
    with pytest.raises(InputError, match="is already quantized"):
        quantize_int8(trt_int8[0], tmp_path / "x.onnx", data[0], QuantConfig())
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("kw, msg", [
    ({"target": "gpu"}, "^target: 'gpu' is not one of tensorrt, cpu$"),
    ({"method": "kl"}, "^method: 'kl' is not one of minmax, entropy, percentile$"),
    ({"percentile": 50.0}, "^percentile: 50.0 must be >= 90"), ({"max_drop": -1.0}, "^max_drop: -1.0 must be >= 0"),
    ({"batch_size": 0}, "^batch_size: 0 must be > 0$"),
    ({"se_mode": "half"}, "^se_mode: 'half' is not one of cheap, float, all$"),
    ({"high_precision": "bf16"}, "^high_precision: 'bf16' is not one of fp16, fp32$"),
    ({"entropy_bins": 64}, "^entropy_bins: 64 must be >= 128$"),
    ({"target": "cpu", "high_precision": "fp16"}, "^high_precision: 'fp16' is for the tensorrt target"),
    ({"target": "tensorrt", "per_channel": False}, "^per_channel: false is refused for the tensorrt target")])
def test_quant_config_validation(kw, msg):
    with pytest.raises(UsageError, match=msg):
        QuantConfig(**kw)


def test_fp16_keeps_float32_io_and_matches_fp32(tiny_se_onnx, data, tmp_path):
    out = tmp_path / "h.onnx"
    side = convert_fp16(tiny_se_onnx, out, Fp16Config(), eval_set=data[1])
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    fp16_inits = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert len(fp16_inits) >= 8 and side["cast_nodes"] >= 2
    ref = run_onnx(str(tiny_se_onnx), {"input": data[1].arrays})["logits"]
    got = run_onnx(str(out), {"input": data[1].arrays})["logits"]
    c = compare_arrays(ref, got)
    assert c.cosine > 0.9999 and c.top1_agreement == 1.0
    assert side["numerics"]["cosine"] == pytest.approx(c.cosine, abs=1e-6)


def test_fp16_io_and_keep_se_float(tiny_se_onnx, tmp_path):
    out = tmp_path / "h16.onnx"
    side = convert_fp16(tiny_se_onnx, out, Fp16Config(keep_io_types=False, keep_se_float=True))
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert len(side["se_nodes_kept_float"]) == 10
    inits = {i.name: i for i in model.graph.initializer}
    fc = next(n for n in model.graph.node if n.name in side["se_nodes_kept_float"] and n.op_type == "Conv")
    assert inits[fc.input[1]].data_type == onnx.TensorProto.FLOAT
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    got = run_onnx(str(out), {"input": x.astype(np.float16)})["logits"]
    assert got.dtype == np.float16


def test_entropy_and_percentile_calibration_differ_from_minmax(tiny_se_onnx, data, tmp_path):
    """With 128 bins for 128 levels onnxruntime's KL search has one candidate (about minmax, what ModelOpt
    gets); with 2048 bins it searches thresholds and clips."""

    def act_scales(method: str, **kw) -> np.ndarray:
        out = tmp_path / f"{method}.onnx"
        side = quantize_int8(tiny_se_onnx, out, data[0], QuantConfig(target="tensorrt", method=method,
                                                                     high_precision="fp32", **kw))
        assert side["method"] == method
        model = onnx.load(str(out))
        inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        return np.asarray([float(inits[n.input[1]]) for n in model.graph.node if n.op_type == "QuantizeLinear"])

    minmax, pct = act_scales("minmax"), act_scales("percentile")
    e128, e2048 = act_scales("entropy", entropy_bins=128), act_scales("entropy", entropy_bins=2048)
    assert minmax.shape == e128.shape == e2048.shape == pct.shape
    assert np.all(e128 <= minmax * 1.0001) and np.all(e128 >= minmax * 0.5)
    assert np.all(e2048 <= minmax * 1.0001) and np.any(e2048 < minmax * 0.99)
    assert np.all(pct <= minmax * 1.0001) and np.any(pct < minmax * 0.99)


def test_static_batch_one_model_checks_sample_by_sample(tiny_se_onnx, data, tmp_path):
    model = onnx.load(str(tiny_se_onnx))
    for value in (model.graph.input[0], model.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_value = 1  # a batch-1 export, as most deployments use
    static = tmp_path / "static.onnx"
    onnx.save(model, str(static))
    side = convert_fp16(static, tmp_path / "static.fp16.onnx", Fp16Config())
    assert side["numerics"]["n"] == 4 and side["status"] == "accepted"
    q = quantize_int8(static, tmp_path / "static.int8.onnx", data[0], QuantConfig(target="cpu"), eval_set=data[1])
    assert q["calibration"]["batch_size"] == 1 and q["accuracy"]["samples"] == 16
