"""End to end: the pipeline on se_resnet18 at 64x64, then skipping, config errors."""

import json

import pytest
from typer.testing import CliRunner

from se_deploy._util import read_sidecar, sha256_file
from se_deploy.cli import app
from se_deploy.errors import ConfigError
from se_deploy.pipeline import DEFAULT_CONFIG, PipelineConfig, load_config
from se_deploy.bench.results import load_results

SMALL = """
[run]
name = "small"
[model]
se = "se_resnet18"
input_shape = [1, 3, 64, 64]
[export]
exporter = "dynamo"
[calibration]
size = 8
[quantize]
batch_size = 4
[accuracy]
size = 8
[bench]
batches = [1, 2]
warmup_s = 0.05
min_iters = 4
min_duration_s = 0.0
max_iters = 4
n_boot = 200
profile_iters = 1
"""

runner = CliRunner()


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("pipeline")
    cfg = d / "small.toml"
    cfg.write_text(SMALL)
    out = d / "run"
    res = runner.invoke(app, ["pipeline", "--config", str(cfg), "--out", str(out)])
    assert res.exit_code == 0, res.output
    return cfg, out, res.output


ARTIFACTS = ["se/model.onnx", "plain/model.onnx", "calib.npz", "eval.npz", "se/model.int8.onnx",
             "plain/model.int8.onnx", "engines.json", "accuracy.json", "results.json", "report.html", "report.md"]


def test_every_artifact_has_a_consistent_sidecar(small_run):
    _, out, output = small_run
    for rel in ARTIFACTS:
        p = out / rel
        assert p.exists(), rel
        side = read_sidecar(p)
        assert side is not None, f"{rel} has no sidecar"
        assert side["pipeline"]["sha256"] == sha256_file(p), rel
    assert f"report: {out / 'report.html'}" in output
    for png in ("latency_vs_batch", "se_vs_plain", "op_breakdown"):
        assert (out / "plots" / f"{png}.png").read_bytes().startswith(b"\x89PNG")
    # the export sidecar keeps the exporter's own record next to the pipeline's
    assert "parity" in read_sidecar(out / "se/model.onnx")
    assert read_sidecar(out / "calib.npz")["synthetic"] is True


def test_results_cover_both_models_precisions_and_batches(small_run):
    _, out, _ = small_run
    r = load_results(out / "results.json")
    assert {(m.model, m.precision, m.batch) for m in r.measurements} == {
        (m, p, b) for m in ("se_resnet18", "resnet18") for p in ("fp32", "int8") for b in (1, 2)}
    assert {(c.precision, c.batch) for c in r.comparisons} == {("fp32", 1), ("fp32", 2), ("int8", 1), ("int8", 2)}
    assert all(c.tax["tax_pct_lo"] <= c.tax["tax_pct"] <= c.tax["tax_pct_hi"] for c in r.comparisons)
    se = r.model("se_resnet18")
    plain = r.model("resnet18")
    assert se.se_blocks == 8 and plain.se_blocks == 0
    # the SE share agrees with the difference to the plain twin, which has no SE blocks
    assert se.se_share["params"] == se.params - plain.params
    assert se.se_share["params_pct"] == pytest.approx(100 * (se.params - plain.params) / se.params)
    assert 0 < se.se_share["flops_pct"] < se.se_share["params_pct"]
    assert {(a.model, a.precision) for a in r.accuracy} == {("se_resnet18", "int8"), ("resnet18", "int8")}
    assert any("synthetic" in w for w in r.warnings)
    assert any("SE blocks" in p.by_op for p in r.profiles if p.model == "se_resnet18")
    engines = json.loads((out / "engines.json").read_text())
    assert engines["backend"] == "onnxruntime" and "tensorrt" in engines["reason"]
    for e in engines["engines"]:
        assert sha256_file(out / e["artifact"]) == e["sha256"]
    html = (out / "report.html").read_text()
    assert "synthetic calibration data" in html and "se_resnet18" in html


def test_second_run_skips_everything_and_a_config_change_reruns_downstream(small_run):
    cfg, out, _ = small_run
    res = runner.invoke(app, ["pipeline", "--config", str(cfg), "--out", str(out)])
    assert res.exit_code == 0, res.output
    stages = json.loads((out / "pipeline.json").read_text())["stages"]
    assert all(s["status"] == "skipped (inputs unchanged)" for s in stages), stages
    # change only the report section: only the report reruns
    cfg.write_text(SMALL + "\n[report]\npng = false\n")
    res = runner.invoke(app, ["pipeline", "--config", str(cfg), "--out", str(out)])
    assert res.exit_code == 0, res.output
    status = {s["name"]: s["status"] for s in json.loads((out / "pipeline.json").read_text())["stages"]}
    assert status["report"] == "ran"
    assert status["benchmark"] == "skipped (inputs unchanged)"
    # tamper with an artifact: its stage and everything downstream of it rerun
    results = out / "results.json"
    results.write_text(results.read_text().replace('"small"', '"tampered"', 1))
    res = runner.invoke(app, ["pipeline", "--config", str(cfg), "--out", str(out)])
    status = {s["name"]: s["status"] for s in json.loads((out / "pipeline.json").read_text())["stages"]}
    assert status["benchmark"] == "ran" and status["report"] == "ran"
    assert status["quantize INT8 se_resnet18"] == "skipped (inputs unchanged)"


def test_shipped_configs_are_valid():
    cfg = load_config()
    assert cfg["model"]["se"] == "se_resnet50" and cfg["model"]["input_shape"] == [1, 3, 224, 224]
    assert cfg["engines"]["precisions"] == ["fp32", "int8"] and cfg["calibration"]["source"] == "synthetic"
    mb = load_config(DEFAULT_CONFIG.parent / "se_mobilenet_v2.toml")
    assert mb["model"]["se"] == "se_mobilenet_v2"


@pytest.mark.parametrize("toml,msg", [
    ("[bench]\nitres = 3\n", "unknown config key 'bench.itres'; allowed keys in [bench]: batches, threads"),
    ("[benchmark]\n", "unknown config section [benchmark]; allowed sections: run, model"),
    ('[bench]\nmode = "fast"\n', "config key 'bench.mode' has bad value 'fast'; allowed: one of singlestream, offline"),
    ("[bench]\nbatches = [0]\n", "config key 'bench.batches' has bad value [0]; allowed: a non-empty list"),
    ('[engines]\nprecisions = ["int8"]\n', "config key 'engines.precisions' has bad value ['int8']"),
    ("[model]\ninput_shape = [3, 64, 64]\n", "config key 'model.input_shape'"),
    ("[bench]\nmin_iters = 10\nmax_iters = 5\n", "'bench.max_iters' (5) must be 0 (no cap) or >= bench.min_iters"),
    ("[export]\nfuse = 1\n", "config key 'export.fuse' has bad value 1; allowed: true or false"),
    ("[bench\n", "not valid TOML"),
])
def test_bad_config_is_one_line_naming_the_key(tmp_path, toml, msg):
    p = tmp_path / "bad.toml"
    p.write_text(toml)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert msg in str(e.value)
    res = runner.invoke(app, ["pipeline", "--config", str(p), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and msg.split("'")[0] in lines[0]
    assert not (tmp_path / "o").exists()


def test_unknown_zoo_model_is_refused_before_any_work(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[model]\nse = "se_resnet9000"\n')
    res = runner.invoke(app, ["pipeline", "--config", str(p), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "'model.se'" in res.output
    assert not (tmp_path / "o").exists()


def test_missing_config_file(tmp_path):
    res = runner.invoke(app, ["pipeline", "--config", str(tmp_path / "nope.toml")])
    assert res.exit_code == 2 and "config file not found" in res.output


def test_config_object_validates_on_construction():
    with pytest.raises(ConfigError):
        PipelineConfig(sections={"bench": {"threads": -1}})
    c = PipelineConfig(sections={})
    assert c["bench"]["mode"] == "singlestream" and c.name == "se_resnet50_cpu"
