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
    (lambda d: d["measurements"][0].update(batch=0), "batch must be a positive integer"),
    (lambda d: d["comparisons"][0]["tax"].pop("tax_pct_lo"), "tax lacks 'tax_pct_lo'"),
    (lambda d: d["run"].update(mode="fast"), "run.mode 'fast' is not one of"),
    (lambda d: d["models"][0].update(role="teacher"), "role 'teacher' is not one of"),
])
def test_malformed_results_are_one_line_input_errors(results, mutate, msg):
    d = results.to_dict()
    mutate(d)
    with pytest.raises(InputError) as e:
        Results.from_dict(d, source="x.json")
    assert msg in str(e.value) and "\n" not in str(e.value)


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
