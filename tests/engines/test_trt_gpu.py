"""TensorRT engines for se_resnet18 at 64x64, built and run on the GPU, compared with onnxruntime.

Marked ``gpu``: tests/conftest.py skips them without TensorRT and an NVIDIA GPU. Written to
run as they are on a Jetson (JetPack 6: TensorRT 10.3; JetPack 7: 10.13 or 11.x) with
cuda-python or pycuda installed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from se_deploy.cli import app
from se_deploy.runtime.onnxruntime import run_onnx
from se_deploy.numerics import compare_arrays

pytestmark = pytest.mark.gpu
runner = CliRunner()
BATCH = 8


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    from se_deploy.export.torch_export import export_model
    from se_deploy.models import create_model

    d = tmp_path_factory.mktemp("trt_gpu")
    model = create_model("se_resnet18", num_classes=10)
    export_model(model, d / "se_resnet18.onnx", input_shape=(1, 3, 64, 64), dynamic_batch=True)
    rng = np.random.default_rng(0)
    np.savez(d / "calib.npz", input=rng.standard_normal((128, 3, 64, 64)).astype(np.float32))
    return d


def _trt_major() -> int:
    import tensorrt as trt

    return int(trt.__version__.split(".")[0])


def _build(workdir, name, *flags):
    plan = workdir / f"{name}.plan"
    r = runner.invoke(app, ["build-engine", str(workdir / "se_resnet18.onnx"), "-o", str(plan),
                            "--batch", f"1:{BATCH}:{BATCH}", *flags])
    assert r.exit_code == 0, r.output
    return plan, json.loads((workdir / f"{name}.plan.json").read_text())


def _compare(workdir, plan, *, cuda_graph=False):
    from se_deploy.runtime.tensorrt.runner import TrtConfig, TrtRunner

    x = np.random.default_rng(1).standard_normal((BATCH, 3, 64, 64)).astype(np.float32)
    ref = run_onnx(str(workdir / "se_resnet18.onnx"), {"input": x})
    with TrtRunner(plan, TrtConfig(cuda_graph=cuda_graph)) as r:
        assert [s.name for s in r.inputs] == ["input"]
        got = r.infer({"input": x})
        got_b1 = r.infer({"input": x[:1]})  # another shape inside the profile
        t = got_b1.timing
    name = next(iter(ref))
    assert got[name].shape == ref[name].shape
    np.testing.assert_allclose(got_b1[name], got[name][:1], rtol=1e-2, atol=1e-2)
    assert t.h2d_ms is not None and t.d2h_ms is not None and t.compute_ms > 0
    return compare_arrays(ref[name], got[name])


def test_fp16_engine_matches_onnxruntime(workdir):
    plan, meta = _build(workdir, "fp16", "--fp16")
    assert meta["precision"]["requested"] == ["fp16"]
    assert meta["layers"]["precision_counts"].get("fp16", 0) > 0
    cmp = _compare(workdir, plan)
    print("fp16 vs onnxruntime:", cmp)
    assert cmp.top1_agreement >= 0.875 and cmp.rel_max_abs < 0.05 and cmp.cosine > 0.999


def test_int8_qdq_engine_matches_onnxruntime(workdir):
    plan, meta = _build(workdir, "int8", "--int8", "--calib-data", str(workdir / "calib.npz"))
    assert meta["precision"]["prepare"] == ["quantize_int8"] and meta["precision"]["strongly_typed"]
    assert meta["layers"]["precision_counts"].get("int8", 0) > 0
    cmp = _compare(workdir, plan)
    print("int8 (Q/DQ) vs onnxruntime fp32:", cmp)
    assert cmp.top1_agreement >= 0.75 and cmp.cosine > 0.98


def test_int8_calibrator_engine_on_tensorrt10(workdir):
    if _trt_major() != 10:
        pytest.skip("implicit INT8 calibration exists only in TensorRT 10")
    plan, meta = _build(workdir, "int8cal", "--int8", "--calibrator", "entropy", "--calib-data",
                        str(workdir / "calib.npz"), "--calib-batch-size", "8")
    cache = workdir / "int8cal.calib.cache"
    assert cache.read_text().startswith("TRT-10") and "EntropyCalibration2" in cache.read_text().splitlines()[0]
    assert meta["precision"]["calibrator"] == "entropy"
    cmp = _compare(workdir, plan)
    print("int8 (entropy calibrator) vs onnxruntime fp32:", cmp)
    assert cmp.top1_agreement >= 0.75 and cmp.cosine > 0.98


def test_cuda_graph_replay_gives_the_same_outputs(workdir):
    from se_deploy.runtime.tensorrt.cuda import get_cuda_api

    if get_cuda_api().name != "cuda-python":
        pytest.skip("CUDA-graph replay uses cuda-python")
    plan = workdir / "fp16.plan"
    if not plan.exists():
        plan, _ = _build(workdir, "fp16", "--fp16")
    plain = _compare(workdir, plan)
    graphed = _compare(workdir, plan, cuda_graph=True)
    assert graphed.max_abs == pytest.approx(plain.max_abs, rel=1e-3, abs=1e-4)


def test_plan_from_another_tensorrt_is_refused(workdir):
    from se_deploy.runtime.tensorrt.runner import TrtRunner
    from se_deploy.errors import EngineError

    plan = workdir / "fp16.plan"
    if not plan.exists():
        plan, _ = _build(workdir, "fp16", "--fp16")
    sidecar = workdir / "fp16.plan.json"
    meta = json.loads(sidecar.read_text())
    meta["tensorrt_version"] = "9.9.9"
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(EngineError, match="rebuild it on this device"):
        with TrtRunner(plan):
            pass
