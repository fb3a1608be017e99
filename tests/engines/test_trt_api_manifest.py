"""The TensorRT layer uses only names that exist in every TensorRT version that runs them.

Checked statically (AST + the API manifests of 8.6, 10.3, 10.7, 10.13, 10.16, 11.0, 11.1 in
tests/engines/tensorrt_api/); TensorRT itself is never imported. The broken fixtures prove
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
from se_deploy.engines.tensorrt import calibrator as calibrator_module
from se_deploy.engines.tensorrt.config import BuildConfig, plan_precision
from se_deploy.onnx_io import OnnxPrecision
from se_deploy.engines.tensorrt.trtexec import (TrtexecCommand, check_trtexec_flags, trtexec_command, trtexec_problems,
                                                trtexec_unsupported)
from se_deploy.errors import InternalError, UsageError

HERE = Path(__file__).parent
MANIFESTS = HERE / "tensorrt_api"
FIXTURE = HERE / "fixtures" / "broken_trt11.py"
BASES_FIXTURE = HERE / "fixtures" / "broken_trt_bases.py"
CALIBRATOR = Path(calibrator_module.__file__)
ALL = ("8.6", "10.3", "10.7", "10.13", "10.16", "11.0", "11.1")
TEN = ALL[1:5]
ELEVEN = ALL[5:]
IMPLICIT = ALL[:5]  # 8.6 and 10.x: the releases with builder precision flags and INT8 calibrators
SHARED = next((p / "shared" / "tensorrt_api" for p in Path(__file__).resolve().parents[2:5]
               if (p / "shared" / "tensorrt_api").is_dir()), Path("/nonexistent"))


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
    assert DLA_VERSIONS == {"8.6", "10.3", "10.7"}
    assert manifests["8.6"].has_member("NetworkDefinitionCreationFlag", "EXPLICIT_BATCH")
    assert not manifests["8.6"].has_member("NetworkDefinitionCreationFlag", "STRONGLY_TYPED")


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared manifests are not next to this checkout")
def test_manifests_are_copies_of_the_shared_ones():
    for p in sorted(SHARED.glob("*.json")):
        assert (MANIFESTS / p.name).read_bytes() == p.read_bytes(), f"refresh tests/engines/tensorrt_api/{p.name}"


def test_manifests_list_the_names_tensorrt_looks_up_on_overrides(manifests):
    """Methods the bindings call back by name (no ``.def``) are listed too, so overriding them is no finding."""
    for v in TEN:
        for name in ("get_quantile", "get_regression_cutoff", "read_histogram_cache", "write_histogram_cache"):
            assert manifests[v].has_member("IInt8LegacyCalibrator", name), (v, name)
    for v in ALL:
        assert manifests[v].has_member("IOutputAllocator", "reallocate_output"), v
        assert manifests[v].has_member("IOutputAllocator", "notify_shape"), v
        assert manifests[v].has_member("IErrorRecorder", "get_num_errors"), v
        assert manifests[v].has_member("Runtime", "DLA_core") and manifests[v].has_member("Runtime", "num_DLA_cores")
    for v in ALL[1:]:
        assert manifests[v].has_member("IOutputAllocator", "reallocate_output_async"), v
    assert not manifests["8.6"].has_member("IOutputAllocator", "reallocate_output_async")


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
        "DeviceType.DLA", "Runtime.deserialize_cuda_engine", "Runtime.DLA_core", "Runtime.num_DLA_cores",
        "trt.IOutputAllocator", "IOutputAllocator.reallocate_output", "IOutputAllocator.notify_shape",
        "IExecutionContext.set_output_allocator", "ICudaEngine.is_shape_inference_io",
    }
    for name in everywhere:
        assert _versions_of(uses, name), f"{name} was not resolved by the checker"
        assert ALL in _versions_of(uses, name), (name, _versions_of(uses, name))
    ten_only = {"BuilderFlag.FP16", "BuilderFlag.INT8", "IBuilderConfig.int8_calibrator",
                "IBuilderConfig.set_calibration_profile", "trt.IInt8EntropyCalibrator2", "trt.IInt8MinMaxCalibrator",
                "IInt8EntropyCalibrator2.get_batch", "IInt8MinMaxCalibrator.write_calibration_cache"}
    for name in ten_only:
        assert _versions_of(uses, name) == {IMPLICIT}, (name, _versions_of(uses, name))
    assert _versions_of(uses, "NetworkDefinitionCreationFlag.EXPLICIT_BATCH") == {("8.6",)}
    assert _versions_of(uses, "NetworkDefinitionCreationFlag.STRONGLY_TYPED") == {TEN}


def _override_lines(uses, base):
    return {u.name.split(".", 1)[1]: u.line for u in uses
            if u.name.startswith(base + ".") and u.file.endswith("calibrator.py")}


def test_the_one_calibrator_class_is_checked_against_both_bases(real):
    """The calibrator is written once; each of its methods is verified against each TensorRT base it may get."""
    _, uses = real
    entropy = _override_lines(uses, "IInt8EntropyCalibrator2")
    minmax = _override_lines(uses, "IInt8MinMaxCalibrator")
    assert entropy == minmax  # the same lines, one class body
    assert set(entropy) == {"get_batch_size", "get_batch", "read_calibration_cache", "write_calibration_cache"}
    for name in entropy:
        for base in ("IInt8EntropyCalibrator2", "IInt8MinMaxCalibrator"):
            assert _versions_of(uses, f"{base}.{name}") == {IMPLICIT}


@pytest.mark.parametrize("edit, expected", [
    # a method TensorRT would never call, on either base (and the one it calls is gone)
    (("def get_batch_size(self)", "def get_batch_sizes(self)"),
     {("IInt8EntropyCalibrator2.get_batch_sizes", IMPLICIT), ("IInt8MinMaxCalibrator.get_batch_sizes", IMPLICIT),
      ("Calibrator.get_batch_size", IMPLICIT)}),
    # a declared base that has none of the methods
    (('@trt_bases("IInt8EntropyCalibrator2", "IInt8MinMaxCalibrator")',
      '@trt_bases("IInt8EntropyCalibrator2", "IInt8MinMaxCalibrator", "IStreamReader")'),
     {(f"IStreamReader.{m}", IMPLICIT) for m in
      ("get_batch_size", "get_batch", "read_calibration_cache", "write_calibration_cache")}
     | {("trt.IStreamReader", ("8.6",))}),
    # the factory no longer marked 8.6/10.x-only: the calibrator bases are gone in 11.x
    (("@serves(8, 10)\n@trt_bases", "@trt_bases"),
     {(f"{b}.{m}", ELEVEN) for b in ("IInt8EntropyCalibrator2", "IInt8MinMaxCalibrator") for m in
      ("get_batch_size", "get_batch", "read_calibration_cache", "write_calibration_cache")}
     | {("trt.IInt8EntropyCalibrator2", ELEVEN), ("trt.IInt8MinMaxCalibrator", ELEVEN)}),
    # the declaration dropped: the class can no longer be checked
    (('@trt_bases("IInt8EntropyCalibrator2", "IInt8MinMaxCalibrator")\n', ""),
     {("Calibrator(base)", IMPLICIT)}),
])
def test_the_real_calibrator_check_can_fail(tmp_path, manifests, edit, expected):
    source = CALIBRATOR.read_text()
    assert edit[0] in source
    broken = tmp_path / "calibrator.py"
    broken.write_text(source.replace(edit[0], edit[1]))
    findings, _ = check_files([broken], manifests)
    assert {(f.name, f.missing_in) for f in findings} == expected


EXPECT = re.compile(r"#\s*expect:\s*(.*\S\s+\d[\d.,]*)\s*$")


def _expected_from_markers(path=FIXTURE):
    """``# expect: NAME VERSIONS`` markers, several per line separated by ``;``."""
    out = set()
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        m = EXPECT.search(line)
        if m:
            for item in m.group(1).split(";"):
                name, versions = item.strip().rsplit(" ", 1)
                out.add((lineno, name, tuple(versions.split(","))))
    return out


def test_broken_fixture_is_caught_line_by_line(manifests):
    findings, _ = check_files([FIXTURE], manifests)
    got = {(f.line, f.name, f.missing_in) for f in findings}
    expected = _expected_from_markers()
    assert len(expected) >= 9
    assert got == expected
    int8 = next(f for f in findings if f.name == "BuilderFlag.INT8")
    assert str(int8) == f"{FIXTURE}:{int8.line}: BuilderFlag.INT8 is missing from TensorRT 11.0, 11.1"


def test_classes_written_for_several_bases_are_caught_line_by_line(manifests):
    """@trt_bases: (a) a method missing from any declared base, (b) a declared base missing in a version,
    (c) a base the check cannot decide, each in the versions that serve the factory."""
    findings, _ = check_files([BASES_FIXTURE], manifests)
    got = {(f.line, f.name, f.missing_in) for f in findings}
    assert got == _expected_from_markers(BASES_FIXTURE)
    whys = [f.why for f in findings]
    assert sum("overrides no method" in w for w in whys) >= 5  # (a)
    assert sum("is a declared base (@trt_bases)" in w for w in whys) >= 3  # (b)
    assert sum(w.startswith("cannot be checked") for w in whys) >= 7  # (c)
    declared = next(f for f in findings if f.name == "trt.IStreamReaderV2")
    assert str(declared) == (f"{BASES_FIXTURE}:{declared.line}: trt.IStreamReaderV2 is a declared base (@trt_bases) "
                             "of reader() but is missing from TensorRT 10.3")


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
    bases = subprocess.run([sys.executable, "-m", "tools.trt_api_check", str(MANIFESTS), str(BASES_FIXTURE)],
                           capture_output=True, text=True)
    assert bases.returncode == 1
    assert "Calibrator(bases[kind]) cannot be checked" in bases.stdout


# --- trtexec lines: every emitted flag is valid for its version ------------------------------

FORBIDDEN_11 = {"--fp16", "--int8", "--best", "--calib", "--bf16", "--fp8", "--int4"}
#: trtexec flags per version, written out independently of the builder's own table.
VALID = {
    8: {"--onnx", "--saveEngine", "--minShapes", "--optShapes", "--maxShapes", "--memPoolSize", "--timingCacheFile",
        "--builderOptimizationLevel", "--useDLACore", "--allowGPUFallback", "--profilingVerbosity",
        "--exportLayerInfo", "--skipInference", "--fp16", "--int8", "--calib", "--minShapesCalib", "--optShapesCalib",
        "--maxShapesCalib"},
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
            (8, 10, 11), (False, True), (False, True), (None, "c.npz"), (None, "entropy", "minmax"),
            ({}, {"workspace_mib": 256, "timing_cache": "t.cache", "opt_level": 3},
             {"dla_core": 0, "gpu_fallback": True}), profiles, onnx_kinds):
        try:
            cfg = BuildConfig(onnx="m.onnx", output="m.plan", fp16=fp16, int8=int8, calib_data=calib if int8 else None,
                              calibrator=calibrator, **extras)
            plan = plan_precision(cfg, major, kind)
        except UsageError:
            continue
        calib_shapes = {k: (v[1],) * 3 for k, v in prof.items()} if plan.calibrator else {}
        if plan.calibrator == "minmax":  # trtexec's calibrator is IInt8EntropyCalibrator2 only
            assert "IInt8EntropyCalibrator2" in trtexec_unsupported(plan)
            with pytest.raises(UsageError, match="--calibrator entropy"):
                trtexec_command(cfg, plan, "m.onnx", prof, calib_shapes=calib_shapes)
            continue
        assert trtexec_unsupported(plan) is None
        yield cfg, plan, trtexec_command(cfg, plan, "m.onnx", prof, calib_shapes=calib_shapes)


def test_every_trtexec_flag_is_valid_for_its_version():
    n = {8: 0, 10: 0, 11: 0}
    for cfg, plan, cmd in _all_commands():
        flags = set(cmd.flags)
        assert flags <= VALID[cmd.major], (cmd.line(), flags - VALID[cmd.major])
        assert "--workspace" not in flags
        if cmd.major == 11:
            assert not flags & FORBIDDEN_11, cmd.line()
            assert "--stronglyTyped" not in flags  # always on in 11.x
        if cmd.major == 8:
            assert "--stronglyTyped" not in flags  # 8.6 has no strongly typed networks
            assert not plan.strongly_typed
        if cfg.workspace_mib is not None:
            unit = "" if cmd.major == 8 else "M"  # 8.6 reads a plain number of MiB
            assert f"--memPoolSize=workspace:{cfg.workspace_mib}{unit}" in cmd.args
        assert trtexec_problems(cmd) == []
        n[cmd.major] += 1
    assert n[8] > 50 and n[10] > 50 and n[11] > 20


def test_trtexec_self_check_rejects_removed_flags():
    with pytest.raises(InternalError, match="--int8 was removed in trtexec 11.x"):
        check_trtexec_flags(TrtexecCommand(11, ("trtexec", "--onnx=m.onnx", "--int8")))
    with pytest.raises(InternalError, match="--workspace was removed in trtexec 10.x"):
        check_trtexec_flags(TrtexecCommand(10, ("trtexec", "--workspace=1024")))
    assert trtexec_problems(TrtexecCommand(10, ("trtexec", "--bogus"))) == ["--bogus is not a known trtexec 10.x flag"]
    assert isinstance(Finding("f.py", 1, "x", ("11.0",)), Finding)
