"""Accuracy on a trained model: INT8 (both targets, SE-aware) and FP16 against FP32, plus the CLI flow."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from se_deploy.calibration.accuracy import evaluate
from se_deploy.calibration.dataset import CalibrationSet
from se_deploy.calibration.fp16 import Fp16Config, convert_fp16
from se_deploy.calibration.quantize import QuantConfig, quantize_int8
from se_deploy.calibration.trt_cache import read_calibration_cache
from se_deploy.cli import app
from se_deploy.errors import QuantizationError

runner = CliRunner()


def test_quick_train_reaches_a_meaningful_accuracy(trained):
    t = trained["trained"]
    assert t.accuracy >= 95.0, f"held-out top-1 {t.accuracy:.2f}%"
    assert len(t.y_test) == 540 and len(t.y_train) == 1257
    # the held-out split never overlaps the training (calibration) split
    train_rows = {r.tobytes() for r in t.x_train}
    assert not any(r.tobytes() in train_rows for r in t.x_test)


@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
def test_int8_drops_at_most_half_a_point(trained, tmp_path, target):
    out = tmp_path / f"model.{target}.int8.onnx"
    side = quantize_int8(trained["onnx"], out, trained["calib"], QuantConfig(target=target, max_drop=0.5),
                         eval_set=trained["eval"])
    acc = side["accuracy"]
    ref, int8 = acc["reference"], acc["candidates"]["int8"]
    assert acc["samples"] == 540 and acc["data"]["labelled"]
    assert ref["top1"] >= 95.0
    assert int8["top1_drop"] <= 0.5, f"{target}: FP32 {ref['top1']:.2f}% -> INT8 {int8['top1']:.2f}%"
    assert int8["top1_agreement"] >= 98.0 and int8["sqnr_db"] > 20.0
    assert side["status"] == "accepted" and side["se_mode"] == "cheap" and side["se_blocks"] >= 6
    rules = side["placement"]["by_rule"]
    # both targets read the SE map in INT8 and keep the excitation (2 FCs, act, gate each) float
    assert rules["se-excitation:float"] == 4 * side["se_blocks"]
    if target == "tensorrt":
        assert rules["se-squeeze:int8"] == rules["se-scale:int8"] == side["se_blocks"]
        assert side["lint"] == [] and side["high_precision"] == "fp16"
    assert json.loads(out.with_name(out.name + ".json").read_text())["accuracy"]["candidates"]["int8"]["top1"] == \
        pytest.approx(int8["top1"])


def test_fp16_agrees_with_fp32_on_at_least_99_5_percent(trained, tmp_path):
    out = tmp_path / "model.fp16.onnx"
    side = convert_fp16(trained["onnx"], out, Fp16Config(), eval_set=trained["eval"])
    report = evaluate(trained["onnx"], {"fp16": out}, trained["eval"])
    fp16 = report["candidates"]["fp16"]
    assert fp16["top1_agreement"] >= 99.5
    assert abs(fp16["top1_drop"]) <= 0.5
    assert side["status"] == "accepted" and side["numerics"]["cosine"] > 0.9999


def test_max_drop_rejects_and_writes_nothing_unless_asked_to_keep_it(trained, tmp_path):
    # calibrating on wrongly scaled images (a classic preprocessing slip) clips every activation
    t = trained["trained"]
    dim = CalibrationSet(t.x_train[:64] * 0.1, "input", "npz", {"role": "calibration"})
    out = tmp_path / "bad.int8.onnx"
    cfg = QuantConfig(target="cpu", max_drop=1.0)
    with pytest.raises(QuantizationError, match=r"dropped .* points, over the --max-drop budget of 1; nothing "
                                                r"written to .*bad\.int8\.onnx"):
        quantize_int8(trained["onnx"], out, dim, cfg, eval_set=trained["eval"])
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(QuantizationError, match=r"the rejected model is kept as .*bad\.int8\.rejected\.onnx"):
        quantize_int8(trained["onnx"], out, dim, cfg, eval_set=trained["eval"], keep_rejected=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.int8.rejected.onnx", "bad.int8.rejected.onnx.json"]
    side = json.loads((tmp_path / "bad.int8.rejected.onnx.json").read_text())
    assert side["status"] == "rejected" and side["accuracy"]["candidates"]["int8"]["top1_drop"] > 1.0


def test_cli_quantize_compare_and_trt_cache(trained, tmp_path):
    calib_npz = trained["calib"].save_npz(tmp_path / "calib.npz")
    eval_npz = trained["eval"].save_npz(tmp_path / "eval.npz")
    out, cache = tmp_path / "m.int8.onnx", tmp_path / "m.cache"
    r = runner.invoke(app, ["quantize", str(trained["onnx"]), "--int8", "--target", "tensorrt",
                            "--calib-data", str(calib_npz), "--calib-size", "128", "--eval-data", str(eval_npz),
                            "--max-drop", "1.0", "--write-trt-cache", str(cache), "-o", str(out)])
    assert r.exit_code == 0, r.output
    side = json.loads(out.with_name(out.name + ".json").read_text())
    assert side["calibration"]["samples"] == 128 and side["status"] == "accepted"
    assert side["trt_calibration_cache"]["tensors"] > 50
    header, scales = read_calibration_cache(cache)
    assert header == "TRT-100300-EntropyCalibration2"
    names = {o for n in onnx.load(str(trained["onnx"])).graph.node for o in n.output} | {"input"}
    assert "input" in scales and set(scales) <= names
    # digits are normalised to [-1, 1]: the input's amax is 1, so its scale is 1/127
    assert scales["input"] == pytest.approx(1.0 / 127.0, rel=1e-3)

    r = runner.invoke(app, ["compare", str(trained["onnx"]), str(out), "--data", str(eval_npz), "--max-drop", "1.0",
                            "--json", str(tmp_path / "cmp.json")])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "cmp.json").read_text())
    assert report["candidates"]["m.int8"]["top1_drop"] <= 1.0

    # a broken candidate (classifier weights zeroed) fails the budget with exit 7 and one line
    broken = onnx.load(str(trained["onnx"]))
    gemm = [n for n in broken.graph.node if n.op_type == "Gemm"][-1]  # the classifier (SE FCs come first)
    w = next(i for i in broken.graph.initializer if i.name == gemm.input[1])
    w.CopyFrom(onnx.numpy_helper.from_array(np.zeros_like(onnx.numpy_helper.to_array(w)), w.name))
    onnx.save(broken, str(tmp_path / "broken.onnx"))
    r = runner.invoke(app, ["compare", str(trained["onnx"]), str(tmp_path / "broken.onnx"), "--data", str(eval_npz),
                            "--max-drop", "1.0"])
    assert r.exit_code == 7
    assert r.output.strip().splitlines()[-1].startswith("error: broken top-1 dropped")


def test_cli_bad_input_is_one_line(tiny_se_onnx, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = runner.invoke(app, ["quantize", str(tiny_se_onnx), "--int8", "--calib-data", str(empty), "-o",
                            str(tmp_path / "x.onnx")])
    assert r.exit_code == 6 and "error: calibration folder is empty" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "x.onnx").exists()
    r = runner.invoke(app, ["quantize", str(tiny_se_onnx), "--int8", "--fp16", "-o", str(tmp_path / "x.onnx")])
    assert r.exit_code == 2 and "choose exactly one of --int8 or --fp16" in r.output
    np.savez(tmp_path / "wrong.npz", images=np.zeros((4, 3, 16, 16), np.float32))
    r = runner.invoke(app, ["quantize", str(tiny_se_onnx), "--int8", "--calib-data", str(tmp_path / "wrong.npz"),
                            "-o", str(tmp_path / "x.onnx")])
    assert r.exit_code == 6 and "no array named 'input'" in r.output
    r = runner.invoke(app, ["quantize", str(tiny_se_onnx), "--int8", "--synthetic", "--calib-size", "4",
                            "--batch-size", "8", "--target", "cpu", "-o", str(tmp_path / "s.onnx")])
    assert r.exit_code == 0, r.output
    assert "SYNTHETIC" in r.output and "only 4 calibration samples (< 100)" in r.output


def test_cli_calibrate_saves_npz_from_images(tiny_se_onnx, tmp_path):
    from tests.calibration.conftest import write_images

    write_images(tmp_path / "imgs", n_per_class=2, size=(24, 24))
    out = tmp_path / "calib.npz"
    r = runner.invoke(app, ["calibrate", str(tiny_se_onnx), "--calib-data", str(tmp_path / "imgs"), "--resize", "16",
                            "--crop", "16", "-o", str(out)])
    assert r.exit_code == 0, r.output
    with np.load(out) as z:  # exactly the model's input: what ModelOpt's --calibration_data_path accepts
        assert list(z.keys()) == ["input"] and z["input"].shape == (4, 3, 16, 16)
    with np.load(tmp_path / "calib.labels.npz") as z:
        assert z["labels"].tolist() == [0, 0, 1, 1]
    assert "calib.labels.npz" in r.output
    meta = json.loads((tmp_path / "calib.npz.json").read_text())
    assert meta["preprocess"]["name"] == "imagenet+custom" and meta["preprocess"]["crop"] == [16, 16]
