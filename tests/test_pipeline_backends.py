"""The pipeline with two CPU runtimes side by side: one run, both backends timed, profiled and reported."""

import importlib.util
import json

import pytest
from typer.testing import CliRunner

from se_deploy.bench.results import load_results
from se_deploy.cli import app

pytestmark = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                reason="openvino is not installed (pip install 'se-deploy[openvino]')")

SIDE_BY_SIDE = """
[run]
name = "sbs"
[model]
se = "se_resnet18"
input_shape = [1, 3, 32, 32]
[engines]
backend = "onnxruntime"
precisions = ["fp32"]
compare = ["openvino"]
[accuracy]
enabled = false
[bench]
batches = [1]
threads = 1
warmup_s = 0.05
min_iters = 4
min_duration_s = 0.0
max_iters = 4
n_boot = 200
profile_iters = 1
[report]
html = false
png = false
"""


def test_pipeline_times_compared_runtimes_side_by_side(tmp_path):
    cfg = tmp_path / "sbs.toml"
    cfg.write_text(SIDE_BY_SIDE)
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["pipeline", "--config", str(cfg), "--out", str(out)])
    assert res.exit_code == 0, res.output
    engines = json.loads((out / "engines.json").read_text())
    assert engines["backends"] == ["onnxruntime", "openvino"] and engines["choice"] is None
    assert [(e["role"], e["backend"]) for e in engines["engines"]] == [
        ("se", "onnxruntime"), ("plain", "onnxruntime"), ("se", "openvino"), ("plain", "openvino")]
    r = load_results(out / "results.json")
    assert r.run["backend"] == "onnxruntime,openvino"
    assert [(c.backend, c.precision) for c in r.comparisons] == [("onnxruntime", "fp32"), ("openvino", "fp32")]
    assert {p.source for p in r.profiles} == {"onnxruntime", "openvino"}
    md = (out / "report.md").read_text()
    ov = next(m for m in r.measurements if m.backend == "openvino")
    assert f"| resnet18 | fp32 | 1 | openvino ({ov.runtime['inference_precision']}) |" in md
    assert "| resnet18 | fp32 | 1 | onnxruntime |" in md
