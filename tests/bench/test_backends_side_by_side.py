"""Several backends in one bench run, ``--backend auto``, and reports that keep backends apart."""

from __future__ import annotations

import importlib.util

import pytest
from typer.testing import CliRunner

from se_deploy.bench.backend_choice import RULE, choose_cpu_backend
from se_deploy.bench.results import Comparison, load_results
from se_deploy.cli import app
from se_deploy.report import tables
from se_deploy.report.merge import fleet_latency_table, fleet_tax_table
from tests.bench.test_bench_cli import FAST, _one_line_error
from tests.report.conftest import build_results

runner = CliRunner()
needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                    reason="openvino is not installed (pip install 'se-deploy[openvino]')")


@pytest.fixture(scope="module")
def se18(tmp_path_factory):
    from se_deploy.export.torch_export import export_model

    d = tmp_path_factory.mktemp("sbs")
    return d, export_model("se_resnet18", d / "se18.onnx", input_shape=(1, 3, 32, 32), dynamic_batch=True).path


@needs_openvino
def test_one_model_on_two_backends_in_one_run(se18):
    d, onnx = se18
    out = d / "two.json"
    res = runner.invoke(app, ["bench", str(onnx), "--backend", "onnxruntime", "--backend", "openvino", "--batch", "1",
                              "--threads", "1", "--profile", "-o", str(out), "--html", str(d / "two.html"), *FAST])
    assert res.exit_code == 0, res.output
    r = load_results(out)
    assert r.run["backend"] == "onnxruntime,openvino"
    assert {(m.model, m.backend) for m in r.measurements} == {
        ("se18", "onnxruntime"), ("se18 (SE removed)", "onnxruntime"), ("se18", "openvino"),
        ("se18 (SE removed)", "openvino")}
    assert [c.backend for c in r.comparisons] == ["onnxruntime", "openvino"]
    ov = [m for m in r.measurements if m.backend == "openvino"]
    ort = [m for m in r.measurements if m.backend == "onnxruntime"]
    # what each runtime really ran with is recorded: OpenVINO's precision, onnxruntime's spinning off
    assert all(m.runtime["inference_precision"] in ("f32", "bf16", "f16") for m in ov)
    assert r.comparisons[1].inference_precision == ov[0].runtime["inference_precision"]
    assert all(m.runtime["options"] == {"threads": 1, "allow_spinning": False} for m in ort)
    assert all(m.runtime["options"] == {"threads": 1} for m in ov)
    assert {p.source for p in r.profiles} == {"onnxruntime", "openvino"} and len(r.profiles) == 4
    # the tables keep the backends apart
    _, rows = tables.se_tax_table(r)
    assert [row[4] for row in rows] == ["onnxruntime", f"openvino ({ov[0].runtime['inference_precision']})"]
    titles = [t for t, _ in tables.op_tables(r)]
    assert len(set(titles)) == 4 and any(t.endswith("on onnxruntime") for t in titles)
    assert "openvino (" in (d / "two.html").read_text()


@needs_openvino
def test_auto_chooses_a_cpu_runtime_by_a_recorded_probe(se18):
    d, onnx = se18
    out = d / "auto.json"
    res = runner.invoke(app, ["bench", str(onnx), "--backend", "auto", "--baseline", "none", "--threads", "1",
                              "-o", str(out), *FAST])
    assert res.exit_code == 0, res.output
    r = load_results(out)
    choice = r.run["backend_choice"]
    assert choice["rule"] == RULE and set(choice["candidates"]) == {"onnxruntime", "openvino"}
    assert choice["choice"] == min(choice["median_ms"], key=choice["median_ms"].get)
    assert choice["rounds"] >= 5 and choice["options"]["onnxruntime"]["allow_spinning"] is False
    assert [m.backend for m in r.measurements] == [choice["choice"]]


def test_auto_with_one_runtime_needs_no_probe(se18):
    _, onnx = se18
    c = choose_cpu_backend(str(onnx), candidates=["onnxruntime"])
    assert c["choice"] == "onnxruntime" and c["rounds"] == 0 and c["median_ms"] is None


@pytest.mark.parametrize("args, msg", [
    (["--backend", "tensorrt"], "an ONNX file runs on --backend onnxruntime or openvino"),
    (["--backend", "torch"], "an ONNX file runs on --backend onnxruntime or openvino"),
])
def test_onnx_on_a_backend_that_cannot_run_it_is_one_line(se18, args, msg):
    d, onnx = se18
    assert msg in _one_line_error(runner.invoke(app, ["bench", str(onnx), *args, "-o", str(d / "x.json"), *FAST]), 2)


def test_fleet_tables_keep_backends_apart():
    a = build_results(cpu="EPYC")
    b = build_results(cpu="Xeon", seed=2)
    # b also ran the fp32 models on OpenVINO: the same (model, precision, batch) on a second backend
    extra = [c.model_copy(update={"backend": "openvino", "inference_precision": "bf16"}) for c in b.comparisons
             if c.precision == "fp32"]
    b.comparisons.extend(extra)
    b.measurements.extend(m.model_copy(update={"backend": "openvino", "runtime": {"inference_precision": "bf16"}})
                          for m in list(b.measurements) if m.precision == "fp32")
    h, rows = fleet_tax_table([a, b], ["EPYC", "Xeon"])
    assert h[4] == "backend"
    keyed = {(row[2], row[3], row[4]): row[5:] for row in rows}
    assert keyed[("fp32", "1", "openvino (bf16)")][0] == "-"  # EPYC did not run OpenVINO
    assert keyed[("fp32", "1", "onnxruntime")][0] != "-" and keyed[("fp32", "1", "onnxruntime")][1] != "-"
    assert len(rows) == len(a.comparisons) + len(extra)
    _, lrows = fleet_latency_table([a, b], ["EPYC", "Xeon"])
    assert len({tuple(r[:4]) for r in lrows}) == len(lrows) == len(b.measurements)


def test_files_without_comparison_backends_use_the_run_backend():
    r = build_results()
    assert all(c.backend is None for c in r.comparisons)
    assert tables.comparison_backend(r, r.comparisons[0]) == "onnxruntime"
    c = Comparison(se_model="a", plain_model="b", precision="fp32", batch=1, backend="openvino",
                   inference_precision="f32", tax=r.comparisons[0].tax)
    assert tables.comparison_backend(r, c) == "openvino (f32)"
