"""onnxruntime runner end to end: config validation, feed checks, optimized model, profiling, zoo models."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest

from se_deploy.runtime.onnxruntime import OrtConfig, OrtRunner, run_onnx
from se_deploy.errors import EngineError, InputError, UsageError


def tiny_se_net(seed: int = 0):
    """Conv -> SE block -> pool -> linear: small enough for unit tests, with a real SE block."""
    import torch
    from torch import nn

    class SE(nn.Module):
        def __init__(self, c: int, r: int = 4) -> None:
            super().__init__()
            self.fc1 = nn.Conv2d(c, c // r, 1)
            self.fc2 = nn.Conv2d(c // r, c, 1)

        def forward(self, x):
            s = x.mean((2, 3), keepdim=True)
            return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))

    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), SE(16),
                         nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, 10)).eval()


def export_tiny(model, path, shape=(1, 3, 32, 32), dynamic_batch=True) -> str:
    import torch

    axes = {"input": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None
    torch.onnx.export(model, (torch.zeros(shape),), str(path), input_names=["input"], output_names=["output"],
                      dynamic_axes=axes, opset_version=17, dynamo=False)
    return str(path)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    d = tmp_path_factory.mktemp("ort")
    return export_tiny(tiny_se_net(), d / "tiny.onnx")


def _x(batch=2, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, 3, 32, 32)).astype(np.float32)


def test_runs_and_reports_metadata_and_timing(tiny_onnx):
    with OrtRunner(tiny_onnx, OrtConfig(threads=1)) as r:
        (inp,), (out,) = r.inputs, r.outputs
        assert (inp.name, inp.dtype, inp.shape[1:]) == ("input", "float32", (3, 32, 32))
        assert out.shape[1:] == (10,)
        res = r.infer({"input": _x(2)})
        y = res["output"]
        assert y.shape == (2, 10) and np.isfinite(y).all()
        assert list(res) == ["output"] and res.outputs["output"] is y
        t = res.timing
        assert t.total_ms > 0 and t.compute_ms == t.total_ms and t.h2d_ms is None and t.d2h_ms is None
        assert r.describe()["providers"] == ["CPUExecutionProvider"]  # the reference provider by default


def test_optimization_levels_agree(tiny_onnx):
    x = _x(2, 1)
    ref = run_onnx(tiny_onnx, {"input": x}, OrtConfig(graph_optimization="disable"))["output"]
    for level in ("basic", "extended", "all"):
        got = run_onnx(tiny_onnx, {"input": x}, OrtConfig(graph_optimization=level, threads=1))["output"]
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_saves_the_optimized_model(tiny_onnx, tmp_path):
    out = tmp_path / "opt.onnx"
    with OrtRunner(tiny_onnx, OrtConfig(graph_optimization="extended", optimized_model_path=str(out))) as r:
        y = r.infer({"input": _x(1)})["output"]
    saved = onnx.load(str(out))
    original = onnx.load(tiny_onnx)
    # Extended optimisation fuses Conv+Relu: the saved graph is really the optimized one.
    assert "FusedConv" not in {n.op_type for n in original.graph.node}
    assert "FusedConv" in {n.op_type for n in saved.graph.node}
    np.testing.assert_allclose(run_onnx(str(out), {"input": _x(1)})["output"], y, rtol=1e-5, atol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == ["opt.onnx"]  # no temporary left behind


def test_profiling_writes_a_trace(tiny_onnx, tmp_path):
    with OrtRunner(tiny_onnx, OrtConfig(enable_profiling=True, profile_dir=str(tmp_path))) as r:
        r.infer({"input": _x(1)})
        path = r.end_profiling()
    assert os.path.dirname(path) == str(tmp_path)
    events = json.load(open(path))
    assert any(e.get("cat") == "Node" and e["name"].endswith("_kernel_time") for e in events)


def test_accepts_a_model_proto_and_bytes(tiny_onnx):
    proto = onnx.load(tiny_onnx)
    x = _x(1)
    a = run_onnx(proto, {"input": x})["output"]
    b = run_onnx(proto.SerializeToString(), {"input": x})["output"]
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("feed, message", [
    ({"images": None}, "missing ['input'], unexpected ['images']"),
    ({"input": np.zeros((1, 3, 32, 32), np.float64)}, "dtype float64, model expects float32"),
    ({"input": np.zeros((1, 3, 16, 32), np.float32)}, "shape (1, 3, 16, 32), model expects ('batch', 3, 32, 32)"),
    ({"input": np.zeros((3, 32, 32), np.float32)}, "rank 3"),
    ({"input": [[1.0]]}, "expected a numpy array, got list"),
])
def test_bad_feeds_raise_one_line_input_errors(tiny_onnx, feed, message):
    with OrtRunner(tiny_onnx) as r:
        with pytest.raises(InputError) as e:
            r.infer(feed)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_fixed_batch_refuses_other_batches(tmp_path):
    p = export_tiny(tiny_se_net(), tmp_path / "fixed.onnx", dynamic_batch=False)
    with OrtRunner(p) as r:
        r.infer({"input": _x(1)})
        with pytest.raises(InputError, match="shape"):
            r.infer({"input": _x(2)})


@pytest.mark.parametrize("kwargs, message", [
    ({"graph_optimization": "max"}, "not one of disable, basic, extended, all"),
    ({"threads": -1}, "threads must be"),
    ({"providers": "quantum"}, "unknown onnxruntime provider 'quantum'"),
    ({"profile_dir": "/no/such/dir"}, "profile directory does not exist"),
])
def test_config_is_validated_on_construction(kwargs, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        OrtConfig(**kwargs)


def test_provider_aliases():
    assert OrtConfig().providers == ("CPUExecutionProvider",)
    assert OrtConfig(providers="auto").providers is None
    assert OrtConfig(providers="cuda,cpu").providers == ("CUDAExecutionProvider", "CPUExecutionProvider")


def test_missing_provider_and_bad_files(tiny_onnx, tmp_path):
    with pytest.raises(EngineError, match="available providers are"):
        with OrtRunner(tiny_onnx, OrtConfig(providers="cuda")):
            pass
    with pytest.raises(InputError, match="not found"):
        with OrtRunner(tmp_path / "missing.onnx"):
            pass
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(EngineError, match="cannot load the model") as e:
        with OrtRunner(junk):
            pass
    assert "\n" not in str(e.value)
    with pytest.raises(EngineError, match="outside its context"):
        OrtRunner(tiny_onnx).infer({"input": _x(1)})


@pytest.mark.parametrize("name", ["se_resnet18", "se_mobilenet_v2"])
def test_zoo_models_end_to_end_match_pytorch(name, tmp_path):
    """A zoo model through se-deploy's export (simplified, SE passes applied) runs under
    onnxruntime, agrees with its sidecar's I/O, and matches eager PyTorch at another batch size."""
    from se_deploy._util import read_sidecar
    from se_deploy.runtime.torch import TorchConfig, TorchRunner
    from se_deploy.export.torch_export import export_model
    from se_deploy.models import create_model
    from se_deploy.numerics import compare_arrays

    model = create_model(name, num_classes=10)
    path = tmp_path / f"{name}.onnx"
    export_model(model, path, input_shape=(1, 3, 64, 64), exporter="legacy", dynamic_batch=True)
    side = read_sidecar(path)
    x = np.random.default_rng(3).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with OrtRunner(str(path), OrtConfig(threads=2)) as ort_r, \
            TorchRunner(model, TorchConfig(input_shape=(1, 3, 64, 64), input_name=side["inputs"][0]["name"],
                                           output_name=side["outputs"][0]["name"])) as torch_r:
        assert [s.name for s in ort_r.inputs] == [i["name"] for i in side["inputs"]]
        assert [s.name for s in ort_r.outputs] == [o["name"] for o in side["outputs"]]
        got = ort_r.infer({ort_r.inputs[0].name: x})
        ref = torch_r.infer({torch_r.inputs[0].name: x})
    assert list(got) == list(ref)
    (out_name,) = got
    c = compare_arrays(ref[out_name], got[out_name])
    assert got[out_name].shape == (2, 10)
    assert c.rel_max_abs < 1e-4 and c.top1_agreement == 1.0, c


def test_spinning_can_be_turned_off_for_interleaved_timing(tiny_onnx):
    with OrtRunner(tiny_onnx, OrtConfig(threads=1, allow_spinning=False)) as r:
        opts = r.session.get_session_options()
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        assert opts.intra_op_num_threads == 1
        r.infer({"input": _x(1)})
