"""TensorRT engines for se_resnet18 at 64x64, built and run on the GPU, compared with onnxruntime.

Marked ``gpu``: tests/conftest.py skips them without TensorRT and a CUDA device (it says what it
checked). Written to run as they are on a Jetson (JetPack 6.0: TensorRT 8.6.2; 6.1/6.2: 10.3;
JetPack 7: 10.13 or 11.x) with cuda-python or pycuda installed, set up by scripts/setup.sh.
The second half has one case per fix of the TensorRT layer's GPU side (data-dependent outputs,
BF16 I/O, calibrator errors and caches, timing cache, CUDA graphs across shape changes, CUDA
resources, DLA plans, trtexec as the builder and timer).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from se_deploy.cli import app
from se_deploy.runtime.onnxruntime import run_onnx
from se_deploy.numerics import compare_arrays
from tests.engines.trt_fixtures import bf16_io_model, conv_model, nonzero_model

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


# --- one case per GPU-side fix ---------------------------------------------------------------------

def _runner(plan, **kw):
    from se_deploy.runtime.tensorrt.runner import TrtConfig, TrtRunner

    return TrtRunner(plan, TrtConfig(**kw))


def _build_small(tmp_path, onnx, name="m", *flags):
    plan = tmp_path / f"{name}.plan"
    r = runner.invoke(app, ["build-engine", str(onnx), "-o", str(plan), *flags])
    assert r.exit_code == 0, r.output
    return plan


def test_data_dependent_output_shapes_come_from_the_output_allocator(tmp_path):
    plan = _build_small(tmp_path, nonzero_model(tmp_path / "nz.onnx"), "nz")
    rng = np.random.default_rng(0)
    with _runner(plan) as r:
        assert r.describe()["data_dependent_outputs"] == ["output"]
        for _ in range(3):  # the count changes from call to call, and so does the allocation
            x = rng.standard_normal((4, 6)).astype(np.float32)
            got = r.infer({"input": x})["output"]
            want = np.array(np.nonzero(np.maximum(x, 0)))
            assert got.shape == want.shape and np.array_equal(got.astype(np.int64), want)
    with pytest.raises(Exception, match="data-dependent shapes"):
        with _runner(plan, cuda_graph=True):
            pass


def test_bf16_io_tensors_map_to_ml_dtypes(tmp_path):
    import ml_dtypes

    if _trt_major() < 10:
        pytest.skip("TensorRT 8.6 has no BF16")
    plan = _build_small(tmp_path, bf16_io_model(tmp_path / "bf.onnx"), "bf")
    x = np.random.default_rng(0).standard_normal((2, 8)).astype(ml_dtypes.bfloat16)
    with _runner(plan) as r:
        assert [s.dtype for s in r.inputs + r.outputs] == ["bfloat16", "bfloat16"]
        got = r.infer({"input": x})["output"]
    assert got.dtype == np.dtype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(got.astype(np.float32), np.maximum(x.astype(np.float32), 0))


def test_calibrator_cache_tensorrt_writes_is_read_back_and_names_this_version(workdir):
    if _trt_major() >= 11:
        pytest.skip("implicit INT8 calibration exists only up to TensorRT 10")
    import tensorrt as trt

    from se_deploy.calibration.trt_cache import trt_version_digits

    plan, _ = _build(workdir, "int8cache", "--int8", "--calibrator", "entropy", "--calib-data",
                     str(workdir / "calib.npz"), "--calib-batch-size", "8")
    cache = workdir / "int8cache.calib.cache"
    header = cache.read_text().splitlines()[0]
    digits = trt_version_digits(".".join(trt.__version__.split(".")[:3]))
    assert header == f"TRT-{digits}-EntropyCalibration2"  # written verbatim by TensorRT, unpadded hex and all
    before = cache.read_bytes()
    _build(workdir, "int8cache", "--int8", "--calibrator", "entropy", "--calib-data", str(workdir / "calib.npz"),
           "--calib-batch-size", "8")
    assert cache.read_bytes() == before  # read back, no recalibration


def test_an_error_inside_the_calibrator_is_the_builds_error(workdir, monkeypatch):
    if _trt_major() >= 11:
        pytest.skip("implicit INT8 calibration exists only up to TensorRT 10")
    from se_deploy.engines.tensorrt import calibrator

    def broken(self, names):
        raise RuntimeError("calibration source went away")

    monkeypatch.setattr(calibrator.CalibrationFeeder, "next_pointers", broken)
    r = runner.invoke(app, ["build-engine", str(workdir / "se_resnet18.onnx"), "-o", str(workdir / "bad.plan"),
                            "--int8", "--calibrator", "entropy", "--calib-data", str(workdir / "calib.npz")])
    assert r.exit_code != 0
    assert "the INT8 calibrator's get_batch() failed: RuntimeError: calibration source went away" in r.stderr
    assert not (workdir / "bad.plan").exists()


def test_corrupt_timing_cache_is_one_line_or_replaced_by_a_valid_one(tmp_path):
    model = conv_model(tmp_path / "m.onnx")
    cache = tmp_path / "t.cache"
    cache.write_bytes(b"not a timing cache" * 64)
    r = runner.invoke(app, ["build-engine", str(model), "-o", str(tmp_path / "m.plan"), "--timing-cache", str(cache)])
    if r.exit_code == 0:  # TensorRT logged the bad cache and started an empty one: it must now be a real cache
        assert cache.read_bytes() != b"not a timing cache" * 64
        again = runner.invoke(app, ["build-engine", str(model), "-o", str(tmp_path / "m2.plan"), "--timing-cache",
                                    str(cache)])
        assert again.exit_code == 0, again.output
    else:
        assert "timing cache" in r.stderr and "Traceback" not in r.output


def test_cuda_graph_replay_after_another_shape_ran(workdir):
    from se_deploy.runtime.tensorrt.cuda import get_cuda_api

    if get_cuda_api().name != "cuda-python":
        pytest.skip("CUDA-graph replay uses cuda-python")
    plan = workdir / "fp16.plan"
    if not plan.exists():
        plan, _ = _build(workdir, "fp16", "--fp16")
    x = np.random.default_rng(2).standard_normal((BATCH, 3, 64, 64)).astype(np.float32)
    with _runner(plan) as plain:
        want8 = dict(plain.infer({"input": x}))
        want1 = dict(plain.infer({"input": x[:1]}))
    with _runner(plan, cuda_graph=True) as g:
        a = dict(g.infer({"input": x}))  # capture at batch 8
        b = dict(g.infer({"input": x[:1]}))  # capture at batch 1
        c = dict(g.infer({"input": x}))  # replay the batch-8 graph after the context ran batch 1
        assert len(g._graphs) == 2
    for got, want in ((a, want8), (b, want1), (c, want8)):
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-3, atol=1e-3)


def test_cuda_resources_are_released_and_host_buffers_are_pinned(workdir):
    plan = workdir / "fp16.plan"
    if not plan.exists():
        plan, _ = _build(workdir, "fp16", "--fp16")
    r = _runner(plan)
    with r:
        cuda = r._cuda
        if cuda.name == "cuda-python":
            rt = cuda.rt
            for host in r._host.values():  # page-locked: the async copies are asynchronous
                err, attrs = rt.cudaPointerGetAttributes(host.ctypes.data)
                assert err == rt.cudaError_t.cudaSuccess and attrs.type == rt.cudaMemoryType.cudaMemoryTypeHost
        r.infer({"input": np.zeros((1, 3, 64, 64), np.float32)})
    assert r._cuda is None and r._stream is None and r._events == [] and r._host == {}
    if cuda.name == "cuda-python":
        assert cuda._streams == {} and cuda._events == {} and cuda._pinned == {} and cuda._graphs == {}
    else:
        assert cuda._ctx is None and cuda._pinned == {}  # popped and detached
    for _ in range(10):  # no leak that would stop a long benchmark
        with _runner(plan) as again:
            again.infer({"input": np.zeros((1, 3, 64, 64), np.float32)})


def test_dla_plan_is_loaded_on_its_core(workdir):
    import tensorrt as trt

    if trt.Runtime(trt.Logger(trt.Logger.ERROR)).num_DLA_cores == 0:
        pytest.skip("this device has no DLA cores")
    plan, meta = _build(workdir, "dla", "--fp16", "--dla-core", "0", "--gpu-fallback")
    assert meta["options"]["dla_core"] == 0
    with _runner(plan) as r:
        assert r.describe()["dla_core"] == 0
        out = r.infer({"input": np.zeros((1, 3, 64, 64), np.float32)})
    assert all(np.isfinite(v).all() for v in out.values())


def test_trtexec_builds_and_times_the_same_engine(workdir, tmp_path):
    import tensorrt as trt

    from se_deploy.runtime.tensorrt.trtexec_tool import find_trtexec

    exe = find_trtexec()
    if exe is None:
        pytest.skip("no trtexec on PATH or in /usr/src/tensorrt/bin")
    plan = tmp_path / "tx.plan"
    r = runner.invoke(app, ["build-engine", str(workdir / "se_resnet18.onnx"), "-o", str(plan), "--fp16",
                            "--batch", f"1:{BATCH}:{BATCH}", "--trtexec", exe])
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "tx.plan.json").read_text())
    assert meta["options"]["builder"] == "trtexec"
    assert trt.__version__.startswith(meta["tensorrt_version"])
    cmp = _compare(workdir, plan)  # the Python runner loads the trtexec-built plan (same TensorRT, same GPU)
    assert cmp.top1_agreement >= 0.875 and cmp.cosine > 0.999
    out = tmp_path / "r.json"
    b = runner.invoke(app, ["bench", str(plan), "--backend", "trtexec", "--baseline", "none", "--batch", f"1,{BATCH}",
                            "--min-duration-s", "1", "--warmup-s", "0.2", "-o", str(out)])
    assert b.exit_code == 0, b.output
    res = json.loads(out.read_text())
    assert {m["batch"] for m in res["measurements"]} == {1, BATCH}
    assert all(m["backend"] == "trtexec" and m["latency_ms"]["median"] > 0 for m in res["measurements"])
    assert all(m["h2d_ms"]["median"] > 0 for m in res["measurements"])  # copies included, on every version


def test_mixed_int8_fp16_build_runs_int8_and_fp16_layers(workdir):
    plan, meta = _build(workdir, "mixed", "--int8", "--fp16", "--calib-data", str(workdir / "calib.npz"))
    counts = meta["layers"]["precision_counts"]
    assert counts.get("int8", 0) > 0 and counts.get("fp16", 0) > 0
    assert meta["precision"]["high_precision"] == "fp16"
    if _trt_major() >= 10:
        assert meta["precision"]["strongly_typed"] and meta["precision"]["builder_flags"] == []
    cmp = _compare(workdir, plan)
    print("int8+fp16 (Q/DQ, FP16 high precision) vs onnxruntime fp32:", cmp)
    assert cmp.top1_agreement >= 0.75 and cmp.cosine > 0.98
