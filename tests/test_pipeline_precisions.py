"""Pipeline precisions: fp16 on every backend, the mixed INT8+FP16 build on TensorRT only, each row's real backend."""

from __future__ import annotations

import importlib.util
import json

import pytest
from typer.testing import CliRunner

from se_deploy.bench.results import load_results
from se_deploy.cli import app
from se_deploy.errors import ConfigError
from se_deploy.pipeline import load_config

CONFIG = """
[run]
name = "prec"
[model]
se = "se_resnet18"
plain = "none"
input_shape = [1, 3, 64, 64]
[calibration]
size = 8
[engines]
backend = "onnxruntime"
precisions = ["fp32", "fp16", "int8fp16"]
[accuracy]
size = 8
[bench]
batches = [1]
warmup_s = 0.05
min_iters = 4
min_duration_s = 0.0
max_iters = 4
n_boot = 200
profile = false
[report]
png = false
"""
runner = CliRunner()


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="checks the onnxruntime engines")
def test_fp16_runs_and_the_mixed_build_is_reported_not_substituted_on_onnxruntime(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG)
    out = tmp_path / "run"
    r = runner.invoke(app, ["pipeline", "--config", str(cfg), "--out", str(out)])
    assert r.exit_code == 0, r.output
    engines = {e["precision"]: e for e in json.loads((out / "engines.json").read_text())["engines"]}
    assert engines["fp16"]["backend"] == "onnxruntime" and engines["fp16"]["artifact"] == "se/model.fp16.onnx"
    assert engines["int8fp16"]["backend"] == "onnxruntime" and "built for TensorRT only" in engines["int8fp16"]["skipped"]
    fp16_side = json.loads((out / "se" / "model.fp16.onnx.json").read_text())
    assert fp16_side["status"] == "accepted" and fp16_side["numerics"]["cosine"] >= 0.999  # proved against FP32
    res = load_results(out / "results.json")
    assert {(m.precision, m.backend) for m in res.measurements} == {("fp32", "onnxruntime"), ("fp16", "onnxruntime")}
    assert res.run["pipeline"]["precision_backends"] == {"fp32": ["onnxruntime"], "fp16": ["onnxruntime"],
                                                         "int8fp16": []}
    assert any("int8fp16: not built" in w for w in res.warnings)
    assert {a.precision for a in res.accuracy} == {"fp16"}
    # a second run finds everything up to date
    again = runner.invoke(app, ["pipeline", "--config", str(cfg), "--out", str(out)])
    assert again.exit_code == 0, again.output
    stages = json.loads((out / "pipeline.json").read_text())["stages"]
    assert all(s["status"] == "unchanged" for s in stages if s["name"] != "accuracy vs FP32"), stages


def test_precision_names(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[engines]\nprecisions = ["fp32", "fp16", "int8", "int8fp16"]\n')
    assert load_config(p).engines.precisions == ("fp32", "fp16", "int8", "int8fp16")
    p.write_text('[engines]\nprecisions = ["fp32", "best"]\n')
    with pytest.raises(ConfigError, match="'best' is not one of fp32, fp16, int8, int8fp16"):
        load_config(p)
