import json

import pytest

from se_deploy.errors import InputError
from se_deploy.bench.results import SCHEMA_VERSION, Results, device_label, load_results, save_results


def test_round_trip_through_a_file_is_lossless(results, tmp_path):
    p = save_results(results, tmp_path / "results.json")
    data = json.loads(p.read_text())
    assert data["schema"] == "se-deploy/results" and data["schema_version"] == SCHEMA_VERSION
    back = load_results(p)
    assert back.to_dict() == results.to_dict()
    assert save_results(back, tmp_path / "again.json").read_text() == p.read_text()  # same keys, order, types
    assert back.comparisons[0].tax["tax_pct"] == results.comparisons[0].tax["tax_pct"]
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temporary file


def test_unknown_keys_survive_a_round_trip(results):
    d = results.to_dict()
    d["measurements"][0]["gpu_clock_mhz"] = 1300
    back = Results.from_dict(d)
    assert back.measurements[0].extra == {"gpu_clock_mhz": 1300}
    assert back.to_dict()["measurements"][0]["gpu_clock_mhz"] == 1300


@pytest.mark.parametrize("mutate,msg", [
    (lambda d: d.update(schema_version=SCHEMA_VERSION + 1), "newer than this se-deploy"),
    (lambda d: d.update(schema="other"), "not a se-deploy results file"),
    (lambda d: d["measurements"][0].pop("latency_ms"), "measurements[0] lacks required key(s) ['latency_ms']"),
    (lambda d: d["measurements"][0].update(batch=0), "measurements[0].batch: input should be greater than 0"),
    (lambda d: d["comparisons"][0]["tax"].pop("tax_pct_lo"),
     "comparisons[0].tax lacks required key(s) ['tax_pct_lo']"),
    (lambda d: d["run"].update(mode="fast"), "run.mode: input should be 'singlestream' or 'offline' (got str 'fast')"),
    (lambda d: d["models"][0].update(role="teacher"), "models[0].role: input should be 'se', 'plain' or 'other'"),
    (lambda d: d.pop("run"), "top level lacks required key(s) ['run']"),
])
def test_malformed_results_are_one_line_input_errors(results, mutate, msg):
    d = results.to_dict()
    mutate(d)
    with pytest.raises(InputError) as e:
        Results.from_dict(d, source="x.json")
    assert str(e.value).startswith("x.json: ") and msg in str(e.value) and "\n" not in str(e.value)


# A wrong type anywhere is bad input named by its path, never a crash later in the report.
@pytest.mark.parametrize("path,value,msg", [
    ("schema_version", "1", "schema_version: input should be a valid integer (got str '1')"),
    ("created", 20240101, "created: input should be a valid string"),
    ("run", [], "run: input should be a valid dictionary (got list [])"),
    ("run.name", 7, "run.name: input should be a valid string"),
    ("run.settings", "fast", "run.settings: input should be a valid dictionary"),
    ("environment", "x", "environment: input should be a valid dictionary"),
    ("environment.cpu.flags", "avx2", "environment.cpu.flags: input should be a valid list"),
    ("environment.gpu.gpus", ["H100"], "environment.gpu.gpus[0]: input should be a valid dictionary"),
    ("models", {}, "models: input should be a valid list"),
    ("models.0", "se_net", "models[0]: input should be a valid dictionary"),
    ("models.0.params", "1k", "models[0].params: input should be a valid integer"),
    ("models.0.se_share", [9.5], "models[0].se_share: input should be a valid dictionary"),
    ("measurements.0.batch", "4", "measurements[0].batch: input should be a valid integer (got str '4')"),
    ("measurements.0.batch", True, "measurements[0].batch: input should be a valid integer (got bool True)"),
    ("measurements.0.model", None, "measurements[0].model: input should be a valid string"),
    ("measurements.0.latency_ms.median", "fast", "measurements[0].latency_ms.median: input should be a number"),
    ("measurements.0.latency_ms.n", 4.5, "measurements[0].latency_ms.n: input should be a valid integer"),
    ("measurements.0.throughput", "100/s", "measurements[0].throughput: input should be a number"),
    ("measurements.0.headline.value", [1], "measurements[0].headline.value: input should be a number"),
    ("measurements.0.samples_ms.3", "x", "measurements[0].samples_ms[3]: input should be a number"),
    ("measurements.0.compute_ms", 1.0, "measurements[0].compute_ms: input should be a valid dictionary"),
    ("comparisons.0.tax.tax_pct", "+10%", "comparisons[0].tax.tax_pct: input should be a number"),
    ("comparisons.0.tax.confidence", "95%", "comparisons[0].tax.confidence: input should be a number"),
    ("comparisons.0.tax.method", 1, "comparisons[0].tax.method: input should be a valid string"),
    ("profiles.0.by_op", [], "profiles[0].by_op: input should be a valid dictionary"),
    ("accuracy.0.metrics", None, "accuracy[0].metrics: input should be a valid dictionary"),
    ("accuracy.0.data", 3, "accuracy[0].data: input should be a valid string"),
    ("warnings.0", {"msg": "x"}, "warnings[0]: input should be a valid string"),
])
def test_wrong_types_are_one_line_input_errors_naming_the_field(results, path, value, msg):
    d = results.to_dict()
    *parents, last = [int(k) if k.isdigit() else k for k in path.split(".")]
    target = d
    for k in parents:
        target = target[k]
    target[last] = value
    with pytest.raises(InputError) as e:
        Results.from_dict(d, source="x.json")
    assert str(e.value).startswith(f"x.json: {msg}") and "\n" not in str(e.value)


def test_several_problems_name_the_first_and_count_the_rest(results):
    d = results.to_dict()
    d["measurements"][0]["batch"] = "4"
    d["measurements"][1]["latency_ms"]["p90"] = "slow"
    d["warnings"] = [1]
    with pytest.raises(InputError, match=r"^x\.json: measurements\[0\]\.batch: .*; and 2 more problem\(s\)$"):
        Results.from_dict(d, source="x.json")


def test_unmeasured_values_may_be_null_and_survive_the_round_trip(results):
    d = results.to_dict()
    d["comparisons"][0]["tax"].update(tax_pct=None, tax_pct_lo=None, tax_pct_hi=None)
    d["measurements"][0]["latency_ms"]["p90"] = None
    d["measurements"][0]["throughput"] = 250  # an int stays an int
    back = Results.from_dict(d).to_dict()
    assert back == d and isinstance(back["measurements"][0]["throughput"], int)


def test_python_callers_may_pass_numpy_scalars(results):
    import numpy as np

    from se_deploy.bench.results import ModelInfo

    m = ModelInfo(name="x", params=np.int64(12), flops=np.int64(30))
    assert m.params == 12 and type(m.params) is int
    assert json.loads(json.dumps(m.to_dict()))["flops"] == 30


def test_missing_or_non_json_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_results(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not a readable JSON"):
        load_results(bad)


def test_device_label_prefers_jetson_then_gpu_then_cpu():
    assert device_label({"cpu": {"model": "EPYC"}, "gpu": {"gpus": []}, "jetson": {"model": "unknown"}}) == "EPYC"
    assert device_label({"cpu": {"model": "EPYC"}, "gpu": {"gpus": [{"name": "H100"}]}}) == "H100"
    assert device_label({"jetson": {"model": "Jetson AGX Orin"}, "gpu": {"gpus": [{"name": "Orin"}]}}) == "Jetson AGX Orin"
