"""Backend registry: what is installed here, and runners created by name."""

from __future__ import annotations

import numpy as np
import pytest

from se_deploy.bench.suite import runner_options
from se_deploy.runtime.base import Capabilities, Runner
from se_deploy.runtime.onnxruntime import OrtRunner
from se_deploy.runtime.registry import (BackendInfo, backend_names, capabilities, create_runner, install_hint,
                                        is_jetson, list_backends)
from se_deploy.runtime.torch import TorchRunner
from se_deploy.errors import MissingDependencyError, UsageError
from tests.runtime.test_onnxruntime_runner import export_tiny, tiny_se_net


def test_list_backends_reports_this_machine():
    import onnxruntime
    import torch

    infos = {b.name: b for b in list_backends()}
    assert set(infos) == {"onnxruntime", "openvino", "tensorrt", "torch"} == set(backend_names())
    ort = infos["onnxruntime"]
    assert ort.available and ort.version == onnxruntime.__version__
    assert "CPUExecutionProvider" in ort.details["providers"]
    assert infos["torch"].available and infos["torch"].version == torch.__version__
    for b in infos.values():
        assert isinstance(b, BackendInfo)
        d = b.to_dict()
        assert set(d) == {"name", "available", "version", "reason", "install", "details"}
        # Unavailable backends always say why and what to install.
        assert b.available or (b.reason and b.install)


def test_tensorrt_is_reported_missing_here_with_the_install_command():
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    (trt,) = [b for b in list_backends(jetson=False) if b.name == "tensorrt"]
    assert not trt.available and "not importable" in trt.reason
    assert trt.install.startswith("pip install tensorrt")
    (trt_j,) = [b for b in list_backends(jetson=True) if b.name == "tensorrt"]
    assert "sudo apt install python3-libnvinfer" in trt_j.install


def test_install_hints_differ_by_platform():
    assert "pip install cuda-python" in install_hint("cuda-api", jetson=False)
    assert "pip install pycuda" in install_hint("cuda-api", jetson=True)
    assert "'cuda-python==12.*' on JetPack 6" in install_hint("cuda-api", jetson=True)  # 13.x needs a CUDA 13 driver
    assert install_hint("tensorrt", jetson=False) != install_hint("tensorrt", jetson=True)


def test_is_jetson_from_files():
    assert is_jetson(lambda p: "NVIDIA Jetson Orin Nano\x00" if p == "/proc/device-tree/model" else None)
    assert is_jetson(lambda p: "# R35 (release), REVISION: 5.0" if p == "/etc/nv_tegra_release" else None)
    assert not is_jetson(lambda p: None)


def test_create_runner_onnxruntime_and_torch_agree(tmp_path):
    model = tiny_se_net(1)
    path = export_tiny(model, tmp_path / "m.onnx")
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    ort_r = create_runner("onnxruntime", path, threads=1, graph_optimization="extended")
    torch_r = create_runner("torch", model, input_shape="1x3x32x32", threads=1)
    assert isinstance(ort_r, OrtRunner) and isinstance(torch_r, TorchRunner)
    assert isinstance(ort_r, Runner) and isinstance(torch_r, Runner)
    assert ort_r.config.providers is None  # by name: best installed providers ("auto")
    with ort_r, torch_r:
        a = ort_r.infer({"input": x})["output"]
        b = torch_r.infer({"input": x})["output"]
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_create_runner_torch_by_zoo_name_passes_model_kwargs():
    with create_runner("torch", "se_resnet18", input_shape=(1, 3, 32, 32), num_classes=7) as r:
        assert r.outputs[0].shape == ("batch", 7)


def test_create_runner_refuses_unknown_backends_and_options(tmp_path):
    with pytest.raises(UsageError, match="unknown backend 'ncnn'; choose one of onnxruntime, openvino, tensorrt, torch"):
        create_runner("ncnn", "m.onnx")
    with pytest.raises(UsageError, match=r"unknown onnxruntime option\(s\) \['batch_size'\]; allowed: .*threads"):
        create_runner("onnxruntime", "m.onnx", batch_size=4)
    with pytest.raises(UsageError, match="unknown torch option"):
        create_runner("torch", "se_resnet18", providers="cpu")
    with pytest.raises(UsageError, match="graph optimization level"):
        create_runner("onnxruntime", "m.onnx", graph_optimization="O3")


def test_create_runner_tensorrt_without_tensorrt_fails_with_one_line(tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"\0" * 16)
    # Host threads mean nothing to a GPU engine: its capabilities say so, and bench does not pass them.
    assert capabilities("tensorrt") == Capabilities(threads=False, spinning=False, profiling=False)
    assert runner_options("tensorrt", threads=2) == {}
    assert runner_options("onnxruntime", threads=2) == {"threads": 2, "allow_spinning": False}
    with pytest.raises(MissingDependencyError) as e:
        with create_runner("tensorrt", str(plan), **runner_options("tensorrt", threads=2)):
            pass
    assert "\n" not in str(e.value) and "tensorrt" in str(e.value)
    with pytest.raises(UsageError, match=r"unknown tensorrt option\(s\) \['workspace'\]; allowed: .*cuda_api"):
        create_runner("tensorrt", str(plan), workspace=64)
