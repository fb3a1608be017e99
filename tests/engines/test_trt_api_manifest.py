"""The TensorRT layer uses only names that exist in every TensorRT version that runs them.

Checked statically (AST + the API manifests of 10.3, 10.7, 10.13, 10.16, 11.0, 11.1 in
tests/engines/tensorrt_api/); TensorRT itself is never imported. The broken fixture proves
the check fails when it should.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tools.trt_api_check import (DLA_VERSIONS, Finding, check_files, load_manifests,
                                                   package_files)
from se_deploy.engines.tensorrt.config import BuildConfig, plan_precision
from se_deploy.onnx_io import OnnxPrecision
from se_deploy.engines.tensorrt.trtexec import TrtexecCommand, check_trtexec_flags, trtexec_command, trtexec_problems
from se_deploy.errors import InternalError, UsageError

HERE = Path(__file__).parent
MANIFESTS = HERE / "tensorrt_api"
FIXTURE = HERE / "fixtures" / "broken_trt11.py"
ALL = ("10.3", "10.7", "10.13", "10.16", "11.0", "11.1")
TEN = ALL[:4]
ELEVEN = ALL[4:]


@pytest.fixture(scope="module")
def manifests():
    return load_manifests(MANIFESTS)


@pytest.fixture(scope="module")
def real(manifests):
    return check_files(package_files(), manifests)


def test_manifests_cover_every_supported_release(manifests):
    assert tuple(manifests) == ALL
    assert manifests["11.1"].has_member("Builder", "create_network")
    assert not manifests["11.1"].has_member("BuilderFlag", "INT8")
    assert manifests["10.3"].has_member("BuilderFlag", "INT8")
    assert manifests["10.3"].has_member("Logger", "WARNING")  # inherited from ILogger
    assert DLA_VERSIONS <= set(TEN)


def test_tensorrt_layer_uses_only_existing_names(real):
    findings, _ = real
    assert findings == [], "TensorRT names missing from a version that runs them:\n" + "\n".join(map(str, findings))


def test_every_tensorrt_module_is_checked():
    names = {p.name for p in package_files()}
    assert {"builder.py", "runner.py", "calibrator.py", "cuda.py", "_trt.py"} <= names
    assert "trt_api_check.py" not in names


def _versions_of(uses, name):
    return {u.versions for u in uses if u.name == name}


def test_checker_resolves_types_and_version_paths_in_the_real_code(real):
    """The check is only worth something if it sees the calls: key names must be resolved, with the
    versions of the path they are on."""
    _, uses = real
    everywhere = {
        "IExecutionContext.execute_async_v3", "IExecutionContext.set_input_shape",
        "IExecutionContext.set_tensor_address", "ICudaEngine.num_io_tensors", "ICudaEngine.get_tensor_mode",
        "IBuilderConfig.set_memory_pool_limit", "IBuilderConfig.profiling_verbosity",
        "IBuilderConfig.builder_optimization_level", "IBuilderConfig.create_timing_cache",
        "IBuilderConfig.set_timing_cache", "IOptimizationProfile.set_shape", "Builder.build_serialized_network",
        "OnnxParser.parse_from_file", "EngineInspector.get_engine_information", "IBuilderConfig.DLA_core",
        "DeviceType.DLA", "Runtime.deserialize_cuda_engine",
    }
    for name in everywhere:
        assert _versions_of(uses, name), f"{name} was not resolved by the checker"
        assert ALL in _versions_of(uses, name), (name, _versions_of(uses, name))
    ten_only = {"BuilderFlag.FP16", "BuilderFlag.INT8", "IBuilderConfig.int8_calibrator",
                "IBuilderConfig.set_calibration_profile", "trt.IInt8EntropyCalibrator2", "trt.IInt8MinMaxCalibrator",
                "IInt8EntropyCalibrator2.get_batch", "IInt8MinMaxCalibrator.write_calibration_cache"}
    for name in ten_only:
        assert _versions_of(uses, name) == {TEN}, (name, _versions_of(uses, name))


EXPECT = re.compile(r"#\s*expect:\s*(\S+)\s+([\d.,]+)")


def _expected_from_markers():
    out = set()
    for lineno, line in enumerate(FIXTURE.read_text().splitlines(), start=1):
        m = EXPECT.search(line)
        if m:
            out.add((lineno, m.group(1), tuple(m.group(2).split(","))))
    return out


def test_broken_fixture_is_caught_line_by_line(manifests):
    findings, _ = check_files([FIXTURE], manifests)
    got = {(f.line, f.name, f.missing_in) for f in findings}
    expected = _expected_from_markers()
    assert len(expected) >= 9
    assert got == expected
    int8 = next(f for f in findings if f.name == "BuilderFlag.INT8")
    assert str(int8) == f"{FIXTURE}:{int8.line}: BuilderFlag.INT8 is missing from TensorRT 11.0, 11.1"


def test_version_guards_narrow_and_complement(tmp_path, manifests):
    src = tmp_path / "guards.py"
    src.write_text(
        "def f(trt, major, config: 'trt.IBuilderConfig'):\n"
        "    if major < 11:\n"
        "        config.set_flag(trt.BuilderFlag.FP16)\n"
        "    if major == 10:\n"
        "        config.int8_calibrator = None\n"
        "    if major >= 11:\n"
        "        raise ValueError('no')\n"
        "    config.set_flag(trt.BuilderFlag.INT8)\n"
        "    if builder.num_DLA_cores > 0:\n"
        "        config.default_device_type = trt.DeviceType.DLA\n"
        "def g(trt, config: 'trt.IBuilderConfig'):\n"
        "    config.set_flag(trt.BuilderFlag.INT8)\n")
    findings, _ = check_files([src], manifests)
    assert [(f.line, f.name, f.missing_in) for f in findings] == [(12, "BuilderFlag.INT8", ELEVEN)]


def test_checker_command_line_exit_codes():
    ok = subprocess.run([sys.executable, "-m", "tools.trt_api_check", str(MANIFESTS)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = subprocess.run([sys.executable, "-m", "tools.trt_api_check", str(MANIFESTS),
                          str(FIXTURE)], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "BuilderFlag.INT8 is missing from TensorRT 11.0, 11.1" in bad.stdout


# --- trtexec lines: every emitted flag is valid for its version ------------------------------

FORBIDDEN_11 = {"--fp16", "--int8", "--best", "--calib", "--bf16", "--fp8", "--int4"}
#: trtexec flags per version, written out independently of the builder's own table.
VALID = {
    10: {"--onnx", "--saveEngine", "--minShapes", "--optShapes", "--maxShapes", "--memPoolSize", "--timingCacheFile",
         "--builderOptimizationLevel", "--useDLACore", "--allowGPUFallback", "--profilingVerbosity",
         "--exportLayerInfo", "--skipInference", "--fp16", "--int8", "--calib", "--stronglyTyped",
         "--minShapesCalib", "--optShapesCalib", "--maxShapesCalib"},
    11: {"--onnx", "--saveEngine", "--minShapes", "--optShapes", "--maxShapes", "--memPoolSize", "--timingCacheFile",
         "--builderOptimizationLevel", "--useDLACore", "--allowGPUFallback", "--profilingVerbosity",
         "--exportLayerInfo", "--skipInference"},
}


def _all_commands():
    profiles = [{}, {"input": ((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))}]
    onnx_kinds = [OnnxPrecision(), OnnxPrecision(qdq_nodes=4), OnnxPrecision(fp16_tensors=3),
                  OnnxPrecision(qdq_nodes=4, fp16_tensors=3)]
    for major, fp16, int8, calib, calibrator, extras, prof, kind in itertools.product(
            (10, 11), (False, True), (False, True), (None, "c.npz"), (None, "entropy", "minmax"),
            ({}, {"workspace_mib": 256, "timing_cache": "t.cache", "opt_level": 3},
             {"dla_core": 0, "gpu_fallback": True}), profiles, onnx_kinds):
        try:
            cfg = BuildConfig(onnx="m.onnx", output="m.plan", fp16=fp16, int8=int8, calib_data=calib if int8 else None,
                              calibrator=calibrator, **extras)
            plan = plan_precision(cfg, major, kind)
        except UsageError:
            continue
        calib_shapes = {k: (v[1],) * 3 for k, v in prof.items()} if plan.calibrator else {}
        yield cfg, plan, trtexec_command(cfg, plan, "m.onnx", prof, calib_shapes=calib_shapes)


def test_every_trtexec_flag_is_valid_for_its_version():
    n = {10: 0, 11: 0}
    for cfg, plan, cmd in _all_commands():
        flags = set(cmd.flags)
        assert flags <= VALID[cmd.major], (cmd.line(), flags - VALID[cmd.major])
        assert "--workspace" not in flags
        if cmd.major == 11:
            assert not flags & FORBIDDEN_11, cmd.line()
            assert "--stronglyTyped" not in flags  # always on in 11.x
        if cfg.workspace_mib is not None:
            assert f"--memPoolSize=workspace:{cfg.workspace_mib}M" in cmd.args
        assert trtexec_problems(cmd) == []
        n[cmd.major] += 1
    assert n[10] > 50 and n[11] > 20


def test_trtexec_self_check_rejects_removed_flags():
    with pytest.raises(InternalError, match="--int8 was removed in trtexec 11.x"):
        check_trtexec_flags(TrtexecCommand(11, ("trtexec", "--onnx=m.onnx", "--int8")))
    with pytest.raises(InternalError, match="--workspace was removed in trtexec 10.x"):
        check_trtexec_flags(TrtexecCommand(10, ("trtexec", "--workspace=1024")))
    assert trtexec_problems(TrtexecCommand(10, ("trtexec", "--bogus"))) == ["--bogus is not a known trtexec 10.x flag"]
    assert isinstance(Finding("f.py", 1, "x", ("11.0",)), Finding)
