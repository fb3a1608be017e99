"""`se-deploy fuse`: exit codes, one-line errors, nothing half-written, report contents."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from se_deploy.cli import app
from se_deploy.runtime.onnxruntime import run_onnx
from se_deploy.export.se_detect import find_se_blocks
from tests.export.se_graphs import SESpec, make_se_model

runner = CliRunner()


@pytest.fixture
def se_model(tmp_path):
    model, _ = make_se_model(SESpec(fc="gemm", reshape="reshape_dynamic", batch="N", c=16, r=4))
    path = tmp_path / "se.onnx"
    onnx.save(model, str(path))
    return path


def _one_line_error(result) -> str:
    text = (result.stderr if hasattr(result, "stderr") else result.output).strip()
    assert "Traceback" not in result.output
    lines = [ln for ln in text.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, text
    return lines[0]


def test_fuse_writes_a_verified_model_and_report(tmp_path, se_model):
    out, rep = tmp_path / "out.onnx", tmp_path / "fuse.json"
    r = runner.invoke(app, ["fuse", str(se_model), "-o", str(out), "--report", str(rep)])
    assert r.exit_code == 0, r.output
    fused = onnx.load(str(out))
    assert not {"Shape", "Reshape", "Gemm"} & {n.op_type for n in fused.graph.node}
    report = json.loads(rep.read_text())
    [entry] = report["passes"]
    assert entry["name"] == "canonicalize" and entry["status"] == "applied"
    assert entry["verification"]["rel_max_abs"] <= 1e-5
    x = {"input": np.random.default_rng(0).standard_normal((2, 16, 5, 5)).astype(np.float32)}
    a, b = run_onnx(str(se_model), x), run_onnx(str(out), x)
    assert np.allclose(list(a.values())[0], list(b.values())[0], atol=1e-5)


def test_ablate_se_writes_the_plain_twin(tmp_path, se_model):
    out = tmp_path / "plain.onnx"
    r = runner.invoke(app, ["fuse", str(se_model), "-o", str(out), "--ablate-se"])
    assert r.exit_code == 0, r.output
    assert find_se_blocks(onnx.load(str(out))) == []


def test_fold_gates_refusal_exits_5_and_writes_nothing(tmp_path, se_model):
    calib = tmp_path / "calib.npz"
    np.savez(calib, input=np.random.default_rng(0).standard_normal((8, 16, 5, 5)).astype(np.float32))
    out, rep = tmp_path / "folded.onnx", tmp_path / "r.json"
    r = runner.invoke(app, ["fuse", str(se_model), "-o", str(out), "--fold-gates", "--calib-data", str(calib),
                            "--gate-threshold", "10", "--tolerance", "1e-4", "--report", str(rep)])
    assert r.exit_code == 5
    assert "fold-gates refused" in _one_line_error(r)
    assert not out.exists()
    assert json.loads(rep.read_text())["passes"][-1]["status"] == "rolled_back"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".folded")]  # no temp leftovers


def test_fold_gates_accepts_within_tolerance(tmp_path, se_model):
    calib = tmp_path / "calib.npz"
    np.savez(calib, input=np.random.default_rng(0).standard_normal((8, 16, 5, 5)).astype(np.float32))
    out = tmp_path / "folded.onnx"
    r = runner.invoke(app, ["fuse", str(se_model), "-o", str(out), "--fold-gates", "--calib-data", str(calib),
                            "--gate-threshold", "10", "--tolerance", "10", "--min-top1", "0"])
    assert r.exit_code == 0, r.output
    assert find_se_blocks(onnx.load(str(out))) == []


@pytest.mark.parametrize("args,code,text", [
    (["--passes", "bogus"], 2, "unknown pass 'bogus'"),
    (["--fold-gates"], 2, "needs calibration data"),
    (["--ablate-se", "--passes", "canonicalize"], 2, "does not combine"),
    (["--calib-data", "x.npz"], 2, "only used by --fold-gates"),
])
def test_bad_options_are_one_line_errors(tmp_path, se_model, args, code, text):
    out = tmp_path / "o.onnx"
    r = runner.invoke(app, ["fuse", str(se_model), "-o", str(out), *args])
    assert r.exit_code == code
    assert text in _one_line_error(r)
    assert not out.exists()


def test_missing_and_corrupt_inputs(tmp_path):
    r = runner.invoke(app, ["fuse", str(tmp_path / "nope.onnx"), "-o", str(tmp_path / "o.onnx")])
    assert r.exit_code == 2 and "not found" in _one_line_error(r)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    r = runner.invoke(app, ["fuse", str(bad), "-o", str(tmp_path / "o.onnx")])
    assert r.exit_code == 2 and "error:" in _one_line_error(r)
    r = runner.invoke(app, ["fuse", str(bad)])
    assert r.exit_code == 2 and "-o" in _one_line_error(r)


def test_list_passes():
    r = runner.invoke(app, ["fuse", "--list-passes"])
    assert r.exit_code == 0
    for name in ("canonicalize", "hoist-squeeze", "fold-gates", "ablate-se"):
        assert name in r.output
