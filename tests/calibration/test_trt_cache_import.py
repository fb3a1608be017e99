"""``quantize --from-trt-cache``: a TensorRT calibration cache becomes Q/DQ scales, round trip and TensorRT's forms."""

from __future__ import annotations

import json
import struct

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from typer.testing import CliRunner

from se_deploy.calibration import trt_cache as tc
from se_deploy.calibration.dataset import CalibrationSet
from se_deploy.calibration.quantize import QuantConfig, quantize_int8
from se_deploy.cli import app
from se_deploy.errors import CalibrationError
from tests.calibration.qdq_graphs import G

runner = CliRunner()


def _act_scales(path) -> dict[str, float]:
    """tensor -> scale of every activation QuantizeLinear."""
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return {n.input[0]: float(inits[n.input[1]]) for n in model.graph.node
            if n.op_type == "QuantizeLinear" and n.input[0] not in inits}


def _source(tensor: str, model) -> str:
    """The FP32 tensor a Q reads (through the input Cast of an FP16 model)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    p = producer.get(tensor)
    while p is not None and p.op_type == "Cast":
        tensor, p = p.input[0], producer.get(p.input[0])
    return tensor


def test_round_trip_data_to_cache_to_qdq(tiny_se_onnx, tmp_path):
    x = np.random.default_rng(0).standard_normal((24, 3, 16, 16)).astype(np.float32)
    calib = CalibrationSet(x, "input", "npz", {})
    cfg = QuantConfig(high_precision="fp32", preprocess_model=False)
    from_data = tmp_path / "data.onnx"
    quantize_int8(tiny_se_onnx, from_data, calib, cfg)
    amax = tc.collect_amax(tiny_se_onnx, calib, method="minmax")
    cache = tc.write_calibration_cache(tmp_path / "tiny.cache", amax, trt_version="8.6.1")
    from_cache = tmp_path / "cache.onnx"
    side = quantize_int8(tiny_se_onnx, from_cache, None, cfg, trt_cache=cache)
    a, b = _act_scales(from_data), _act_scales(from_cache)
    assert a.keys() == b.keys() and len(a) >= 8
    for t in a:  # the same scales, to float32 rounding, whether from data or through the cache file
        assert b[t] == pytest.approx(a[t], rel=1e-6), t
        assert b[t] == pytest.approx(amax[t] / 127.0, rel=1e-6)
    r = side["ranges"]
    assert r["kind"] == "tensorrt calibration cache" and r["trt_version"] == "8.6.1" and r["missing"] == []
    assert r["imported"] == len(amax) and not r["calibrated_from_data"] and side["calibration"] is None
    assert side["accuracy"]["data"]["source_kind"] == "synthetic"  # no data given: probe inputs check it
    assert side["accuracy"]["candidates"]["int8"]["cosine"] > 0.999


def _names_graph(tmp_path):
    """A graph whose tensor names are what TensorRT caches hold: spaces, brackets, colons, ': '."""
    g = G((1, 8, 4, 4))
    a = g.conv("input", 8, 8, name="conv:0")
    g.nodes[-1].output[0] = "(Unnamed Layer* 82) [Shuffle]_output"
    r = g.op("Relu", ["(Unnamed Layer* 82) [Shuffle]_output"], "relu")
    g.nodes[-1].output[0] = "block: out:0"
    out = g.conv("block: out:0", 8, 8, name="conv2")
    del a, r
    return g.save(out, tmp_path / "names.onnx")


def test_tensorrt_written_forms_import(tmp_path):
    model = _names_graph(tmp_path)
    cache = tmp_path / "trt.cache"
    s_in, s_mid = struct.pack(">f", 4.0 / 127).hex(), struct.pack(">f", 2.0 / 127).hex()
    cache.write_text(f"TRT-100300-EntropyCalibration2\ninput: {s_in}\n(Unnamed Layer* 82) [Shuffle]_output: 0\n"
                     f"block: out:0: {s_mid}\nONNXTRT_Broadcast_7_output: 3c010204\nconv2_out: 7f800000\n")
    out = tmp_path / "q.onnx"
    side = quantize_int8(model, out, None, QuantConfig(high_precision="fp32"), trt_cache=cache)
    got = _act_scales(out)
    assert got["input"] == pytest.approx(4.0 / 127, rel=1e-6)
    assert got["block: out:0"] == pytest.approx(2.0 / 127, rel=1e-6)
    r = side["ranges"]
    assert r["not_in_model"] == ["ONNXTRT_Broadcast_7_output"]
    assert list(r["unusable"]) == ["conv2_out"] and r["zero_scale"] == ["(Unnamed Layer* 82) [Shuffle]_output"]
    assert r["trt_version"] == "10.3.0" and r["algorithm"] == "EntropyCalibration2"


def test_missing_scales_are_refused_unless_data_fills_them(tiny_se_onnx, tmp_path):
    x = np.random.default_rng(0).standard_normal((16, 3, 16, 16)).astype(np.float32)
    calib = CalibrationSet(x, "input", "npz", {})
    cache = tc.write_calibration_cache(tmp_path / "part.cache", {"input": 3.0})
    out = tmp_path / "q.onnx"
    with pytest.raises(CalibrationError, match=r"the calibration cache has no scale for \d+ of the \d+ tensors to "
                                               r"quantize .*; add --calib-data"):
        quantize_int8(tiny_se_onnx, out, None, QuantConfig(), trt_cache=cache)
    assert not out.exists()
    side = quantize_int8(tiny_se_onnx, out, calib, QuantConfig(high_precision="fp32", preprocess_model=False),
                         trt_cache=cache)
    r = side["ranges"]
    assert r["calibrated_from_data"] and r["from_cache"] == ["input"] and len(r["missing"]) >= 8
    assert _act_scales(out)["input"] == pytest.approx(3.0 / 127, rel=1e-6)


def test_cli_from_trt_cache(tiny_se_onnx, tmp_path):
    fixtures = __import__("pathlib").Path(__file__).parent / "fixtures" / "trt_caches"
    real = fixtures / "calib_cache_TRT-8600-EntropyCalibration2_cuDLA-samples_excerpt.cache"
    r = runner.invoke(app, ["quantize", str(tiny_se_onnx), "--int8", "--from-trt-cache", str(real), "-o",
                            str(tmp_path / "x.onnx")])
    # a real cache from another model: nothing matches, so every tensor to quantize lacks a scale
    assert r.exit_code == 6 and "has no scale for" in r.output and "Traceback" not in r.output
    x = np.random.default_rng(0).standard_normal((16, 3, 16, 16)).astype(np.float32)
    amax = tc.collect_amax(tiny_se_onnx, CalibrationSet(x, "input", "npz", {}), method="minmax")
    text = "TRT-8600-EntropyCalibration2\n" + "".join(  # as TensorRT writes it: unpadded hex
        f"{k}: {format(struct.unpack('>I', struct.pack('>f', v / 127))[0], 'x')}\n" for k, v in amax.items())
    (tmp_path / "tiny.cache").write_text(text)
    out = tmp_path / "q.onnx"
    r = runner.invoke(app, ["quantize", str(tiny_se_onnx), "--int8", "--from-trt-cache", str(tmp_path / "tiny.cache"),
                            "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "TensorRT 8.6.0 EntropyCalibration2 cache:" in r.output and "scales imported" in r.output
    side = json.loads(out.with_name(out.name + ".json").read_text())
    assert side["ranges"]["imported"] == len(amax) and side["lint"] == []
