"""End to end: the pipeline on se_resnet18 at 64x64, then skipping, config errors."""

import json

import pytest
from typer.testing import CliRunner

from se_deploy._util import read_sidecar, sha256_file
from se_deploy.cli import app
from se_deploy.errors import ConfigError
from se_deploy.pipeline import DEFAULT_CONFIG, PipelineConfig, StageStatus, load_config
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
    assert engines["backend"] in ("onnxruntime", "openvino") and "tensorrt" in engines["reason"]
    if engines["choice"]["rounds"]:  # several CPU runtimes installed: the probe chose, and the results say how
        assert engines["backend"] == r.run["backend_choice"]["choice"] and "probe" in engines["reason"]
    for e in engines["engines"]:
        assert sha256_file(out / e["artifact"]) == e["sha256"]
    html = (out / "report.html").read_text()
    assert "synthetic calibration data" in html and "se_resnet18" in html


def test_second_run_skips_everything_and_a_config_change_reruns_downstream(small_run):
    cfg, out, _ = small_run
    res = runner.invoke(app, ["pipeline", "--config", str(cfg), "--out", str(out)])
    assert res.exit_code == 0, res.output
    stages = json.loads((out / "pipeline.json").read_text())["stages"]
    assert all(s["status"] == "unchanged" for s in stages), stages
    # change only the report section: only the report reruns
    cfg.write_text(SMALL + "\n[report]\npng = false\n")
    res = runner.invoke(app, ["pipeline", "--config", str(cfg), "--out", str(out)])
    assert res.exit_code == 0, res.output
    status = {s["name"]: s["status"] for s in json.loads((out / "pipeline.json").read_text())["stages"]}
    assert status["report"] == "ran"
    assert status["benchmark"] == StageStatus.unchanged
    # tamper with an artifact: its stage and everything downstream of it rerun
    results = out / "results.json"
    results.write_text(results.read_text().replace('"small"', '"tampered"', 1))
    res = runner.invoke(app, ["pipeline", "--config", str(cfg), "--out", str(out)])
    status = {s["name"]: s["status"] for s in json.loads((out / "pipeline.json").read_text())["stages"]}
    assert status["benchmark"] == "ran" and status["report"] == "ran"
    assert status["quantize INT8 se_resnet18"] == StageStatus.unchanged


def test_shipped_configs_are_valid():
    cfg = load_config()
    assert cfg.model.se == "se_resnet50" and cfg.model.input_shape == (1, 3, 224, 224)
    assert cfg.engines.precisions == ("fp32", "int8") and cfg.calibration.source == "synthetic"
    assert (cfg.quantize.target, cfg.quantize.method) == ("cpu", "minmax")
    assert (cfg.bench.max_iters, cfg.bench.min_iters, cfg.bench.profile) == (60, 12, True)
    mb = load_config(DEFAULT_CONFIG.parent / "se_mobilenet_v2.toml")
    assert mb.model.se == "se_mobilenet_v2"


@pytest.mark.parametrize("toml,msg", [
    ("[bench]\nitres = 3\n", "unknown key 'bench.itres'; allowed keys in [bench]: warmup_s, min_iters"),
    ("[benchmark]\n", "unknown section 'benchmark'; allowed sections: run, model, export"),
    ('[bench]\nmode = "fast"\n', "bench.mode: 'fast' is not one of singlestream, offline"),
    ("[bench]\nbatches = [0]\n", "bench.batches[0]: 0 must be > 0"),
    ("[bench]\nbatches = []\n", "bench.batches: [] must have at least 1 item"),
    ('[engines]\nprecisions = ["int8"]\n', "engines.precisions: ['int8'] must include fp32, the reference"),
    ('[engines]\nprecisions = ["fp32", "int4"]\n', "engines.precisions[1]: 'int4' is not one of fp32, fp16, int8"),
    ('[engines]\nbackend = "ncnn"\n', "engines.backend: 'ncnn' is not one of auto, onnxruntime, openvino, tensorrt"),
    ('[engines]\ncompare = ["tensorrt"]\n', "engines.compare: ['tensorrt'] holds tensorrt, which does not run the ONNX"),
    ("[model]\ninput_shape = [3, 64, 64]\n", "model.input_shape: [3, 64, 64] must be NxCxHxW"),
    ("[bench]\nmin_iters = 10\nmax_iters = 5\n", "bench.max_iters: 5 must be >= min_iters (10)"),
    ("[bench]\nthreads = -1\n", "bench.threads: -1 must be >= 0"),
    ("[export]\nfuse = 1\n", "export.fuse: 1 must be true or false"),
    ('[export]\nexporter = "torchscript"\n', "export.exporter: 'torchscript' is not one of dynamo, legacy"),
    ('[export]\nexporter = "legacy"\nopset = 21\n', "export.opset: 21 is newer than the legacy exporter writes"),
    ("[calibration]\nsize = 2.5\n", "calibration.size: 2.5 must be an integer"),
    ('[calibration]\nmethod = "entropy"\n', "calibration.method: 'entropy' has moved: set it as quantize.method"),
    ('[quantize]\nmethod = "kl"\n', "quantize.method: 'kl' is not one of minmax, entropy, percentile"),
    ('[run]\nname = "a/b"\n', "run.name: 'a/b' must be a non-empty name"),
    ("bench = 3\n", "bench: 3 must be a table"),
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
    assert len(lines) == 1 and lines[0].startswith("error: ") and msg in lines[0]
    assert not (tmp_path / "o").exists()


def test_unknown_zoo_model_is_refused_before_any_work(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[model]\nse = "se_resnet9000"\n')
    res = runner.invoke(app, ["pipeline", "--config", str(p), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "model.se: 'se_resnet9000' is not a zoo model name" in res.output
    assert not (tmp_path / "o").exists()


def test_missing_config_file(tmp_path):
    res = runner.invoke(app, ["pipeline", "--config", str(tmp_path / "nope.toml")])
    assert res.exit_code == 2 and "config file not found" in res.output


def test_config_object_validates_on_construction():
    with pytest.raises(ConfigError, match=r"^bench.threads: -1 must be >= 0$"):
        PipelineConfig(bench={"threads": -1})
    c = PipelineConfig()
    assert c.bench.mode == "singlestream" and c.name == "se_resnet50_cpu"


@pytest.mark.parametrize("config", [None, DEFAULT_CONFIG.parent / "se_mobilenet_v2.toml"])
def test_show_config_prints_toml_that_loads_back_equal(tmp_path, config):
    args = ["pipeline", "--show-config"] + (["--config", str(config)] if config else [])
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "[bench]" in res.output and not res.output.lstrip().startswith("{")
    p = tmp_path / "shown.toml"
    p.write_text(res.output)
    assert load_config(p) == load_config(config)


def test_stage_sections_are_the_stage_types():
    from se_deploy.bench.suite import BenchConfig
    from se_deploy.calibration.quantize import QuantConfig
    from se_deploy.export.torch_export import ExportOptions

    cfg = load_config()
    assert isinstance(cfg.export, ExportOptions) and isinstance(cfg.quantize, QuantConfig)
    assert isinstance(cfg.bench, BenchConfig)
    # every stage option is settable from the file, with the stage's own rules
    cfg = PipelineConfig.from_dict({"export": {"opset": 17, "simplifier": "onnxslim"},
                                    "quantize": {"method": "entropy", "exclude": ["Gemm"]},
                                    "bench": {"seed": 3}})
    assert (cfg.export.opset, cfg.quantize.method, cfg.quantize.exclude, cfg.bench.seed) == (17, "entropy",
                                                                                          ("Gemm",), 3)


def test_max_iters_zero_or_omitted_means_no_cap():
    assert PipelineConfig.from_dict({"bench": {"max_iters": 0}}).bench.max_iters is None
    assert PipelineConfig.from_dict({}).bench.max_iters is None


def test_section_hash_follows_only_the_named_sections():
    a = PipelineConfig.from_dict({})
    b = PipelineConfig.from_dict({"report": {"png": False}})
    assert a.section_hash("bench", "model") == b.section_hash("bench", "model")
    assert a.section_hash("report") != b.section_hash("report")
    assert a != b and a == PipelineConfig.from_dict({}, source="elsewhere")


def test_every_engine_backend_has_an_engine_step():
    """A backend added to EngineBackend validates in configs, so the job must handle it."""
    from se_deploy.errors import MissingDependencyError
    from se_deploy.names import EngineBackend
    from se_deploy.pipeline.job import _engine_backend

    for b in EngineBackend:
        cfg = PipelineConfig.from_dict({"engines": {"backend": b.value}})
        try:
            backend, why, _ = _engine_backend(cfg, lambda: {"choice": "onnxruntime", "median_ms": None})
        except MissingDependencyError:  # tensorrt asked for and not installed here
            continue
        assert backend in ("onnxruntime", "openvino", "tensorrt") and why


def test_a_failing_stage_is_recorded_and_stops_the_run(tmp_path):
    from se_deploy.errors import EngineError
    from se_deploy.pipeline import Skip, Stage, StageResult, run_stages

    ran = []

    def ok():
        (tmp_path / "a").write_text("a")
        ran.append("a")
        return "made a"

    def skip():
        raise Skip("not here")

    def boom():
        raise EngineError("no engine today")

    stages = [Stage("a", [tmp_path / "a"], [], "k", ok), Stage("s", [], [], "k", skip),
              Stage("b", [tmp_path / "b"], [], "k", boom), Stage("c", [tmp_path / "c"], [], "k", ok)]
    res = run_stages(stages)
    assert [(r.name, r.status) for r in res] == [("a", StageStatus.ran), ("s", StageStatus.skipped),
                                                 ("b", StageStatus.failed)]
    assert res[1].reason == "not here" and res[2].reason == "no engine today"
    assert isinstance(res[2].error, EngineError) and "error" not in res[2].to_dict()
    assert res[2].to_dict()["status"] == "failed" and ran == ["a"]
    again = run_stages(stages[:1])
    assert again[0].status is StageStatus.unchanged and again[0].reason
    assert isinstance(again[0], StageResult) and f"{again[0].status}" == "unchanged"


def test_nested_errors_keep_their_location_and_error_type():
    """pydantic validates sections without the Config wrapper, so the key path survives."""
    with pytest.raises(ConfigError) as e:
        PipelineConfig(bench={"min_iters": 10, "max_iters": 5})
    assert str(e.value) == "bench.max_iters: 5 must be >= min_iters (10); leave it out for no cap"
    with pytest.raises(ConfigError, match=r"^f\.toml: export\.opset: 99 must be <= 23$"):
        PipelineConfig.from_dict({"export": {"opset": 99}}, source="f.toml")


def test_section_choices_come_from_names():
    from se_deploy.names import EngineBackend, Precision, PreprocessPreset
    from se_deploy.pipeline.config import CalibrationSection, EnginesSection

    assert EnginesSection.model_fields["backend"].annotation is EngineBackend
    assert EnginesSection.model_fields["precisions"].annotation == tuple[Precision, ...]
    assert CalibrationSection.model_fields["preprocess"].annotation is PreprocessPreset
