"""``se-deploy build-engine`` without TensorRT: exact trtexec lines, preparation, one-line refusals."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from typer.testing import CliRunner

from se_deploy.cli import app
from se_deploy.runtime.onnxruntime import run_onnx
from se_deploy.onnx_io import onnx_precision
from se_deploy.numerics import compare_arrays
from se_deploy.onnx_io import load_onnx
from tests.engines.trt_fixtures import calib_npz, conv_model, qdq_model

runner = CliRunner()
HAS_TRT = importlib.util.find_spec("tensorrt") is not None
no_trt = pytest.mark.skipif(HAS_TRT, reason="checks the behaviour where TensorRT is absent")


def invoke(*args):
    return runner.invoke(app, ["build-engine", *map(str, args)])


def one_error_line(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture()
def model(tmp_path):
    return conv_model(tmp_path / "m.onnx")


def test_print_trtexec_10(model, tmp_path):
    r = invoke(model, "-o", tmp_path / "m.plan", "--fp16", "--batch", "1:4:8", "--workspace", "1024",
               "--timing-cache", tmp_path / "t.cache", "--opt-level", "4", "--trt-version", "10", "--print-trtexec")
    assert r.exit_code == 0, r.output
    d = tmp_path
    assert r.stdout.strip() == (
        f"trtexec --onnx={model} --saveEngine={d}/m.plan --minShapes=input:1x3x8x8 --optShapes=input:4x3x8x8 "
        f"--maxShapes=input:8x3x8x8 --fp16 --memPoolSize=workspace:1024M --timingCacheFile={d}/t.cache "
        f"--builderOptimizationLevel=4 --profilingVerbosity=detailed --exportLayerInfo={d}/m.plan.layers.json "
        "--skipInference")
    assert "# trtexec equivalent for TensorRT 10.x" in r.stderr


def test_print_trtexec_11_takes_precision_from_the_onnx(tmp_path):
    q = qdq_model(tmp_path / "q.onnx")
    r = invoke(q, "-o", tmp_path / "q.plan", "--int8", "--dla-core", "0", "--gpu-fallback", "--trt-version", "11",
               "--print-trtexec")
    assert r.exit_code == 0, r.output
    d = tmp_path
    assert r.stdout.strip() == (
        f"trtexec --onnx={q} --saveEngine={d}/q.plan --minShapes=input:1x3x8x8 --optShapes=input:1x3x8x8 "
        "--maxShapes=input:1x3x8x8 --useDLACore=0 --allowGPUFallback --profilingVerbosity=detailed "
        f"--exportLayerInfo={d}/q.plan.layers.json --skipInference")
    r10 = invoke(q, "-o", tmp_path / "q.plan", "--int8", "--trt-version", "10", "--print-trtexec")
    assert " --stronglyTyped " in r10.stdout and "--int8" not in r10.stdout
    r10b = invoke(q, "-o", tmp_path / "q.plan", "--int8", "--fp16", "--trt-version", "10", "--print-trtexec")
    assert " --int8 --fp16 " in r10b.stdout and "--stronglyTyped" not in r10b.stdout


def test_trt11_fp16_converts_the_onnx_first_and_proves_it(model, tmp_path):
    r = invoke(model, "-o", tmp_path / "m.plan", "--fp16", "--trt-version", "11", "--print-trtexec")
    assert r.exit_code == 0, r.output
    fp16 = tmp_path / "m.fp16.onnx"
    assert r.stdout.startswith(f"trtexec --onnx={fp16} ") and "--fp16" not in r.stdout
    assert onnx_precision(load_onnx(fp16)).has_fp16
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    ref = run_onnx(str(model), {"input": x})["output"]
    got = run_onnx(str(fp16), {"input": x})["output"]
    cmp = compare_arrays(ref, got)
    assert cmp.rel_max_abs < 1e-2 and cmp.cosine > 0.9999, cmp  # measured: rel ~1e-3 (FP16 rounding)


def test_trt11_int8_quantizes_to_qdq_first(model, tmp_path):
    calib = calib_npz(tmp_path / "c.npz", n=16)
    r = invoke(model, "-o", tmp_path / "m.plan", "--int8", "--calib-data", calib, "--batch", "1:2:4",
               "--trt-version", "11", "--print-trtexec")
    assert r.exit_code == 0, r.output
    q = tmp_path / "m.int8.onnx"
    assert r.stdout.startswith(f"trtexec --onnx={q} ")
    assert not {"--int8", "--fp16", "--calib", "--best"} & {a.split("=")[0] for a in r.stdout.split()}
    prec = onnx_precision(load_onnx(q))
    # INT8 layers, the rest in FP32 as --int8 alone asks (TensorRT's flag meaning): no precision flag needed
    assert prec.has_qdq and not prec.has_fp16
    x = np.load(calib)["input"][:4]
    cmp = compare_arrays(run_onnx(str(model), {"input": x})["output"], run_onnx(str(q), {"input": x})["output"])
    assert cmp.cosine > 0.99, cmp
    # --fp16 next to --int8 --calib-data writes the unquantized layers in FP16: accepted on 11.x, strongly
    # typed without weak-typing flags on 10.x
    for major, want in (("11", set()), ("10", {"--stronglyTyped"})):
        r = invoke(model, "-o", tmp_path / "m.plan", "--int8", "--fp16", "--calib-data", calib, "--batch", "1:2:4",
                   "--trt-version", major, "--print-trtexec")
        assert r.exit_code == 0, r.output
        flags = {a.split("=")[0] for a in r.stdout.split()}
        assert flags & {"--int8", "--fp16", "--calib", "--best", "--stronglyTyped"} == want, r.stdout
        assert onnx_precision(load_onnx(q)).has_fp16


@pytest.mark.parametrize("version, header", [(None, "TRT-100300-EntropyCalibration2"),
                                             ("10.13.3", "TRT-101303-EntropyCalibration2"),
                                             ("8.6.2", "TRT-8602-EntropyCalibration2")])
def test_calibrator_cache_for_trtexec_names_the_target_version(model, tmp_path, version, header):
    """trtexec's calibrator is IInt8EntropyCalibrator2 and TensorRT ignores a cache of another version: the cache
    se-deploy writes for ``trtexec --calib`` says EntropyCalibration2 and the --trt-version (default 10.3.0)."""
    calib = calib_npz(tmp_path / "c.npz")
    target = ["--trt-version", version] if version else []
    r = invoke(model, "-o", tmp_path / "m.plan", "--int8", "--calibrator", "entropy", "--calib-data", calib,
               "--workspace", "256", *target, "--print-trtexec")
    assert r.exit_code == 0, r.output
    cache = tmp_path / "m.calib.cache"
    assert f" --int8 --calib={cache} " in r.stdout and "--stronglyTyped" not in r.stdout
    lines = cache.read_text().splitlines()
    assert lines[0] == header and any(ln.startswith("input: ") for ln in lines[1:])
    workspace = "--memPoolSize=workspace:256" + ("" if version == "8.6.2" else "M")
    assert f" {workspace} " in r.stdout
    # the existing cache is used again only by the TensorRT it was written for
    other = "10.3.0" if version == "8.6.2" else "8.6.2"
    r2 = invoke(model, "-o", tmp_path / "m.plan", "--int8", "--calibrator", "entropy", "--calib-data", calib,
                "--trt-version", other, "--print-trtexec")
    assert r2.exit_code == 6, r2.output
    assert f"but trtexec on TensorRT {other} reads only" in one_error_line(r2)
    assert cache.read_text().splitlines()[0] == header  # untouched


def test_calibrator_cache_needs_the_exact_target_version(model, tmp_path):
    calib = calib_npz(tmp_path / "c.npz")
    r = invoke(model, "-o", tmp_path / "m.plan", "--int8", "--calibrator", "entropy", "--calib-data", calib,
               "--trt-version", "10.13", "--print-trtexec")
    assert r.exit_code == 2, r.output
    assert "pass MAJOR.MINOR.PATCH" in one_error_line(r)
    assert not (tmp_path / "m.calib.cache").exists()


def test_minmax_calibration_has_no_trtexec_equivalent(model, tmp_path):
    calib = calib_npz(tmp_path / "c.npz")
    r = invoke(model, "-o", tmp_path / "m.plan", "--int8", "--calibrator", "minmax", "--calib-data", calib,
               "--trt-version", "10.3.0", "--print-trtexec")
    assert r.exit_code == 2, r.output
    assert "trtexec calibrates only with IInt8EntropyCalibrator2" in one_error_line(r)
    assert r.stdout == "" and not (tmp_path / "m.calib.cache").exists()


def test_print_trtexec_8_6_uses_flags_not_strong_typing(tmp_path):
    q = qdq_model(tmp_path / "q.onnx")
    r = invoke(q, "-o", tmp_path / "q.plan", "--int8", "--trt-version", "8.6", "--print-trtexec")
    assert r.exit_code == 0, r.output
    assert " --int8 " in r.stdout and "--stronglyTyped" not in r.stdout and "--fp16" not in r.stdout
    assert "# trtexec equivalent for TensorRT 8.x" in r.stderr


@no_trt
@pytest.mark.parametrize("major", ["10", "11"])
def test_without_tensorrt_prints_trtexec_and_fails(model, tmp_path, major):
    r = invoke(model, "-o", tmp_path / "m.plan", "--trt-version", major)
    assert r.exit_code == 9
    assert r.stdout.startswith(f"trtexec --onnx={model} --saveEngine={tmp_path}/m.plan ")
    line = one_error_line(r)
    assert line.startswith("error: TensorRT is not installed here, so no engine was built")
    assert f"(TensorRT {major}.x)" in line
    assert not (tmp_path / "m.plan").exists() and not (tmp_path / "m.plan.json").exists()


@no_trt
def test_dla_core_without_tensorrt(model, tmp_path):
    r = invoke(model, "-o", tmp_path / "m.plan", "--fp16", "--dla-core", "1")
    assert r.exit_code == 9
    assert "--useDLACore=1" in r.stdout
    assert one_error_line(r).startswith("error: --dla-core needs TensorRT on a device with DLA cores")


@pytest.mark.parametrize("args, code, message", [
    (["missing.onnx"], 2, "ONNX file not found"),
    (["{bad}"], 2, "not a readable ONNX model"),
    (["{model}", "--int8"], 2, "--int8 needs calibration data"),
    (["{model}", "--int8", "--calibrator", "entropy", "--calib-data", "{calib}", "--trt-version", "11"], 2,
     "TensorRT 11 has no INT8 calibrators"),
    (["{model}", "--int8", "--calib-data", "{tmp}/nope.npz", "--print-trtexec"], 6, "calibration data not found"),
    (["{model}", "--batch", "4:1", "--print-trtexec"], 2, "malformed --batch"),
    (["{model}", "--gpu-fallback"], 2, "--gpu-fallback only applies with --dla-core"),
    (["{model}", "--dla-core", "0"], 2, "DLA runs only FP16 and INT8 layers"),
    (["{model}", "-o", "{tmp}/no/such/dir/m.plan", "--print-trtexec"], 2, "output directory does not exist"),
    (["{qdq}", "--int8", "--calib-data", "{calib}", "--print-trtexec"], 2, "already has Q/DQ nodes"),
    (["{model}", "--trt-version", "12", "--print-trtexec"], 2, "--trt-version must be 8.6, 10.x or 11.x"),
    (["{model}", "--trt-version", "8.5.2", "--print-trtexec"], 2, "--trt-version must be 8.6, 10.x or 11.x"),
    (["{model}", "--trtexec", "{tmp}/no-such-trtexec"], 2, "not an executable file"),
])
def test_bad_input_is_one_line_and_non_zero(tmp_path, model, args, code, message):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage, not protobuf")
    paths = {"model": model, "bad": bad, "calib": calib_npz(tmp_path / "c.npz"), "tmp": tmp_path,
             "qdq": qdq_model(tmp_path / "q.onnx")}
    r = invoke(*[a.format(**paths) for a in args])
    assert r.exit_code == code, r.output
    assert message in one_error_line(r)
    assert not list(tmp_path.glob("*.plan*"))


# --- the mixed INT8+FP16 build: Q/DQ written with FP16 high precision ----------------------------

from se_deploy.engines import build as build_module  # noqa: E402
from se_deploy.engines.build import tensorrt_quant_config  # noqa: E402


def test_quantizer_takes_the_high_precision_of_the_mixed_build():
    assert tensorrt_quant_config("fp16").high_precision == "fp16"
    assert tensorrt_quant_config("fp32").high_precision == "fp32"  # --int8 alone: FP32 layers
    assert tensorrt_quant_config("fp32").target == "tensorrt"


@pytest.mark.parametrize("major", ["10", "11"])
def test_mixed_build_quantizes_with_fp16_high_precision(model, tmp_path, monkeypatch, major):
    """--int8 --fp16 --calib-data is the strongly typed Q/DQ+FP16 build on 10.x and 11.x (no precision flags)."""
    seen = {}
    real_quantize = build_module.quantize_int8

    def spy(src, out, calib, config):
        seen["config"] = config
        return real_quantize(src, out, calib, config)

    monkeypatch.setattr(build_module, "quantize_int8", spy)
    calib = calib_npz(tmp_path / "c.npz", n=16)
    r = invoke(model, "-o", tmp_path / "m.plan", "--int8", "--fp16", "--calib-data", calib, "--trt-version", major,
               "--print-trtexec")
    assert r.exit_code == 0, r.output
    assert seen["config"].high_precision == "fp16" and seen["config"].target == "tensorrt"
    q = tmp_path / "m.int8.onnx"
    prec = onnx_precision(load_onnx(q))
    assert prec.has_qdq and prec.has_fp16
    flags = {a.split("=")[0] for a in r.stdout.split()}
    assert not flags & {"--int8", "--fp16", "--best"}
    assert ("--stronglyTyped" in flags) == (major == "10")


def test_int8_alone_keeps_fp32_layers(model, tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(build_module, "quantize_int8",
                        lambda src, out, calib, config: (seen.setdefault("config", config),
                                                         __import__("shutil").copy(qdq_model(tmp_path / "q0.onnx"), out)))
    r = invoke(model, "-o", tmp_path / "m.plan", "--int8", "--calib-data", calib_npz(tmp_path / "c.npz"),
               "--trt-version", "11", "--print-trtexec")
    assert r.exit_code == 0, r.output
    cfg = seen["config"]
    assert cfg.target == "tensorrt"
    assert cfg.high_precision == "fp32"
