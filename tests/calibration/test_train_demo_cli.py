"""The demo flow a new user types: train-demo, then the INT8 quantize it suggests, with an accuracy budget."""

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from se_deploy.cli import app

runner = CliRunner()


def test_train_demo_then_quantize_within_budget(tmp_path):
    out = tmp_path / "demo"  # created by the command
    r = runner.invoke(app, ["train-demo", "-o", str(out), "--epochs", "1"])
    assert r.exit_code == 0, r.output
    assert {p.name for p in out.iterdir()} >= {"model.onnx", "model.onnx.json", "calib.npz", "eval.npz",
                                               "calib.labels.npz", "eval.labels.npz"}
    for name in ("calib", "eval"):  # one array per model input, as ModelOpt's CLI requires; labels beside
        with np.load(out / f"{name}.npz") as z:
            assert z.files == ["input"]
    with np.load(out / "eval.labels.npz") as z:
        assert len(z["labels"]) == 540
    q = out / "model.int8.onnx"
    r = runner.invoke(app, ["quantize", str(out / "model.onnx"), "--int8", "--target", "cpu", "--calib-data",
                            str(out / "calib.npz"), "--calib-size", "256", "--eval-data", str(out / "eval.npz"),
                            "--max-drop", "1.0", "-o", str(q)])
    assert r.exit_code == 0, r.output
    side = json.loads(Path(str(q) + ".json").read_text())
    assert side["status"] == "accepted"
    assert side["target"] == "cpu"
    acc = side["accuracy"]
    assert acc["data"]["labelled"] and acc["reference"]["top1"] > 50  # the demo model really learned digits
    assert acc["candidates"]["int8"]["top1_drop"] <= 1.0


def test_train_demo_refuses_a_file_as_folder(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = runner.invoke(app, ["train-demo", "-o", str(f)])
    assert r.exit_code == 2 and "not a folder" in r.output and "Traceback" not in r.output
