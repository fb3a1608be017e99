"""trtexec as a backend: its output formats read from REAL trtexec files, and the process plumbing.

The parsers are tested against real trtexec logs and JSON exports from public sources
(tests/fixtures/real/, sources in its README). The process tests drive
``trtexec_plumbing/fake_trtexec.py``, a stand-in for the trtexec *executable* that records its
arguments and copies those real exports where it is asked to write: they check argument
passing, exit codes and file handling only, never TensorRT (the GPU path is in test_trt_gpu.py).
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from se_deploy.cli import app
from se_deploy.engines.tensorrt.inspector import parse_engine_information
from se_deploy.errors import InputError, UsageError
from se_deploy.runtime.tensorrt.trtexec_tool import (TrtexecVersion, find_trtexec, log_messages, parse_banner,
                                                     parse_device_info, read_export_layer_info, read_export_profile,
                                                     read_export_times)
from tests.engines.trt_fixtures import conv_model

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real" / "trtexec"
FAKE = Path(__file__).resolve().parent / "trtexec_plumbing" / "fake_trtexec.py"
runner = CliRunner()


def real(name: str) -> str:
    return (REAL / name).read_text()


# --- the formats, from real trtexec output -----------------------------------------------------------

@pytest.mark.parametrize("name, digits, version", [
    ("trtexec_8.6.0_rtx3090_loadEngine_nonverbose.log", 8600, "8.6.0"),
    ("trtexec_10.3_orin_nx_16gb_header_excerpt_FoundationStereo_issue90.log", 100300, "10.3.0"),
    ("trtexec_10.16.1_onnx_build_and_run_nonverbose.log", 101601, "10.16.1"),  # 10.4+ add "[b11]" after it
    ("trtexec_10.16.1_rtx6000ada_cudagraph_spinwait_nodatatransfers_nonverbose.log", 101601, "10.16.1"),
    ("trtexec_8.4.0_xavier_agx_summary_meta-tegra_pr952.log", 8400, "8.4.0"),
])
def test_banner_names_the_tensorrt_version(name, digits, version):
    v = parse_banner(real(name))
    assert v == TrtexecVersion(digits) and str(v) == version


@pytest.mark.parametrize("digits, parts", [(8602, (8, 6, 2)), (100300, (10, 3, 0)), (101303, (10, 13, 3)),
                                           (110100, (11, 1, 0))])
def test_version_digits_follow_nv_tensorrt_version(digits, parts):
    """8.x: major*1000 + minor*100 + patch; 10.0 on: major*10000 + minor*100 + patch (NvInferRuntimeBase.h)."""
    assert TrtexecVersion(digits).parts == parts and TrtexecVersion(digits).major == parts[0]


@pytest.mark.parametrize("name, expected", [
    ("trtexec_8.6.0_rtx3090_loadEngine_nonverbose.log",
     {"gpu_name": "NVIDIA GeForce RTX 3090", "compute_capability": "8.6", "tensorrt_version": "8.6.0"}),
    ("trtexec_10.16.2_agx_orin_device_info_excerpt_meta-tegra_pr2243.log",
     {"gpu_name": "Orin", "compute_capability": "8.7", "tensorrt_version": "10.16.2"}),
    ("trtexec_10.16.1_onnx_build_and_run_nonverbose.log",
     {"gpu_name": "NVIDIA H100 PCIe", "compute_capability": "9.0", "tensorrt_version": "10.16.1"}),
])
def test_device_information_block(name, expected):
    assert parse_device_info(real(name)) == expected


def test_log_lines_by_severity():
    warnings = log_messages(real("trtexec_8.6.0_rtx3090_loadEngine_nonverbose.log"), "W")
    assert any(w.startswith("* GPU compute time is unstable, with coefficient of variance") for w in warnings)
    assert log_messages(real("trtexec_8.6.0_rtx3090_loadEngine_nonverbose.log"), "FE") == []


@pytest.mark.parametrize("name, n", [("exportTimes_10.x_rtx3060_alexnet_fuzzylabs_first20_verbatim.json", 20),
                                     ("exportTimes_trex_a100_resnet_fp16_nvidia_first10_verbatim.json", 10)])
def test_export_times(name, n):
    t = read_export_times(REAL / name)
    assert all(len(v) == n for v in t.values())
    for h2d, comp, d2h, lat in zip(t["h2dMs"], t["computeMs"], t["d2hMs"], t["latencyMs"]):
        assert lat == pytest.approx(h2d + comp + d2h, abs=2e-3)  # latency = copies + compute, 6 digits printed
    first = json.loads((REAL / name).read_text())[0]
    assert t["computeMs"][0] == first["computeMs"]


def test_export_times_without_transfers_reads_zero_copies():
    t = read_export_times(REAL / "exportTimes_10.x_rtx3060_alexnet_fuzzylabs_first20_verbatim.json")
    assert set(t["h2dMs"]) == {0.0} and set(t["d2hMs"]) == {0.0}  # that run used --noDataTransfers


@pytest.mark.parametrize("name, count, n_layers, first", [
    ("exportProfile_10.x_rtx3060_alexnet_fuzzylabs.json", 14590, 14,
     "Reformatting CopyNode for Input Tensor 0 to /features/features.0/Conv + /features/features.1/Relu"),
    ("exportProfile_trex_a100_resnet_fp16_nvidia.json", None, None, None),
    ("exportProfile_detr_int8_farabimahmud.json", None, 840, None),
])
def test_export_profile(name, count, n_layers, first):
    c, layers = read_export_profile(REAL / name)
    assert c > 0 and layers and all(lt.total_ms >= 0 and lt.average_ms >= 0 for lt in layers)
    if count is not None:
        assert c == count
    if n_layers is not None:
        assert len(layers) == n_layers
    if first is not None:
        assert layers[0].name == first and layers[0].median_ms is not None
    assert sum(lt.percentage for lt in layers) == pytest.approx(100.0, abs=0.5)


@pytest.mark.parametrize("name, io, counts", [
    ("exportLayerInfo_10.16.1_detailed_mnist.json", None, {"fp32"}),  # 10.16 spells types "Float"
    ("exportLayerInfo_10.x_detailed_rtx3060_alexnet_fuzzylabs.json", None, {"fp16"}),
    ("exportLayerInfo_trex_a100_resnet_fp16_nvidia_detailed.json", None, {"fp16"}),
    ("exportLayerInfo_layer_names_only_detr_farabimahmud.json", None, {"unknown"}),  # default verbosity: names only
])
def test_export_layer_info_goes_through_the_inspector_parser(name, io, counts):
    summary = parse_engine_information(read_export_layer_info(REAL / name))
    assert summary.layers and summary.io_tensors
    assert counts <= set(summary.counts)


def test_layer_types_group_a_real_profile():
    from se_deploy.bench.trtexec_bench import _by_layer_type

    _, layers = read_export_profile(REAL / "exportProfile_10.x_rtx3060_alexnet_fuzzylabs.json")
    info = read_export_layer_info(REAL / "exportLayerInfo_10.x_detailed_rtx3060_alexnet_fuzzylabs.json")
    by = _by_layer_type(layers, info)
    assert "unknown" not in by  # same run: every profiled layer is in the layer info
    assert sum(v["count"] for v in by.values()) == len(layers)
    assert sum(v["pct"] for v in by.values()) == pytest.approx(100.0)
    assert sum(v["ms"] for v in by.values()) == pytest.approx(sum(lt.average_ms for lt in layers))


@pytest.mark.parametrize("bad, message", [("[]", "non-empty array"), ('[{"h2dMs": 0}]', "has no 'computeMs'"),
                                          ('[{"h2dMs": 0, "computeMs": "x", "d2hMs": 0, "latencyMs": 1}]',
                                           "expected a number"), ("{", "is not trtexec --exportTimes JSON")])
def test_malformed_export_times_is_one_line(tmp_path, bad, message):
    p = tmp_path / "t.json"
    p.write_text(bad)
    with pytest.raises(InputError, match=message):
        read_export_times(p)


# --- finding trtexec ---------------------------------------------------------------------------------

def _executable(path: Path, text: str = "#!/bin/sh\n") -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_find_trtexec_order(tmp_path):
    exe = _executable(tmp_path / "trtexec")
    assert find_trtexec(exe) == str(exe)
    with pytest.raises(UsageError, match="not an executable file"):
        find_trtexec(tmp_path / "missing")
    assert find_trtexec(which=lambda name: "/opt/bin/trtexec") == "/opt/bin/trtexec"
    assert find_trtexec(which=lambda name: None, locations=(str(exe),)) == str(exe)  # /usr/src/tensorrt/bin
    assert find_trtexec(which=lambda name: None, locations=(str(tmp_path / "none"),)) is None


# --- process plumbing, with a stand-in executable (no TensorRT) ---------------------------------------

@pytest.fixture()
def fake(tmp_path, monkeypatch):
    """The fake trtexec as an executable, and the argv log it appends to."""
    exe = _executable(tmp_path / "fake-trtexec", f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    log = tmp_path / "argv.jsonl"
    monkeypatch.setenv("FAKE_TRTEXEC_LOG", str(log))
    monkeypatch.delenv("FAKE_TRTEXEC_FAIL", raising=False)
    monkeypatch.setenv("FAKE_TRTEXEC_DIGITS", "100300")
    return exe, log


def _calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_build_engine_runs_the_printed_command_and_writes_the_sidecar(tmp_path, fake):
    exe, log = fake
    model = conv_model(tmp_path / "m.onnx")
    plan = tmp_path / "m.plan"
    printed = runner.invoke(app, ["build-engine", str(model), "-o", str(plan), "--fp16", "--batch", "1:2:4",
                                  "--trt-version", "10", "--print-trtexec"]).stdout.split()
    r = runner.invoke(app, ["build-engine", str(model), "-o", str(plan), "--fp16", "--batch", "1:2:4",
                            "--trtexec", str(exe)])
    assert r.exit_code == 0, r.output
    calls = _calls(log)
    assert calls[0] == ["--help"]  # the version probe
    ran = calls[1]
    # the printed command, with the real executable and temporary outputs that are renamed afterwards
    same = [a for a in printed[1:] if not a.startswith(("--saveEngine=", "--exportLayerInfo="))]
    assert [a for a in ran if not a.startswith(("--saveEngine=", "--exportLayerInfo="))] == same
    tmp_out = next(a for a in ran if a.startswith("--saveEngine=")).split("=", 1)[1]
    # trtexec wrote into a staging folder beside the plan, which is gone once the plan is published
    assert tmp_path in Path(tmp_out).parents and tmp_out != str(plan) and not Path(tmp_out).exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert plan.read_bytes() == b"fake plan bytes (not a TensorRT plan)"
    meta = json.loads((tmp_path / "m.plan.json").read_text())
    assert meta["tensorrt_version"] == "10.3.0"
    assert meta["gpu"] == {"name": "Fake GPU (process plumbing test)", "compute_capability": "0.0"}
    assert meta["options"]["builder"] == "trtexec" and meta["options"]["trtexec"] == str(exe)
    assert meta["layers"]["layer_count"] == 9  # the real layer info the fake copied
    assert meta["trtexec_equivalent"] == " ".join(printed)
    assert (tmp_path / "m.plan.layers.json").exists()
    assert "wrote " in r.stdout and "trtexec: a warning line" in r.stderr


def test_a_failed_trtexec_build_is_one_line_and_keeps_the_old_plan(tmp_path, fake, monkeypatch):
    exe, _ = fake
    model = conv_model(tmp_path / "m.onnx")
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"a good plan from before")
    monkeypatch.setenv("FAKE_TRTEXEC_FAIL", "1")
    r = runner.invoke(app, ["build-engine", str(model), "-o", str(plan), "--trtexec", str(exe)])
    assert r.exit_code != 0
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert errors == ["error: the trtexec build failed (exit code 1): Error[4]: fake failure for the plumbing test"]
    assert plan.read_bytes() == b"a good plan from before" and not (tmp_path / "m.plan.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["argv.jsonl", "fake-trtexec", "m.onnx", "m.plan"]


def test_trtexec_of_another_version_than_asked_is_refused(tmp_path, fake, monkeypatch):
    exe, _ = fake
    monkeypatch.setenv("FAKE_TRTEXEC_DIGITS", "8502")  # JetPack 5's TensorRT 8.5.2
    r = runner.invoke(app, ["build-engine", str(conv_model(tmp_path / "m.onnx")), "--trtexec", str(exe)])
    assert r.exit_code != 0 and "older than 8.6, the oldest se-deploy supports" in r.stderr
    monkeypatch.setenv("FAKE_TRTEXEC_DIGITS", "110100")
    r = runner.invoke(app, ["build-engine", str(conv_model(tmp_path / "m.onnx")), "--trtexec", str(exe),
                            "--trt-version", "10"])
    assert r.exit_code == 2 and "--trt-version 10 given, but" in r.stderr and "is TensorRT 11.1.0" in r.stderr


@pytest.mark.parametrize("digits, mode", [("100300", []),
                                          ("110100", ["--includeDataTransfers", "--noCudaGraph", "--noSpinWait"])])
def test_bench_backend_trtexec_reads_the_exports_into_results(tmp_path, fake, monkeypatch, digits, mode):
    exe, log = fake
    monkeypatch.setenv("FAKE_TRTEXEC_DIGITS", digits)
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"x")
    (tmp_path / "m.plan.json").write_text(json.dumps({"profile": {"input": {"min": [1, 3, 8, 8], "opt": [2, 3, 8, 8],
                                                                            "max": [4, 3, 8, 8]}}}))
    out = tmp_path / "results.json"
    r = runner.invoke(app, ["bench", str(plan), "--backend", "trtexec", "--trtexec", str(exe), "--baseline", "none",
                            "--batch", "1,4", "--warmup-s", "0.2", "--min-duration-s", "0.3", "--min-iters", "6",
                            "--profile", "-o", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    times = read_export_times(REAL / "exportTimes_10.x_rtx3060_alexnet_fuzzylabs_first20_verbatim.json")
    assert [m["batch"] for m in res["measurements"]] == [1, 4]
    m = res["measurements"][0]
    assert m["backend"] == "trtexec" and m["samples_ms"] == [round(x, 6) for x in times["latencyMs"] * 3]
    assert m["compute_ms"]["n"] == 60 and m["h2d_ms"]["median"] == 0
    assert res["run"]["backend"] == "trtexec" and res["run"]["settings"]["trtexec"]["version"] == str(
        TrtexecVersion(int(digits)))
    assert res["profiles"][0]["source"] == "trtexec" and res["profiles"][0]["iterations"] == 14590
    assert "unknown" not in res["profiles"][0]["by_op"]
    calls = _calls(log)[1:]
    timing = [c for c in calls if any(a.startswith("--exportTimes=") for a in c)]
    assert len(timing) == 2 * 3  # 2 batch sizes x 3 rounds
    assert timing[0][:2] == [f"--loadEngine={plan}", "--shapes=input:1x3x8x8"]
    assert "--shapes=input:4x3x8x8" in timing[-1]
    for c in timing:
        assert "--warmUp=200" in c and "--duration=0.1" in c and "--iterations=2" in c
        assert all(flag in c for flag in mode)
    profile_runs = [c for c in calls if any(a.startswith("--exportProfile=") for a in c)]
    assert len(profile_runs) == 1 and "--separateProfileRun" in profile_runs[0]


def test_bench_backend_trtexec_needs_a_plan_with_its_sidecar(tmp_path, fake):
    exe, _ = fake
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"x")
    r = runner.invoke(app, ["bench", str(plan), "--backend", "trtexec", "--trtexec", str(exe), "--baseline", "none",
                            "-o", str(tmp_path / "r.json")])
    assert r.exit_code != 0 and "has no sidecar" in r.stderr and not (tmp_path / "r.json").exists()
    onnx = conv_model(tmp_path / "m.onnx")
    r = runner.invoke(app, ["bench", str(onnx), "--backend", "trtexec", "-o", str(tmp_path / "r.json")])
    assert r.exit_code == 2 and "--backend trtexec times TensorRT plans" in r.stderr


def test_bench_trtexec_se_tax_pairs_the_runs_of_a_round(tmp_path, fake):
    """SE plan and plain plan alternate run by run; the comparison records how its pairs were formed."""
    exe, log = fake
    for name in ("se", "plain"):
        (tmp_path / f"{name}.plan").write_bytes(b"x")
        (tmp_path / f"{name}.plan.json").write_text(json.dumps(
            {"profile": {"input": {"min": [1, 3, 8, 8], "opt": [1, 3, 8, 8], "max": [1, 3, 8, 8]}}}))
    out = tmp_path / "r.json"
    r = runner.invoke(app, ["bench", str(tmp_path / "se.plan"), "--backend", "trtexec", "--trtexec", str(exe),
                            "--baseline", str(tmp_path / "plain.plan"), "--min-duration-s", "0", "--min-iters", "3",
                            "--warmup-s", "0", "-o", str(out)])
    assert r.exit_code == 0, r.output
    (cmp,) = json.loads(out.read_text())["comparisons"]
    assert cmp["pairing"] == "iterations of the same round, by position"
    assert cmp["tax"]["n_pairs"] == 60 and cmp["tax"]["tax_pct"] == pytest.approx(0.0)  # the same real trace twice
    loads = [next(a for a in c if a.startswith("--loadEngine=")) for c in _calls(log)[1:]]
    assert [Path(x.split("=", 1)[1]).stem for x in loads] == ["se", "plain", "plain", "se", "se", "plain"]
