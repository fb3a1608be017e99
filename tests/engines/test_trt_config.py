"""BuildConfig validation and the precision matrix for TensorRT 8.6, 10 and 11 (no TensorRT needed)."""

from __future__ import annotations

import dataclasses

import pytest

from se_deploy.engines.tensorrt.config import BuildConfig, parse_batch_range, plan_precision
from se_deploy.onnx_io import OnnxPrecision
from se_deploy.engines.tensorrt.onnx_model import profile_shapes
from se_deploy.onnx_io import graph_inputs, onnx_precision
from se_deploy.errors import UsageError
from se_deploy.onnx_io import load_onnx
from tests.engines.trt_fixtures import conv_model, fp16_model, qdq_model

FP32 = OnnxPrecision()
QDQ = OnnxPrecision(qdq_nodes=3)
F16 = OnnxPrecision(fp16_tensors=2)


def cfg(**kw) -> BuildConfig:
    return BuildConfig(onnx="m.onnx", output="m.plan", **kw)


@pytest.mark.parametrize("kw, message", [
    ({"calibrator": "entropy"}, "--calibrator needs --int8"),
    ({"int8": True, "calibrator": "percentile", "calib_data": "c.npz"}, "is not one of entropy, minmax"),
    ({"int8": True, "calibrator": "entropy"}, "--calibrator needs --calib-data"),
    ({"calib_data": "c.npz"}, "--calib-data is only used with --int8"),
    ({"calib_cache": "x.cache"}, "needs --int8 --calibrator"),
    ({"trt_version": 9}, "--trt-version must be 8.6, 10.x or 11.x"),
    ({"trt_version": "8.5.2"}, "--trt-version must be 8.6, 10.x or 11.x"),
    ({"trt_version": "8"}, "--trt-version must be 8.6, 10.x or 11.x"),
    ({"trt_version": "10.x"}, "is not a TensorRT version"),
    ({"trt_version": 11, "int8": True, "calibrator": "minmax", "calib_data": "c"}, "TensorRT 11 has no INT8 calib"),
    ({"trt_version": "11.1.0", "int8": True, "calibrator": "entropy", "calib_data": "c"}, "TensorRT 11 has no INT8"),
    ({"batch": (4, 2, 8)}, "need 1 <= min <= opt <= max"),
    ({"workspace_mib": 0}, "--workspace must be a positive number"),
    ({"opt_level": 6}, "--opt-level must be between 0 and 5"),
    ({"dla_core": -1, "fp16": True}, "--dla-core must be >= 0"),
    ({"gpu_fallback": True}, "--gpu-fallback only applies with --dla-core"),
    ({"dla_core": 0}, "DLA runs only FP16 and INT8 layers"),
    ({"cuda_api": "cupy"}, "--cuda-api 'cupy' is not one of cuda-python, pycuda"),
    ({"calib_batch_size": 0}, "calibration batch size must be >= 1"),
])
def test_bad_options_are_refused_on_construction(kw, message):
    with pytest.raises(UsageError, match=message):
        cfg(**kw)


@pytest.mark.parametrize("given, text, major", [(10, "10", 10), ("10.13", "10.13", 10), (" 10.3.0 ", "10.3.0", 10),
                                                ("8.6.2", "8.6.2", 8), ("11", "11", 11), ("10.3.0.30", "10.3.0.30", 10)])
def test_trt_version_is_kept_as_given_with_its_major(given, text, major):
    c = cfg(trt_version=given)
    assert c.trt_version == text and c.target_major == major
    assert cfg().target_major is None


def test_config_is_frozen_and_records_the_request():
    c = cfg(int8=True, fp16=True, calib_data="c.npz", calibrator="entropy")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.fp16 = False
    assert c.requested == ("int8", "fp16")
    assert c.resolved_calib_cache() == "m.calib.cache"
    assert cfg().requested == ("fp32",)


@pytest.mark.parametrize("text, expected", [("1:4:8", (1, 4, 8)), ("2", (2, 2, 2)), (" 1 : 1 : 1 ", (1, 1, 1))])
def test_batch_range(text, expected):
    assert parse_batch_range(text) == expected


@pytest.mark.parametrize("text", ["1:2", "0:1:2", "4:2:8", "a:b:c", ""])
def test_bad_batch_range(text):
    with pytest.raises(UsageError):
        parse_batch_range(text)


# --- the precision matrix ------------------------------------------------------------------

def _row(plan):
    return plan.prepare, plan.strongly_typed, plan.builder_flags, plan.calibrator, plan.high_precision


Q = ("quantize_int8",)


@pytest.mark.parametrize("kw, onnx, row8, row10, row11", [
    ({}, FP32, ((), False, (), None, None), ((), False, (), None, None), ((), True, (), None, None)),
    ({}, QDQ, ((), False, ("INT8",), None, None), ((), True, (), None, None), ((), True, (), None, None)),
    ({}, F16, ((), False, ("FP16",), None, None), ((), True, (), None, None), ((), True, (), None, None)),
    ({"fp16": True}, FP32, ((), False, ("FP16",), None, None), ((), False, ("FP16",), None, None),
     (("convert_fp16",), True, (), None, None)),
    ({"fp16": True}, F16, ((), False, ("FP16",), None, None), ((), True, (), None, None),
     ((), True, (), None, None)),
    ({"int8": True}, QDQ, ((), False, ("INT8",), None, None), ((), True, (), None, None), ((), True, (), None, None)),
    ({"int8": True, "calib_data": "c.npz"}, FP32, (Q, False, ("INT8",), None, "fp32"), (Q, True, (), None, "fp32"),
     (Q, True, (), None, "fp32")),
    # the best mixed build: Q/DQ written with FP16 float layers, strongly typed (8.6: both flags, weak typing)
    ({"int8": True, "fp16": True, "calib_data": "c.npz"}, FP32, (Q, False, ("INT8", "FP16"), None, "fp32"),
     (Q, True, (), None, "fp16"), (Q, True, (), None, "fp16")),
    ({"int8": True, "fp16": True}, QDQ, ((), False, ("INT8", "FP16"), None, None),
     ((), False, ("INT8", "FP16"), None, None), "refused"),
    ({"int8": True, "fp16": True}, OnnxPrecision(qdq_nodes=2, fp16_tensors=2),
     ((), False, ("INT8", "FP16"), None, None), ((), True, (), None, None), ((), True, (), None, None)),
    ({"int8": True, "calib_data": "c", "calibrator": "entropy"}, FP32, ((), False, ("INT8",), "entropy", None),
     ((), False, ("INT8",), "entropy", None), "refused"),
    ({"int8": True, "fp16": True, "calib_data": "c", "calibrator": "minmax"}, FP32,
     ((), False, ("INT8", "FP16"), "minmax", None), ((), False, ("INT8", "FP16"), "minmax", None), "refused"),
])
def test_precision_matrix(kw, onnx, row8, row10, row11):
    c = cfg(**kw)
    assert _row(plan_precision(c, 8, onnx)) == row8
    assert _row(plan_precision(c, 10, onnx)) == row10
    if row11 == "refused":
        with pytest.raises(UsageError, match="TensorRT 11"):
            plan_precision(c, 11, onnx)
    else:
        plan = plan_precision(c, 11, onnx)
        assert _row(plan) == row11
        assert plan.builder_flags == () and plan.calibrator is None  # 11.x never uses weak typing


def test_trt11_mixed_refusal_says_how_to_get_the_mixed_build():
    with pytest.raises(UsageError, match="--int8 --fp16 --calib-data"):
        plan_precision(cfg(int8=True, fp16=True), 11, QDQ)


def test_plan_describes_the_high_precision_of_the_quantize_step():
    plan = plan_precision(cfg(int8=True, fp16=True, calib_data="c.npz"), 11, FP32)
    assert "prepare: quantize_int8 (high precision fp16)" in plan.describe()
    assert plan.to_dict()["high_precision"] == "fp16"


@pytest.mark.parametrize("major", [8, 10, 11])
def test_int8_without_calibration_or_qdq_is_refused(major):
    with pytest.raises(UsageError, match="--int8 needs calibration data"):
        plan_precision(cfg(int8=True), major, FP32)


@pytest.mark.parametrize("major", [8, 10, 11])
def test_already_quantized_model_with_calibration_data_is_refused(major):
    with pytest.raises(UsageError, match="already has Q/DQ nodes"):
        plan_precision(cfg(int8=True, calib_data="c.npz"), major, QDQ)


@pytest.mark.parametrize("major", [7, 9, 12])
def test_unsupported_major_is_refused(major):
    with pytest.raises(UsageError, match=f"TensorRT {major}.x is not supported"):
        plan_precision(cfg(), major, FP32)


# --- what the ONNX already carries -----------------------------------------------------------

def test_onnx_precision_detects_qdq_and_fp16(tmp_path):
    assert onnx_precision(load_onnx(conv_model(tmp_path / "a.onnx"))) == OnnxPrecision(0, 0)
    q = onnx_precision(load_onnx(qdq_model(tmp_path / "q.onnx")))
    assert q.qdq_nodes == 3 and not q.has_fp16
    h = onnx_precision(load_onnx(fp16_model(tmp_path / "h.onnx")))
    assert h.has_fp16 and not h.has_qdq and h.fp16_tensors == 2  # the FP16 weight + the Cast to FP16


def test_profile_shapes(tmp_path):
    dyn = graph_inputs(load_onnx(conv_model(tmp_path / "d.onnx")))
    assert dyn[0].name == "input" and dyn[0].dims == ("N", 3, 8, 8)
    assert profile_shapes(dyn, (1, 4, 8)) == {"input": ((1, 3, 8, 8), (4, 3, 8, 8), (8, 3, 8, 8))}
    assert profile_shapes(dyn, None) == {"input": ((1, 3, 8, 8),) * 3}
    static = graph_inputs(load_onnx(conv_model(tmp_path / "s.onnx", batch=2)))
    assert profile_shapes(static, None) == {}
    assert profile_shapes(static, (2, 2, 2)) == {}
    with pytest.raises(UsageError, match="fixed batch of 2"):
        profile_shapes(static, (1, 2, 4))


# --- the timing cache: what the binding returns, handled (python/src/infer/pyCore.cpp) -----------

class _TimingConfig:
    """Answers as IBuilderConfig's binding does: ``create_timing_cache`` never raises and returns
    None where TensorRT gives a null cache; ``set_timing_cache`` returns a bool."""

    def __init__(self, created, accepted=True):
        self.created, self.accepted, self.seen = created, accepted, []

    def create_timing_cache(self, data):
        self.seen.append(bytes(data))
        return self.created

    def set_timing_cache(self, cache, ignore_mismatch):
        assert ignore_mismatch is False
        return self.accepted


def test_timing_cache_none_from_the_binding_is_one_line(tmp_path):
    from se_deploy.engines.tensorrt.builder import _attach_timing_cache
    from se_deploy.errors import EngineError

    bad = tmp_path / "t.cache"
    bad.write_bytes(b"not a timing cache")
    config = _TimingConfig(created=None)
    with pytest.raises(EngineError, match=r"timing cache .*t\.cache is corrupt .*delete it to start a new one"):
        _attach_timing_cache(config, str(bad))
    assert config.seen == [b"not a timing cache"] and bad.read_bytes() == b"not a timing cache"  # left as it was
    with pytest.raises(EngineError, match="does not match this TensorRT/GPU"):
        _attach_timing_cache(_TimingConfig(created=object(), accepted=False), str(bad))
    fresh = _TimingConfig(created=object())
    _attach_timing_cache(fresh, str(tmp_path / "new.cache"))  # no file yet: an empty cache, b""
    assert fresh.seen == [b""]
