"""se-deploy bench / report on small real models (onnxruntime CPU, eager torch)."""

import json

import pytest
from typer.testing import CliRunner

from se_deploy.cli import app
from se_deploy.bench.results import load_results

runner = CliRunner()
FAST = ["--warmup-s", "0.05", "--min-iters", "4", "--min-duration-s", "0", "--max-iters", "4"]


@pytest.fixture(scope="module")
def se_onnx(tmp_path_factory):
    from se_deploy.export.torch_export import export_model

    d = tmp_path_factory.mktemp("bench")
    fixed = export_model("se_resnet18", d / "fixed.onnx", input_shape=(1, 3, 32, 32), dynamic_batch=False).path
    dyn = export_model("se_resnet18", d / "se18.onnx", input_shape=(1, 3, 32, 32), dynamic_batch=True).path
    return d, dyn, fixed


def _one_line_error(res, code):
    assert res.exit_code == code, res.output
    lines = [x for x in res.output.splitlines() if x.strip()]
    errors = [x for x in lines if x.startswith("error: ")]
    # progress lines may precede it; the error itself is one line, last, with no traceback
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in res.output, res.output
    return errors[0]


def test_bench_onnx_against_its_se_ablated_twin(se_onnx):
    d, dyn, _ = se_onnx
    out = d / "results.json"
    res = runner.invoke(app, ["bench", str(dyn), "--batch", "1,2", "--profile", "-o", str(out),
                              "--html", str(d / "r.html"), *FAST])
    assert res.exit_code == 0, res.output
    r = load_results(out)
    assert [(m.model, m.batch) for m in r.measurements] == [("se18", 1), ("se18 (SE removed)", 1),
                                                           ("se18", 2), ("se18 (SE removed)", 2)]
    assert all(m.latency_ms["n"] == 4 and len(m.samples_ms) == 4 for m in r.measurements)
    assert all(m.headline["metric"] == "p90_ms" for m in r.measurements)
    assert [c.batch for c in r.comparisons] == [1, 2]
    se = r.model("se18")
    assert se.role == "se" and se.se_blocks == 8 and se.se_share["flops_pct"] > 0
    assert r.model("se18 (SE removed)").se_blocks == 0
    assert "SE blocks" in r.profiles[0].by_op and "SE blocks" not in r.profiles[1].by_op
    assert r.environment["cpu"]["logical_cpus"] >= 1
    assert r.run["settings"]["batches"] == [1, 2] and r.run["mode"] == "singlestream"
    assert "SE tax" in res.output and (d / "r.html").read_text().startswith("<!DOCTYPE html>")


def test_bench_offline_without_baseline(se_onnx):
    d, dyn, _ = se_onnx
    out = d / "offline.json"
    res = runner.invoke(app, ["bench", str(dyn), "--baseline", "none", "--mode", "offline", "-o", str(out), *FAST])
    assert res.exit_code == 0, res.output
    r = load_results(out)
    assert not r.comparisons and r.measurements[0].headline["metric"] == "throughput"
    assert r.measurements[0].headline["value"] == pytest.approx(r.measurements[0].throughput)


def test_bench_zoo_model_on_torch_uses_the_zoo_twin(tmp_path):
    out = tmp_path / "t.json"
    res = runner.invoke(app, ["bench", "se_resnet18", "--backend", "torch", "--input-shape", "1x3x32x32",
                              "-o", str(out), *FAST])
    assert res.exit_code == 0, res.output
    r = load_results(out)
    assert {m.model for m in r.measurements} == {"se_resnet18", "resnet18"}
    assert r.comparisons[0].se_model == "se_resnet18" and r.comparisons[0].plain_model == "resnet18"


def test_fixed_batch_model_refuses_other_batches(se_onnx):
    d, _, fixed = se_onnx
    line = _one_line_error(runner.invoke(app, ["bench", str(fixed), "--batch", "2", "-o", str(d / "x.json"),
                                               *FAST]), 2)
    assert "fixed batch size of 1" in line
    assert not (d / "x.json").exists()


@pytest.mark.parametrize("args,code,msg", [
    (["bench", "no_such_model_or_file"], 2, "neither a file nor a zoo model"),
    (["bench", "se_resnet18", "--batch", "0"], 2, "expected positive integers"),
    (["bench", "se_resnet18", "--min-iters", "1"], 2, "min_iters: 1 must be >= 2"),
    (["bench", "se_resnet18", "-o", "/nonexistent/dir/r.json"], 2, "output directory does not exist"),
    (["report", "render", "missing.json", "-o", "r.html"], 2, "results file not found"),
    (["report", "render", "a.json", "-o", "r.pdf"], 2, "output must end in .html or .md"),
])
def test_bad_input_is_one_line(args, code, msg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert msg in _one_line_error(runner.invoke(app, args), code)


def test_report_render_and_merge_cli(tmp_path):
    from tests.report.conftest import build_results
    from se_deploy.bench.results import save_results

    a = save_results(build_results(cpu="Orin"), tmp_path / "a.json")
    b = save_results(build_results(cpu="EPYC", factor=1.3, seed=3), tmp_path / "b.json")
    res = runner.invoke(app, ["report", "render", str(a), "-o", str(tmp_path / "r.md"), "--png-dir",
                              str(tmp_path / "png")])
    assert res.exit_code == 0, res.output
    assert "## SE tax" in (tmp_path / "r.md").read_text() and (tmp_path / "png" / "se_vs_plain.png").exists()
    assert "render takes one results file" in _one_line_error(
        runner.invoke(app, ["report", "render", str(a), str(b), "-o", str(tmp_path / "r.html")]), 2)
    res = runner.invoke(app, ["report", "merge", str(a), str(b), "-o", str(tmp_path / "fleet.html")])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "fleet.html").read_text()
    assert "SE tax: Orin" in page and "SE tax: EPYC" in page
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "se-deploy/results", "schema_version": 99, "run": {}}))
    assert "newer than this se-deploy" in _one_line_error(
        runner.invoke(app, ["report", "merge", str(a), str(bad), "-o", str(tmp_path / "f.html")]), 2)


def test_report_render_names_a_wrongly_typed_field_in_one_line(tmp_path):
    from tests.report.conftest import build_results
    from se_deploy.bench.results import save_results

    p = save_results(build_results(), tmp_path / "r.json")
    d = json.loads(p.read_text())
    d["comparisons"][1]["tax"]["tax_pct"] = "+10%"
    p.write_text(json.dumps(d))
    line = _one_line_error(runner.invoke(app, ["report", "render", str(p), "-o", str(tmp_path / "r.html")]), 2)
    assert line == f"error: {p}: comparisons[1].tax.tax_pct: input should be a number (got str '+10%')"
    assert not (tmp_path / "r.html").exists()
