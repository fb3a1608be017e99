"""OpenVINO runner: precision chooser, profile parser on recorded rows, and the backend end to end.

The chooser and the parser are plain functions and run everywhere; the end-to-end tests
need OpenVINO and are skipped, with the install command as the reason, where it is missing.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from se_deploy.bench.profile import SE_BUCKET, aggregate
from se_deploy.errors import EngineError, InputError, MissingDependencyError, UsageError
from se_deploy.runtime.base import NodeProfile, NodeTime
from se_deploy.runtime.openvino import INSTALL, OvConfig, OvRunner, choose_precision, host_precision
from se_deploy.runtime.ov_profile import RuntimeOp, attribute, kernel_summary, mean_times

FIXTURES = Path(__file__).parent / "fixtures"
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
needs_openvino = pytest.mark.skipif(not HAS_OPENVINO, reason=f"openvino is not installed ({INSTALL})")


# --------------------------------------------------------------------------- precision chooser
# /proc/cpuinfo flags that matter, per machine.
THIS_VM = ("avx2 avx512f avx512bw avx512vl avx512_vnni avx_vnni avx512_bf16 avx512_fp16 amx_tile amx_bf16 "
           "amx_int8").split()  # Sapphire-Rapids-class VM: AMX exposed, no AMX-FP16
NO_AMX_XEON = "avx2 avx512f avx512bw avx512vl avx512_vnni avx512_bf16".split()  # the VM: AMX hidden
GRANITE_RAPIDS = THIS_VM + ["amx_fp16"]
ZEN4 = "avx2 avx512f avx512bw avx512_vnni avx512_bf16".split()
SKYLAKE = "avx2 avx512f avx512bw avx512vl".split()
JETSON_ORIN = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp".split()
RPI4 = "fp asimd evtstrm crc32 cpuid".split()


@pytest.mark.parametrize("flags, arch, want", [
    (THIS_VM, "x86_64", "bf16"),
    (NO_AMX_XEON, "x86_64", "f32"),
    (GRANITE_RAPIDS, "x86_64", "bf16"),
    (ZEN4, "x86_64", "f32"),
    (SKYLAKE, "x86_64", "f32"),
    (["avx512f", "avx512_fp16"], "x86_64", "f32"),  # fp16 vector units alone: f16 measured slower than f32
    (["amx_tile", "amx_fp16"], "x86_64", "f16"),
    (JETSON_ORIN, "aarch64", "f16"),
    (RPI4, "aarch64", "f32"),
    ([], "x86_64", "f32"),
    ([], "", "f32"),
])
def test_precision_chooser(flags, arch, want):
    choice = choose_precision(flags, arch)
    assert choice.precision == want and choice.reason


def test_precision_chooser_says_why_bf16_is_not_used_without_amx():
    assert "slower" in choose_precision(NO_AMX_XEON, "x86_64").reason
    assert choose_precision([f.upper() for f in THIS_VM], "x86_64").precision == "bf16"  # flags compare lowercased


def test_host_precision_reads_this_cpu():
    from se_deploy.envinfo import _read_file, parse_cpuinfo

    flags = parse_cpuinfo(_read_file("/proc/cpuinfo") or "")["raw_flags"]
    import platform

    assert host_precision() == choose_precision(flags, platform.machine())


@pytest.mark.parametrize("kwargs, match", [
    ({"precision": "int8"}, "precision 'int8' is not one of auto, default, f32, bf16, f16"),
    ({"performance_hint": "FAST"}, "performance hint 'FAST' is not one of LATENCY"),
    ({"threads": -1}, "threads must be an integer >= 0"),
    ({"num_streams": 1.5}, "num_streams must be an integer >= 0"),
    ({"batch": 0}, "batch must be an integer >= 1"),
    ({"device": " "}, "device must be a name"),
])
def test_config_refuses_bad_values(kwargs, match):
    with pytest.raises(UsageError, match=match):
        OvConfig(**kwargs)


def test_config_normalises_case():
    c = OvConfig(device="cpu", performance_hint="throughput", precision="F32")
    assert (c.device, c.performance_hint, c.precision) == ("CPU", "THROUGHPUT", "f32")


def test_unknown_option_is_refused_by_name():
    with pytest.raises(UsageError, match=r"unknown openvino option\(s\) \['providers'\]"):
        OvRunner.from_options("m.onnx", {"providers": "cpu"})


# --------------------------------------------------------------------------- profile parser, recorded rows
def _fixture(tag: str) -> dict:
    return json.loads((FIXTURES / f"openvino_profile_{tag}.json").read_text())


def _parse(d: dict) -> tuple[dict, dict, list, NodeProfile]:
    ops = {o["name"]: RuntimeOp.from_dict(o) for o in d["runtime_ops"]}
    times = mean_times(d["runs"])
    mapping, unattributed = attribute(times, ops, set(d["onnx_nodes"]))
    prof = NodeProfile(tuple(NodeTime(n, r["node_type"], r["us"], tuple(mapping[n]), r["exec_type"])
                             for n, r in times.items()), (1.0,))
    return times, mapping, unattributed, prof


@pytest.mark.parametrize("tag", ["fp32_f32", "fp32_auto", "int8cpu_auto"])
def test_recorded_rows_map_back_to_onnx_nodes(tag):
    d = _fixture(tag)
    times, mapping, unattributed, prof = _parse(d)
    executed = [r for r in d["runs"][0] if r["status"] == "EXECUTED"]
    assert len(times) == len(executed) > 40
    assert unattributed == []
    onnx_nodes = set(d["onnx_nodes"])
    assert all(mapping[n] and set(mapping[n]) <= onnx_nodes for n in times)
    # averaged over the recorded runs, not summed
    per_run = [sum(r["real_us"] for r in run if r["status"] == "EXECUTED") for run in d["runs"]]
    assert sum(r["us"] for r in times.values()) == pytest.approx(sum(per_run) / len(per_run))


@pytest.mark.parametrize("tag", ["fp32_f32", "fp32_auto", "int8cpu_auto"])
def test_recorded_rows_group_the_se_blocks(tag):
    """se_resnet18 has 8 SE blocks; in 5 of them (identity residual) OpenVINO fuses the SE scale Mul
    with the residual Add and ReLU into one Subgraph, which is shared work, not SE work."""
    d = _fixture(tag)
    _, mapping, _, prof = _parse(d)
    qdq = {n for n in d["onnx_nodes"] if n.endswith(("QuantizeLinear", "DequantizeLinear"))}
    agg = aggregate(prof, set(d["se_nodes"]), neutral=qdq)
    se = agg["se_blocks"]
    assert se["se_nodes_not_seen"] == []  # every SE node is run by some kernel
    assert SE_BUCKET in agg["by_op"] and se["ms"] > 0
    assert len(se["mixed_nodes"]) == 5
    for name in se["mixed_nodes"]:
        covers = set(mapping[name])
        assert any(n.endswith("/scale") or n.startswith("node_mul") for n in covers & set(d["se_nodes"]))
        assert covers - set(d["se_nodes"]) - qdq  # ...and the residual Add / ReLU
    # squeeze, both FCs (bias Add and activation fused) per block, the 3 scale Muls that stand alone,
    # and in bf16 the squeeze's f32 -> bf16 cast into the first FC
    casts = 8 if d["inference_precision"] == "bf16" and "int8" not in tag else 0
    assert se["count"] == 8 * 3 + 3 + casts


def test_frontend_and_plugin_names_are_resolved():
    d = _fixture("fp32_auto")
    assert d["inference_precision"] == "bf16"  # recorded on an AMX CPU with the auto hint
    times, mapping, _, _ = _parse(d)
    se = set(d["se_nodes"])
    fc1 = [n for n in times if n.endswith("/fc1/WithoutBiases") and times[n]["node_type"] == "Convolution"]
    assert len(fc1) == 8
    for n in fc1:  # a Conv with a bias, split by the ONNX frontend, and its activation fused in
        block = n[: -len("/fc1/WithoutBiases")]
        assert set(mapping[n]) == {f"{block}/fc1", f"{block}/act"}
    casts = [n for n in times if times[n]["node_type"] == "Reorder" and "_f32_bf16_" in n]
    assert casts and all(len(mapping[n]) == 1 and mapping[n][0] in se for n in casts)  # charged to the squeeze
    (first,) = [n for n in times if n.startswith("input_") and times[n]["node_type"] == "Reorder"]
    assert mapping[first] and all(m not in se for m in mapping[first])  # the input's reorder: the first conv


def test_int8_kernels_are_recognised():
    times = mean_times(_fixture("int8cpu_auto")["runs"])
    k = kernel_summary(times)
    assert k["int8_kernels"] >= 20 and k["kernels_by_input_precision"]["I8"] == k["int8_kernels"]
    f32 = kernel_summary(mean_times(_fixture("fp32_f32")["runs"]))
    assert f32["int8_kernels"] == 0 and set(f32["kernels_by_input_precision"]) == {"f32"}


def test_attribute_follows_chains_and_never_guesses():
    ops = {o.name: o for o in [
        RuntimeOp("x", "Input", ("x",)),
        RuntimeOp("x_r", "Reorder", (), ("x",)),
        RuntimeOp("conv", "Convolution", ("conv", "relu"), ("x_r",)),
        RuntimeOp("conv_r1", "Reorder", (), ("conv",)),
        RuntimeOp("conv_r2", "Reorder", (), ("conv_r1",)),
        RuntimeOp("pool", "Pooling", ("pool",), ("conv_r2",)),
        RuntimeOp("fc/WithoutBiases", "FullyConnected", ("fc/WithoutBiases",), ("pool",)),
    ]}
    onnx_nodes = {"conv", "relu", "pool", "fc"}
    mapping, unattributed = attribute(list(ops) + ["ghost"], ops, onnx_nodes)
    assert mapping["conv_r2"] == ["conv", "relu"]  # upstream through another reorder
    assert mapping["x_r"] == ["conv", "relu"]  # the graph input has no ONNX node: its consumer
    assert mapping["fc/WithoutBiases"] == ["fc"]
    assert mapping["ghost"] == [] and unattributed == ["ghost"]


def test_mean_times_needs_runs():
    from se_deploy.errors import BenchmarkError

    with pytest.raises(BenchmarkError):
        mean_times([])


# --------------------------------------------------------------------------- without OpenVINO
def test_missing_openvino_is_one_line_with_the_install_command(monkeypatch, tmp_path):
    from se_deploy.runtime.registry import list_backends

    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    (ov,) = [b for b in list_backends(jetson=False) if b.name == "openvino"]
    assert not ov.available and "cannot import openvino" in ov.reason
    assert ov.install == "pip install 'se-deploy[openvino]'"
    (ov_j,) = [b for b in list_backends(jetson=True) if b.name == "openvino"]
    assert "Arm CPU" in ov_j.install
    with pytest.raises(MissingDependencyError, match=r"se-deploy\[openvino\]"):
        with OvRunner(str(tmp_path / "m.onnx")):
            pass


def test_ignored_precision_hint_is_refused(monkeypatch):
    """The CPU plugin silently drops a hint the CPU cannot run; the runner must not relabel that."""

    class Type:
        def get_type_name(self):
            return "f32"

    class Compiled:
        def get_property(self, name):
            assert name == "INFERENCE_PRECISION_HINT"
            return Type()

    r = OvRunner("m.onnx", OvConfig(precision="f16"))
    r._precision = r._precision_request()
    with pytest.raises(EngineError, match="ignored INFERENCE_PRECISION_HINT=f16: the compiled model runs f32"):
        r._check_precision(Compiled())
    r = OvRunner("m.onnx", OvConfig(precision="default"))
    r._precision = r._precision_request()
    r._check_precision(Compiled())  # nothing requested: whatever the plugin chose is recorded
    assert r.inference_precision == "f32"


# --------------------------------------------------------------------------- end to end (needs OpenVINO)
@pytest.fixture(scope="module")
def zoo_onnx(tmp_path_factory):
    from se_deploy.export.torch_export import export_model
    from se_deploy.models import create_model

    d = tmp_path_factory.mktemp("ov")
    out = {}
    for name in ("se_resnet18", "se_mobilenet_v2"):
        path = d / f"{name}.onnx"
        export_model(create_model(name, num_classes=10), path, input_shape=(1, 3, 64, 64), exporter="legacy",
                     dynamic_batch=True)
        out[name] = str(path)
    return out


def _x(batch: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, 64, 64)).astype(np.float32)


def _ort(path: str, x: np.ndarray) -> np.ndarray:
    from se_deploy.runtime.onnxruntime import OrtConfig, run_onnx

    (y,) = run_onnx(path, {"input": x}, OrtConfig(threads=1)).values()
    return y


def _out(res) -> np.ndarray:
    (y,) = res.values()
    return y


@needs_openvino
@pytest.mark.parametrize("name", ["se_resnet18", "se_mobilenet_v2"])
def test_zoo_models_agree_with_onnxruntime_at_f32(name, zoo_onnx):
    from se_deploy.numerics import compare_arrays

    path = zoo_onnx[name]
    with OvRunner(path, OvConfig(threads=1, precision="f32")) as r:
        (inp,), (out,) = r.inputs, r.outputs
        assert (inp.name, inp.shape, inp.dtype) == ("input", (None, 3, 64, 64), "float32")
        assert out.shape == (None, 10)
        for batch in (2, 1):  # each batch compiles its own static-shape model
            x = _x(batch)
            res = r.infer({"input": x})
            assert list(res) == [out.name] and res.timing.total_ms > 0
            c = compare_arrays(_ort(path, x), res[out.name])
            assert res[out.name].shape == (batch, 10)
            assert c.rel_max_abs < 1e-4 and c.top1_agreement == 1.0, c
        d = r.describe()
        assert d["inference_precision"] == "f32" and d["precision_requested"] == "f32"
        assert d["threads"] == 1 and d["device"] == "CPU" and d["performance_hint"] == "LATENCY"
        assert d["compiled_shapes"] == [{"input": [1, 3, 64, 64]}, {"input": [2, 3, 64, 64]}]


@needs_openvino
def test_auto_precision_is_the_chooser_and_is_recorded(zoo_onnx):
    from se_deploy.numerics import compare_arrays

    path = zoo_onnx["se_resnet18"]
    x = _x(2)
    with OvRunner(path, OvConfig(threads=1)) as r:
        y = _out(r.infer({"input": x}))
        d = r.describe()
    want = host_precision()
    assert d["precision_requested"] == "auto" and d["precision_hint"] == want.precision
    assert d["inference_precision"] == want.precision and d["precision_reason"] == want.reason
    c = compare_arrays(_ort(path, x), y)
    assert c.rel_max_abs < (5e-2 if want.precision != "f32" else 1e-4), c


@needs_openvino
def test_dynamic_shapes_compile_once(zoo_onnx):
    path = zoo_onnx["se_mobilenet_v2"]
    with OvRunner(path, OvConfig(threads=1, precision="f32", static_shapes=False)) as r:
        ys = {b: _out(r.infer({"input": _x(b)})) for b in (1, 3)}
        assert len(r._compiled) == 1
    for b, y in ys.items():
        np.testing.assert_allclose(y, _ort(path, _x(b)), rtol=1e-4, atol=1e-4)


@needs_openvino
@pytest.mark.parametrize("target", ["cpu", "tensorrt"])
def test_int8_qdq_models_run_as_int8_and_agree_with_onnxruntime(target, zoo_onnx, tmp_path):
    """Both Q/DQ forms run on OpenVINO's INT8 kernels (the profile shows them) and agree with
    onnxruntime on the same file within INT8 rounding."""
    from se_deploy.bench.profile import profile_runner
    from se_deploy.calibration.dataset import load_calibration
    from se_deploy.calibration.preprocess import make_preprocess
    from se_deploy.calibration.quantize import QuantConfig, quantize_int8
    from se_deploy.numerics import compare_arrays

    calib = load_calibration(None, input_name="input", input_shape=(1, 3, 64, 64), preprocess=make_preprocess("none"),
                             calib_size=8, seed=0, synthetic=True)
    q = tmp_path / f"m.{target}.int8.onnx"
    quantize_int8(zoo_onnx["se_resnet18"], q, calib, QuantConfig(target=target))
    x = _x(2)
    with OvRunner(str(q), OvConfig(threads=1, precision="f32")) as r:
        y = _out(r.infer({"input": x}))
    c = compare_arrays(_ort(str(q), x), y)
    assert c.rel_max_abs < 0.1 and c.cosine > 0.99, c
    prof = profile_runner(OvRunner(str(q), OvConfig(threads=1, precision="f32")), {"input": x[:1]}, iters=2,
                          model_path=str(q))
    assert prof["int8_kernels"] >= 10 and prof["unattributed"] == []
    assert prof["se_blocks"]["ms"] > 0  # SE found through the quantized model's float source


@needs_openvino
def test_profile_through_bench_groups_se_blocks(zoo_onnx):
    from se_deploy.bench.profile import profile_runner

    path = zoo_onnx["se_mobilenet_v2"]
    res = profile_runner(OvRunner(path, OvConfig(threads=1, precision="f32")), {"input": _x(1)}, iters=2,
                         model_path=path)
    assert res["backend"] == "openvino" and res["inference_precision"] == "f32"
    assert res["unattributed"] == []
    # squeeze, two FCs and the scale of each of the 17 blocks. The CPU plugin has once (in 1 of 4 full runs on
    # the same build) reported one scale Mul fused into another kernel without its name: such a node is listed
    # as not seen, never dropped silently.
    missing = res["se_blocks"]["se_nodes_not_seen"]
    assert len(missing) <= 2 and all(n.endswith("Mul") for n in missing), missing
    assert 17 * 4 - len(missing) <= res["se_blocks"]["count"] <= 17 * 4
    assert 0 < res["total_ms"] and len(res["nodes"]) > 50
    assert all(n["provider"] for n in res["nodes"])  # the kernel (exec type) of every node


@needs_openvino
def test_bad_inputs_are_one_line_errors(zoo_onnx, tmp_path):
    with pytest.raises(InputError, match="ONNX file not found"):
        with OvRunner(str(tmp_path / "missing.onnx")):
            pass
    with pytest.raises(EngineError, match="requested OpenVINO device FPGA, but the available devices are: CPU"):
        with OvRunner(zoo_onnx["se_resnet18"], OvConfig(device="FPGA")):
            pass
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(EngineError, match="OpenVINO cannot read the model"):
        with OvRunner(str(bad)):
            pass
    with OvRunner(zoo_onnx["se_resnet18"], OvConfig(threads=1, precision="f32")) as r:
        with pytest.raises(InputError, match="dtype float64"):
            r.infer({"input": _x(1).astype(np.float64)})
    with pytest.raises(EngineError, match="outside its context"):
        r.infer({"input": _x(1)})


@needs_openvino
def test_registry_and_doctor_list_openvino_with_its_devices():
    import openvino as ov
    from typer.testing import CliRunner

    from se_deploy.cli import app
    from se_deploy.runtime.registry import capabilities, create_runner, list_backends

    (info,) = [b for b in list_backends() if b.name == "openvino"]
    assert info.available and info.version == ov.get_version().split("-")[0]
    assert "CPU" in info.details["devices"] and info.details["cpu_precision"]["precision"] == host_precision().precision
    caps = capabilities("openvino")
    assert caps.threads and caps.profiling and not caps.spinning
    assert isinstance(create_runner("openvino", "m.onnx", threads=2), OvRunner)
    out = CliRunner().invoke(app, ["doctor"])
    assert out.exit_code == 0, out.output
    line = next(ln for ln in out.output.splitlines() if "openvino" in ln)
    assert line.split()[:3] == ["ok", "openvino", info.version] and "devices: CPU (" in line
