"""The report's SE-budget sections, and the pipeline's optional [se_budget] stage that feeds them."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from se_deploy.budget import run as budget_run
from se_deploy.budget.run import MODEL_NAME
from se_deploy.report.html import render_html
from se_deploy.report.markdown import render_markdown
from se_deploy.report.plots import render_plots
from tests.budget.se_models import labelled_data, make_se_classifier
from tests.budget.test_cli import fake_timer
from tests.report.conftest import build_results


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("budget_report")
    m = make_se_classifier(3, constant_gate=(1,), hw=16, seed=3)
    onnx.save(m, str(d / "m.onnx"))
    x, y = labelled_data(m, 32)
    np.savez(d / "eval.npz", input=x, labels=y)
    mp = pytest.MonkeyPatch()
    mp.setattr(budget_run, "_time", fake_timer())
    try:
        cfg = budget_run.BudgetConfig(budget_pct=15.0, warmup_s=0, min_duration_s=0, min_iters=3, time_top=1)
        budget_run.run_budget(d / "m.onnx", d / "out", cfg, eval_source=d / "eval.npz")
    finally:
        mp.undo()
    return json.loads((d / "out" / f"{MODEL_NAME}.json").read_text())


def with_budget(side: dict):
    r = build_results()
    setattr(r, "se_budget", side)
    return r


def test_html_has_the_block_table_the_front_and_the_plot(sidecar):
    r = with_budget(sidecar)
    plots = render_plots(r)
    assert plots["se_budget_front"][:4] == b"\x89PNG"
    page = render_html(r, plots)
    assert '<h2 id="se-budget">' in page and "<h3>Per block</h3>" in page and "Pareto front (estimated)" in page
    for b in sidecar["blocks"]:
        assert f"<td>{b['block']}</td>" in page and f"<td>{b['fate']}</td>" in page
    assert 'alt="SE budget: SE tax vs accuracy"' in page
    assert "removed top-1 %" in page and "SYNTHETIC" not in page
    assert page.count("<tr>") - render_html(build_results(), {}).count("<tr>") >= len(sidecar["blocks"]) + 1


def test_markdown_has_the_same_sections(sidecar):
    md = render_markdown(with_budget(sidecar), {"SE budget: SE tax vs accuracy": "plots/se_budget_front.png"})
    assert "## SE budget: what each SE block costs and buys" in md and "### Per block" in md
    assert "| b0.se.scale |" in md and "### Pareto front (estimated)" in md
    assert "![SE budget: SE tax vs accuracy](plots/se_budget_front.png)" in md
    assert f"Chosen: {sidecar['chosen']['fates'].count('keep')} kept" in md


def test_without_the_stage_there_is_no_section_and_no_plot():
    r = build_results()
    assert "se_budget_front" not in render_plots(r)
    assert 'id="se-budget"' not in render_html(r, {}) and "SE budget" not in render_markdown(r)


def test_synthetic_data_and_user_strings_are_shown_safely(sidecar):
    side = json.loads(json.dumps(sidecar))
    side["synthetic"] = True
    side["notes"] = [budget_run.SYNTHETIC_NOTE]
    side["blocks"][0]["block"] = "<script>alert(1)</script>|x"
    page = render_html(with_budget(side), {})
    assert "SYNTHETIC DATA" in page and "<script>alert" not in page and "&lt;script&gt;" in page
    md = render_markdown(with_budget(side))
    assert "**SYNTHETIC DATA" in md and "<script>" not in md


def test_the_pipeline_stage_is_off_by_default_and_runs_before_the_report_when_on(tmp_path):
    from se_deploy.pipeline.config import PipelineConfig
    from se_deploy.pipeline.job import build_job

    _, stages = build_job(PipelineConfig.from_dict({}), tmp_path)
    assert "SE budget" not in [s.name for s in stages]
    cfg = PipelineConfig.from_dict({"se_budget": {"enabled": True, "budget_pct": 12.5, "time_top": 2}})
    job, stages = build_job(cfg, tmp_path)
    names = [s.name for s in stages]
    assert names.index("SE budget") == names.index("report") - 1
    assert job.budget in stages[names.index("report")].inputs
    assert cfg.se_budget.budget_pct == 12.5


def test_a_bad_se_budget_key_is_one_line():
    from se_deploy.errors import ConfigError
    from se_deploy.pipeline.config import PipelineConfig

    with pytest.raises(ConfigError, match=r"^f\.toml: se_budget\.budget_pct: -1 must be >= 0(\.0)?$"):
        PipelineConfig.from_dict({"se_budget": {"budget_pct": -1}}, source="f.toml")


def test_the_report_stage_shows_the_budget_the_stage_wrote(sidecar, tmp_path):
    from se_deploy._util import write_sidecar
    from se_deploy.bench.results import save_results
    from se_deploy.pipeline.config import PipelineConfig
    from se_deploy.pipeline.job import build_job

    cfg = PipelineConfig.from_dict({"se_budget": {"enabled": True}, "report": {"png": False}})
    job, stages = build_job(cfg, tmp_path)
    save_results(build_results(), job.results)
    job.budget.parent.mkdir()
    job.budget.write_bytes(b"model")
    write_sidecar(job.budget, sidecar)
    stages[-1].run()
    assert '<h2 id="se-budget">' in job.report_html.read_text()
    assert "## SE budget" in job.report_md.read_text()
