"""What the TensorRT runner does before it needs a GPU (the GPU path is in test_trt_gpu.py)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from se_deploy.runtime.tensorrt.runner import TrtConfig, TrtRunner
from se_deploy.errors import EngineError, InputError, MissingDependencyError, UsageError


def test_missing_plan_is_one_clear_error(tmp_path):
    with pytest.raises(InputError, match="TensorRT plan not found"):
        with TrtRunner(tmp_path / "nope.plan"):
            pass


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_without_tensorrt_says_how_to_install(tmp_path):
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"\x00" * 16)
    runner = TrtRunner(plan, TrtConfig(cuda_api="cuda-python"))
    with pytest.raises(MissingDependencyError) as e:
        runner.__enter__()
    msg = str(e.value)
    assert msg.startswith("tensorrt is not installed (needed for running TensorRT engines)") and "\n" not in msg
    assert not runner._active


def test_used_outside_its_context_is_refused(tmp_path):
    runner = TrtRunner(tmp_path / "m.plan")
    with pytest.raises(EngineError, match="outside its context"):
        runner.infer({"input": np.zeros((1, 3, 8, 8), np.float32)})
    assert runner.describe()["backend"] == "tensorrt"


# --- dtype mapping: what trt.nptype cannot map --------------------------------------------------

from se_deploy.runtime.tensorrt.dtypes import numpy_dtype, type_name  # noqa: E402


@pytest.mark.parametrize("trt_type, expected", [("FLOAT", "float32"), ("HALF", "float16"), ("INT8", "int8"),
                                                ("INT32", "int32"), ("INT64", "int64"), ("BOOL", "bool"),
                                                ("UINT8", "uint8"), ("BF16", "bfloat16"), ("FP8", "float8_e4m3fn")])
def test_io_types_numpy_can_hold(trt_type, expected):
    dt = numpy_dtype(trt_type, "x")
    assert dt.name == expected


def test_bf16_and_fp8_hold_the_values_tensorrt_means():
    import ml_dtypes

    # BF16 is the top half of an FP32; TensorRT's FP8 is E4M3 with bias 7 and no infinity (max 448)
    bf = np.array([1.0, -2.5, 3.140625], dtype=numpy_dtype("BF16", "x"))
    assert bf.view(np.uint16).tolist() == [0x3F80, 0xC020, 0x4049]
    f8 = np.array([448.0, 1.0, -0.5], dtype=numpy_dtype("FP8", "x"))
    assert f8.view(np.uint8).tolist() == [0x7E, 0x38, 0xB0]
    assert float(ml_dtypes.finfo(f8.dtype).max) == 448.0


@pytest.mark.parametrize("trt_type, why", [("INT4", "two 4-bit integers packed per byte"),
                                           ("FP4", "two 4-bit floats packed per byte"),
                                           ("E8M0", "exponent-only block-scale"), ("FP6", "a type se-deploy")])
def test_io_types_numpy_cannot_hold_are_one_line(trt_type, why):
    with pytest.raises(EngineError) as e:
        numpy_dtype(trt_type, "logits")
    msg = str(e.value)
    assert msg.startswith(f"I/O tensor 'logits' is {trt_type} (") and why in msg and "\n" not in msg


def test_type_name_reads_pybind11_enums_by_name_or_text():
    class Member:  # a pybind11 enum member has .name; its str() is "DataType.BF16"
        name = "BF16"

    assert type_name(Member()) == "BF16"
    assert type_name("DataType.HALF") == "HALF"


# --- supported TensorRT versions ------------------------------------------------------------------

from se_deploy.runtime.tensorrt._trt import unsupported_version  # noqa: E402


@pytest.mark.parametrize("version", ["8.6.2.3", "8.6.1", "10.3.0.30", "10.13.3.9", "11.1.0"])
def test_supported_versions(version):
    assert unsupported_version(version) is None


@pytest.mark.parametrize("version, text", [("8.5.2.2", "older than 8.6, the oldest se-deploy supports (JetPack 6.0 "
                                                       "brings TensorRT 8.6.2"),
                                           ("7.1.3", "older than 8.6"),
                                           ("9.2.0", "not supported: se-deploy builds and runs with TensorRT 8.6")])
def test_unsupported_versions_are_one_line(version, text):
    msg = unsupported_version(version)
    assert text in msg and msg.startswith(f"TensorRT {version} ") and "\n" not in msg


# --- DLA plans -------------------------------------------------------------------------------------

from se_deploy.runtime.tensorrt.runner import plan_dla_core  # noqa: E402


def test_dla_core_comes_from_the_plan_sidecar():
    assert plan_dla_core({"options": {"dla_core": 1}}) == 1
    for meta in (None, {}, {"options": {}}, {"options": {"dla_core": None}}, {"options": {"dla_core": True}},
                 {"options": {"dla_core": -1}}):
        assert plan_dla_core(meta) is None
    with pytest.raises(UsageError, match="dla_core must be >= 0"):
        TrtConfig(dla_core=-1)
