"""BuildConfig validation and the precision matrix for TensorRT 10 and 11 (no TensorRT needed)."""

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
    ({"trt_version": 9}, "--trt-version must be 10 or 11"),
    ({"trt_version": 11, "int8": True, "calibrator": "minmax", "calib_data": "c"}, "TensorRT 11 has no INT8 calib"),
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
    return plan.prepare, plan.strongly_typed, plan.builder_flags, plan.calibrator


@pytest.mark.parametrize("kw, onnx, row10, row11", [
    ({}, FP32, ((), False, (), None), ((), True, (), None)),
    ({}, QDQ, ((), True, (), None), ((), True, (), None)),
    ({"fp16": True}, FP32, ((), False, ("FP16",), None), (("convert_fp16",), True, (), None)),
    ({"fp16": True}, F16, ((), True, (), None), ((), True, (), None)),
    ({"int8": True}, QDQ, ((), True, (), None), ((), True, (), None)),
    ({"int8": True, "calib_data": "c.npz"}, FP32, (("quantize_int8",), True, (), None),
     (("quantize_int8",), True, (), None)),
    ({"int8": True, "fp16": True}, QDQ, ((), False, ("INT8", "FP16"), None), "refused"),
    # the prepared Q/DQ ONNX has FP16 float layers: --fp16 adds nothing, both versions build it strongly typed
    ({"int8": True, "fp16": True, "calib_data": "c.npz"}, FP32, (("quantize_int8",), True, (), None),
     (("quantize_int8",), True, (), None)),
    ({"int8": True, "fp16": True}, OnnxPrecision(qdq_nodes=2, fp16_tensors=2), ((), True, (), None),
     ((), True, (), None)),
    ({"int8": True, "calib_data": "c", "calibrator": "entropy"}, FP32, ((), False, ("INT8",), "entropy"), "refused"),
    ({"int8": True, "fp16": True, "calib_data": "c", "calibrator": "minmax"}, FP32,
     ((), False, ("INT8", "FP16"), "minmax"), "refused"),
])
def test_precision_matrix(kw, onnx, row10, row11):
    c = cfg(**kw)
    assert _row(plan_precision(c, 10, onnx)) == row10
    if row11 == "refused":
        with pytest.raises(UsageError, match="TensorRT 11"):
            plan_precision(c, 11, onnx)
    else:
        plan = plan_precision(c, 11, onnx)
        assert _row(plan) == row11
        assert plan.builder_flags == () and plan.calibrator is None  # 11.x never uses weak typing


@pytest.mark.parametrize("major", [10, 11])
def test_int8_without_calibration_or_qdq_is_refused(major):
    with pytest.raises(UsageError, match="--int8 needs calibration data"):
        plan_precision(cfg(int8=True), major, FP32)


@pytest.mark.parametrize("major", [10, 11])
def test_already_quantized_model_with_calibration_data_is_refused(major):
    with pytest.raises(UsageError, match="already has Q/DQ nodes"):
        plan_precision(cfg(int8=True, calib_data="c.npz"), major, QDQ)


def test_unsupported_major_is_refused():
    with pytest.raises(UsageError, match="TensorRT 8.x is not supported"):
        plan_precision(cfg(), 8, FP32)


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
