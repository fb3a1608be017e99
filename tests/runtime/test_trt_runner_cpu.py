"""What the TensorRT runner does before it needs a GPU (the GPU path is in test_trt_gpu.py)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from se_deploy.runtime.tensorrt.runner import TrtConfig, TrtRunner
from se_deploy.errors import EngineError, InputError, MissingDependencyError


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
