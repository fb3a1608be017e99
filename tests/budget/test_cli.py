"""se-deploy se-budget end to end on a tiny model: the sidecar, the written model, the try loop, exit codes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from se_deploy.budget import run as budget_run
from se_deploy.budget.run import MODEL_NAME, PLOT_NAME, SYNTHETIC_NOTE, UNLABELLED_NOTE
from se_deploy.budget.variants import Variants
from se_deploy.cli import app
from tests.budget.se_models import labelled_data, make_se_classifier
from tests.test_clean_errors import one_line_error

runner = CliRunner()
FAST = ["--min-duration-s", "0", "--min-iters", "3", "--warmup-s", "0", "--time-top", "1", "--max-tries", "2"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("budget")
    m = make_se_classifier(3, constant_gate=(1,), hw=16, seed=3)  # a seed whose SE blocks decide predictions
    onnx.save(m, str(d / "m.onnx"))
    x, y = labelled_data(m, 48)
    np.savez(d / "eval.npz", input=x, labels=y)
    np.savez(d / "unlabelled.npz", input=x[:24])
    np.savez(d / "calib.npz", input=labelled_data(m, 32, seed=5)[0])
    return d


def invoke(*args):
    return runner.invoke(app, ["se-budget", *[str(a) for a in args]])


def fake_timer(per_block: float = 0.1, fold: float = 0.1, floor: float = 0.0):
    """Deterministic latencies from what a model file holds: ``per_block`` for every gate (Sigmoid) left,
    ``fold`` for every folded constant scale, ``floor`` for any model that is not the plain twin."""

    def timer(paths, cfg):
        out = {}
        for key, p in paths.items():
            m = onnx.load(str(p))
            gates = sum(n.op_type == "Sigmoid" for n in m.graph.node)
            folds = sum(n.op_type == "Mul" and any("folded_gate" in i for i in n.input) for n in m.graph.node)
            ms = 1.0 + per_block * gates + fold * folds + (floor if key != "plain" else 0.0)
            out[key] = list(ms + np.linspace(0, 1e-6, 8))
        return out

    return timer


def test_a_generous_budget_keeps_every_block_and_writes_model_sidecar_and_plot(files, tmp_path):
    out = tmp_path / "out"
    r = invoke(files / "m.onnx", "--eval-data", files / "eval.npz", "--calib-data", files / "calib.npz",
               "--budget", "1000%", "-o", out, *FAST)
    assert r.exit_code == 0, r.output
    side = json.loads((out / f"{MODEL_NAME}.json").read_text())
    assert (out / PLOT_NAME).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert side["labelled"] and not side["synthetic"] and side["notes"] == []
    assert side["data"]["gate_statistics_from"] == "calibration"
    assert [b["fate"] for b in side["blocks"]] == ["keep"] * 3 and side["chosen"]["loss"] == 0.0
    for key in ("tax_pct", "tax_pct_lo", "tax_pct_hi"):
        assert np.isfinite(side["chosen"]["tax"][key]) and np.isfinite(side["full"]["tax"][key])
    assert side["proofs"]["each_block_removed_vs_plain_twin_rel_max_abs"] <= side["proofs"]["tolerance"]
    assert side["full"]["accuracy"]["top1"] == 100.0  # the labels are the model's own predictions
    blocks = side["blocks"]
    assert [b["block"] for b in blocks] == ["b0.se.scale", "b1.se.scale", "b2.se.scale"]
    assert sorted(b["rank"] for b in blocks) == [1, 2, 3] and sum(b["timed"] for b in blocks) == 1
    for b in blocks:
        for fate in ("remove", "fold"):
            acc = b[fate]["accuracy"]
            assert {"top1", "top5", "agreement", "cosine", "sqnr_db", "loss", "estimate"} <= set(acc)
        assert {"mean", "std", "channel_std_max", "saturated"} <= set(b["gate"])
    assert blocks[1]["fold"]["exact_claimed"] and blocks[1]["fold"]["exact"]  # the constant gate
    assert not blocks[0]["fold"]["exact_claimed"] and "exact" not in blocks[0]["fold"]
    assert side["source_sha256"] and side["onnx_sha256"]
    assert "chosen: 3 kept, 0 folded, 0 removed" in r.output


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino is not installed")
def test_openvino_times_the_variants_and_profiles_the_blocks(files, tmp_path):
    out = tmp_path / "out"
    r = invoke(files / "m.onnx", "--eval-data", files / "eval.npz", "--backend", "openvino", "--budget", "1000%",
               "-o", out, *FAST)
    assert r.exit_code == 0, r.output
    side = json.loads((out / f"{MODEL_NAME}.json").read_text())
    assert side["backend"] == "openvino"
    assert [b["fate"] for b in side["blocks"]] == ["keep"] * 3
    assert sorted(b["rank"] for b in side["blocks"]) == [1, 2, 3]  # ranked by OpenVINO's per-op profile
    assert np.isfinite(side["chosen"]["tax"]["tax_pct"])


def test_the_try_loop_measures_each_mix_and_writes_the_one_that_meets_the_budget(files, tmp_path, monkeypatch):
    # the estimate (profile: the scale Mul is half a block) thinks a fold saves half a block; here it saves nothing
    monkeypatch.setattr(budget_run, "_time", fake_timer(per_block=0.1, fold=0.1))
    monkeypatch.setattr(budget_run, "_profile_ms", lambda path, v, cfg, feed: ([1.0] * 3, [0.5] * 3, {}))
    cfg = budget_run.BudgetConfig(budget_pct=7.0, time_top=0, max_tries=4, warmup_s=0, min_duration_s=0,
                                  min_iters=3)
    r = budget_run.run_budget(files / "m.onnx", tmp_path, cfg, eval_source=files / "eval.npz")
    tries = r["tries"]
    assert len(tries) >= 2 and "fold" in tries[0]["fates"]  # the fold the estimate liked missed
    assert tries[-1]["met"] and tries[-1]["tax"]["tax_pct"] <= 7.0
    assert all(not t["met"] for t in tries[:-1])
    for prev, nxt in zip(tries, tries[1:]):  # a miss lowers the target by the miss
        assert nxt["est_tax_pct"] <= max(0.0, 7.0 - (prev["tax"]["tax_pct"] - prev["est_tax_pct"])) + 1e-9
    fates = r["chosen"]["fates"]
    assert fates == [b["fate"] for b in r["blocks"]]
    # the file written is the chosen mix
    got = onnx.load(str(tmp_path / MODEL_NAME))
    v = Variants(onnx.load(str(files / "m.onnx")))
    assert sum(n.op_type == "Sigmoid" for n in got.graph.node) == fates.count("keep")
    assert len(got.graph.node) == len(v.build(fates, [np.full(8, 0.5, np.float32)] * 3).graph.node)


def test_a_budget_no_measured_mix_meets_exits_11_and_writes_nothing(files, tmp_path, monkeypatch):
    monkeypatch.setattr(budget_run, "_time", fake_timer(floor=0.2))  # every mix 20% slower than the plain twin
    out = tmp_path / "out"
    out.mkdir()
    (out / MODEL_NAME).write_bytes(b"an older result")
    r = invoke(files / "m.onnx", "--eval-data", files / "eval.npz", "--budget", "5%", "-o", out, *FAST)
    one_line_error(r, 11, "budget 5% not met after", "timed mix(es): the lowest measured was 20.0%", "nothing written")
    assert (out / MODEL_NAME).read_bytes() == b"an older result"
    assert sorted(p.name for p in out.iterdir()) == [MODEL_NAME]


def test_max_drop_that_no_mix_keeps_exits_11(files, tmp_path, monkeypatch):
    monkeypatch.setattr(budget_run, "_time", fake_timer())
    r = invoke(files / "m.onnx", "--eval-data", files / "eval.npz", "--budget", "0%", "--max-drop", "0", "-o",
               tmp_path, "--accuracy-checks", "1", *FAST)
    one_line_error(r, 11, "keeps the loss within --max-drop 0")


def test_unlabelled_data_shows_agreement_only(files, tmp_path):
    r = invoke(files / "m.onnx", "--eval-data", files / "unlabelled.npz", "--budget", "1000", "-o", tmp_path, *FAST)
    assert r.exit_code == 0, r.output
    side = json.loads((tmp_path / f"{MODEL_NAME}.json").read_text())
    assert not side["labelled"] and UNLABELLED_NOTE in side["notes"]
    assert "top1" not in side["blocks"][0]["remove"]["accuracy"]
    assert side["loss_metric"] == "disagreement with the full model (pt)"
    assert "only agreement with the full model is shown" in r.output


def test_synthetic_data_is_said_loudly(files, tmp_path):
    r = invoke(files / "m.onnx", "--synthetic", "--budget", "1000", "-o", tmp_path, "--eval-size", "16", *FAST)
    assert r.exit_code == 0, r.output
    side = json.loads((tmp_path / f"{MODEL_NAME}.json").read_text())
    assert side["synthetic"] and side["notes"][0] == SYNTHETIC_NOTE
    assert "SYNTHETIC evaluation data" in r.output


@pytest.mark.parametrize("args,code,needle", [
    (["--budget", "5%"], 2, "se-budget needs --eval-data"),
    (["--eval-data", "{d}/eval.npz", "--budget", "five"], 2, "--budget 'five' is not a percentage"),
    (["--eval-data", "{d}/eval.npz", "--budget", "-5%"], 2, "must be a finite percentage >= 0"),
    (["--eval-data", "{d}/eval.npz", "--synthetic", "--budget", "5"], 2, "not both"),
    (["--eval-data", "{d}/missing.npz", "--budget", "5"], 6, "missing.npz"),
    (["--eval-data", "{d}/eval.npz", "--budget", "5", "--time-top", "-1"], 2, "time_top"),
])
def test_bad_input_is_one_line(files, tmp_path, args, code, needle):
    r = invoke(files / "m.onnx", *[a.format(d=files) for a in args], "-o", tmp_path / "out")
    one_line_error(r, code, needle)
    assert not (tmp_path / "out" / MODEL_NAME).exists()


def test_a_model_without_se_blocks_exits_5(files, tmp_path):
    from tests.test_clean_errors import tiny_onnx

    m = tiny_onnx(tmp_path / "plain.onnx")
    r = invoke(m, "--synthetic", "--budget", "5", "-o", tmp_path / "out")
    one_line_error(r, 5, "no SE blocks found")


def test_an_output_folder_holding_the_input_is_refused(files, tmp_path):
    import shutil

    shutil.copy(files / "m.onnx", tmp_path / MODEL_NAME)
    r = invoke(tmp_path / MODEL_NAME, "--synthetic", "--budget", "5", "-o", tmp_path)
    one_line_error(r, 2, "is the same file as")


def test_random_data_saved_earlier_is_still_labelled_synthetic(files, tmp_path, monkeypatch):
    """The pipeline's synthetic eval.npz reads as an npz; its sidecar's flag carries through."""
    monkeypatch.setattr(budget_run, "_time", fake_timer())
    cfg = budget_run.BudgetConfig(budget_pct=1000.0, warmup_s=0, min_duration_s=0, min_iters=3, time_top=0)
    r = budget_run.run_budget(files / "m.onnx", tmp_path, cfg, eval_source=files / "unlabelled.npz",
                              synthetic_source=True)
    assert r["synthetic"] and r["notes"][0] == SYNTHETIC_NOTE
    assert json.loads((tmp_path / f"{MODEL_NAME}.json").read_text())["synthetic"]
