"""Eager PyTorch runner: the reference the other backends are checked against."""

from __future__ import annotations

import numpy as np
import pytest

from se_deploy.runtime.onnxruntime import OrtConfig, OrtRunner
from se_deploy.runtime.torch import TorchConfig, TorchRunner
from se_deploy.errors import EngineError, InputError, ModelError, UsageError
from se_deploy.numerics import compare_arrays
from tests.runtime.test_onnxruntime_runner import export_tiny, tiny_se_net


def _x(batch, seed=0, hw=32):
    return np.random.default_rng(seed).standard_normal((batch, 3, hw, hw)).astype(np.float32)


def test_matches_the_module_itself():
    import torch

    model = tiny_se_net(2)
    x = _x(3)
    with TorchRunner(model, TorchConfig(input_shape=(1, 3, 32, 32))) as r:
        res = r.infer({"input": x})
        got = res["output"]
        assert r.inputs[0].shape == ("batch", 3, 32, 32) and r.outputs[0].shape == ("batch", 10)
        assert res.timing.total_ms > 0 and res.timing.h2d_ms is None
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got, ref)


def test_parity_with_onnxruntime(tmp_path):
    model = tiny_se_net(4)
    path = export_tiny(model, tmp_path / "m.onnx")
    with TorchRunner(model, TorchConfig(input_shape=(1, 3, 32, 32))) as t, OrtRunner(path, OrtConfig(threads=1)) as o:
        for batch in (1, 2):
            x = _x(batch, seed=batch)
            c = compare_arrays(t.infer({"input": x})["output"], o.infer({"input": x})["output"])
            assert c.rel_max_abs < 1e-5 and c.top1_agreement in (None, 1.0), c


def test_bfloat16_runs_and_returns_float32_close_to_fp32():
    model = tiny_se_net(5)
    x = _x(2)
    with TorchRunner(model, TorchConfig(input_shape=(1, 3, 32, 32))) as fp32:
        ref = fp32.infer({"input": x})["output"]
    with TorchRunner(tiny_se_net(5), TorchConfig(input_shape=(1, 3, 32, 32), dtype="bfloat16")) as bf16:
        got = bf16.infer({"input": x})["output"]
    assert got.dtype == np.float32
    c = compare_arrays(ref, got)
    assert 0 < c.max_abs and c.cosine > 0.99, c


def test_threads_are_set_and_restored():
    import torch

    before = torch.get_num_threads()
    with TorchRunner(tiny_se_net(), TorchConfig(input_shape=(1, 3, 32, 32), threads=1)) as r:
        assert torch.get_num_threads() == 1 and r.describe()["threads"] == 1
    assert torch.get_num_threads() == before


def test_fixed_batch_and_bad_feeds():
    with TorchRunner(tiny_se_net(), TorchConfig(input_shape=(2, 3, 32, 32), dynamic_batch=False)) as r:
        r.infer({"input": _x(2)})
        with pytest.raises(InputError, match="shape"):
            r.infer({"input": _x(1)})
        with pytest.raises(InputError, match="dtype float64"):
            r.infer({"input": _x(2).astype(np.float64)})
        with pytest.raises(InputError, match="missing"):
            r.infer({"x": _x(2)})


def test_model_that_cannot_run_the_shape_is_refused_on_activate():
    import torch

    linear = torch.nn.Linear(5, 2)
    with pytest.raises(EngineError, match=r"does not run on input shape \(1, 3, 32, 32\)"):
        with TorchRunner(linear, TorchConfig(input_shape=(1, 3, 32, 32))):
            pass


@pytest.mark.parametrize("kwargs, message", [
    ({"input_shape": (1, 3, 0, 32)}, "input shape must be positive"),
    ({"dtype": "int8"}, "torch dtype 'int8'"),
    ({"device": "tpu"}, "torch device 'tpu'"),
    ({"threads": -2}, "threads must be"),
])
def test_config_validation(kwargs, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TorchConfig(**kwargs)


def test_bad_model_sources():
    with pytest.raises(UsageError, match="nn.Module or a zoo model name"):
        with TorchRunner(42):
            pass
    with pytest.raises(ModelError, match="unknown model"):
        with TorchRunner("se_resnet9000"):
            pass
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    if not has_cuda:
        with pytest.raises(EngineError, match="sees no CUDA GPU"):
            with TorchRunner(tiny_se_net(), TorchConfig(input_shape=(1, 3, 32, 32), device="cuda")):
                pass
