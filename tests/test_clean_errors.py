"""Bad input, failed checks and faults: one line, an exit code from the README's table, and no lost data."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from se_deploy.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def invoke(*args, **kw):
    return runner.invoke(app, [str(a) for a in args], **kw)


def one_line_error(result, code: int, *needles: str) -> str:
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, result.output
    for n in needles:
        assert n in errors[0], (n, errors[0])
    return errors[0]


def tiny_onnx(path: Path, *, batch="N", classes: int = 4, tiny_weights: bool = False) -> Path:
    """Conv -> GlobalAveragePool -> Flatten: input 'input' [batch, 3, 8, 8], output [batch, classes]."""
    import onnx
    from onnx import TensorProto, helper

    w = np.random.default_rng(0).standard_normal((classes, 3, 1, 1)).astype(np.float32)
    if tiny_weights:
        w[0, 0] = 1e-9  # below FP16's smallest subnormal: onnxconverter-common warns about each such value
    nodes = [helper.make_node("Conv", ["input", "w"], ["y"]), helper.make_node("GlobalAveragePool", ["y"], ["p"]),
             helper.make_node("Flatten", ["p"], ["output"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                            [batch, 3, 8, 8])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, classes])],
                              [onnx.numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    tiny_onnx(d / "m.onnx")
    tiny_onnx(d / "fixed.onnx", batch=1)
    rng = np.random.default_rng(0)
    np.savez(d / "c.npz", input=rng.standard_normal((64, 3, 8, 8)).astype(np.float32))
    blob = (d / "c.npz").read_bytes()
    (d / "trunc.npz").write_bytes(blob[: len(blob) // 2])
    np.savez(d / "e.npz", input=rng.standard_normal((16, 3, 8, 8)).astype(np.float32), labels=np.arange(16))
    return d


# --------------------------------------------------------------------------- clean errors


@pytest.mark.parametrize("argv", [
    ["quantize", "{d}/m.onnx", "--int8", "--calib-data", "{d}/trunc.npz", "-o", "{o}/q.onnx"],
    ["calibrate", "{d}/m.onnx", "--calib-data", "{d}/trunc.npz", "-o", "{o}/c.npz"],
    ["fuse", "{d}/m.onnx", "--fold-gates", "--calib-data", "{d}/trunc.npz", "-o", "{o}/f.onnx"],
    ["build-engine", "{d}/m.onnx", "--int8", "--calib-data", "{d}/trunc.npz", "-o", "{o}/m.plan", "--trt-version",
     "11", "--print-trtexec"],
], ids=["quantize", "calibrate", "fuse", "build-engine"])
def test_a_truncated_npz_is_one_line(files, tmp_path, argv):
    r = invoke(*[a.format(d=files, o=tmp_path) for a in argv])
    one_line_error(r, 6, "trunc.npz", "truncated or corrupt")
    assert list(tmp_path.iterdir()) == []


def test_pipeline_out_that_cannot_be_a_run_directory(tmp_path, monkeypatch):
    cfg = tmp_path / "p.toml"
    cfg.write_text('[run]\nname = "t"\n[model]\nse = "se_resnet18"\ninput_shape = [1, 3, 16, 16]\n')
    (tmp_path / "file").write_text("x")
    one_line_error(invoke("pipeline", "--config", cfg, "--out", tmp_path / "file"), 2,
                   "exists and is not a directory")
    # the default --out (runs/<name>) where nothing can be created: /proc stands in for a read-only folder
    monkeypatch.chdir("/proc")
    one_line_error(invoke("pipeline", "--config", cfg), 2, "cannot create run directory runs/t")


def test_pipeline_data_paths_are_checked_before_any_work(tmp_path):
    cfg = tmp_path / "p.toml"
    cfg.write_text('[model]\nse = "se_resnet18"\n[calibration]\nsource = "no/such/images"\n')
    one_line_error(invoke("pipeline", "--config", cfg, "--out", tmp_path / "run"), 2,
                   "calibration.source: 'no/such/images' does not exist")
    assert not (tmp_path / "run").exists()


def test_report_render_with_wrongly_typed_fields(tmp_path):
    from tests.report.conftest import build_results

    data = build_results().to_dict()
    data["measurements"][0]["batch"] = "four"
    (tmp_path / "r.json").write_text(json.dumps(data))
    one_line_error(invoke("report", "render", tmp_path / "r.json", "-o", tmp_path / "r.md"), 2,
                   "measurements[0].batch")
    assert not (tmp_path / "r.md").exists()


def test_bench_refuses_a_batch_that_cannot_fit_before_allocating(files, tmp_path):
    one_line_error(invoke("bench", files / "m.onnx", "--baseline", "none", "--batch", "100000000",
                          "-o", tmp_path / "r.json"), 2, "batch 100000000 needs 76.8 GB", "use a smaller --batch")
    one_line_error(invoke("bench", files / "m.onnx", "--batch", "1,,2", "-o", tmp_path / "r.json"), 2,
                   "malformed batch list '1,,2'")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("factory,needle", [("os:getcwd", "os:getcwd() returned a str, not a torch.nn.Module"),
                                            ("builtins:exit", "builtins:exit() exited (SystemExit None)"),
                                            ("json:loads", "json:loads() failed: TypeError")])
def test_a_factory_that_returns_no_module_or_exits(tmp_path, factory, needle):
    r = invoke("export", factory, "-o", tmp_path / "m.onnx", "--input-shape", "1x3x8x8")
    one_line_error(r, 3, needle)
    assert list(tmp_path.iterdir()) == []


def test_only_a_pickle_of_objects_gets_the_unsafe_pickle_advice(files, tmp_path):
    import argparse

    import torch

    (tmp_path / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    for bad in (tmp_path / "random.pt", files / "m.onnx"):
        line = one_line_error(invoke("export", bad, "-o", tmp_path / "x.onnx"), 2, "is not a PyTorch checkpoint")
        assert "--unsafe-pickle" not in line
    line = one_line_error(invoke("export", "resnet18", "--weights", tmp_path / "random.pt", "-o", tmp_path / "x.onnx"),
                          2, "is not a PyTorch checkpoint")
    assert "--unsafe-pickle" not in line
    torch.save({"arch": "resnet18", "args": argparse.Namespace(lr=0.1)}, tmp_path / "objects.pt")
    one_line_error(invoke("export", tmp_path / "objects.pt", "-o", tmp_path / "x.onnx"), 2,
                   "holds more than tensors (a pickled object)", "--unsafe-pickle")
    blob = (tmp_path / "objects.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(blob[: len(blob) // 2])
    line = one_line_error(invoke("export", tmp_path / "cut.pt", "-o", tmp_path / "x.onnx"), 2,
                          "corrupt or unreadable checkpoint")
    assert "--unsafe-pickle" not in line and not (tmp_path / "x.onnx").exists()


def test_a_missing_external_data_file_is_named(files, tmp_path):
    import onnx

    m = onnx.load(str(files / "m.onnx"))
    onnx.save_model(m, str(tmp_path / "ext.onnx"), save_as_external_data=True, location="ext.onnx.weights",
                    size_threshold=0)
    (tmp_path / "ext.onnx.weights").unlink()
    one_line_error(invoke("inspect", tmp_path / "ext.onnx"), 2, "keeps its weights in", "ext.onnx.weights",
                   "which is missing")


def test_asking_for_more_calibration_samples_than_exist_is_said(files, tmp_path):
    r = invoke("calibrate", files / "m.onnx", "--calib-data", files / "c.npz", "--calib-size", "100",
               "-o", tmp_path / "c.npz")
    assert r.exit_code == 0, r.output
    assert "warning: asked for 100 samples but" in r.output and "holds 64: using all 64" in r.output
    side = json.loads((tmp_path / "c.npz.json").read_text())
    assert side["samples"] == 64 and any("asked for 100" in w for w in side["warnings"])


def test_labels_the_model_cannot_predict_are_refused(files, tmp_path):
    shutil.copy(files / "m.onnx", tmp_path / "q.onnx")
    r = invoke("compare", files / "m.onnx", tmp_path / "q.onnx", "--data", files / "e.npz")
    one_line_error(r, 2, "labels in", "range from 0 to 15, but the model predicts 4 classes (0..3)")


def test_build_engine_batch_profile_is_checked_before_preparing(files, tmp_path):
    r = invoke("build-engine", files / "fixed.onnx", "--int8", "--calib-data", files / "c.npz", "--batch", "1:4:8",
               "-o", tmp_path / "m.plan", "--trt-version", "11", "--print-trtexec")
    one_line_error(r, 2, "fixed batch of 1", "--batch 1:4:8 cannot apply")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_simplifier_fails_before_the_model_is_built(tmp_path, monkeypatch):
    import se_deploy.models.sources as sources

    monkeypatch.setitem(sys.modules, "onnxslim", None)  # import onnxslim -> ImportError
    built = []
    monkeypatch.setattr(sources, "create_model", lambda *a, **k: built.append(a))
    r = invoke("export", "se_resnet18", "--simplifier", "onnxslim", "-o", tmp_path / "m.onnx")
    one_line_error(r, 9, "onnxslim is not installed", "--no-simplify")
    assert built == [] and list(tmp_path.iterdir()) == []


def test_an_opset_the_exporter_did_not_write_is_refused(tmp_path, monkeypatch):
    """torch's dynamo exporter falls back to opset 18 when it cannot convert (measured: --opset 13 gave 18)."""
    import torch

    import se_deploy.export.torch_export as te
    from se_deploy.errors import ExportError

    monkeypatch.setattr(te, "_torch_export", lambda module, cfg, path: tiny_onnx(path))  # writes opset 17
    with pytest.raises(ExportError, match=r"^the dynamo exporter wrote opset 17, not the requested 13 \(it could not "
                                          r"convert this model\); use --opset 17 or --exporter legacy$"):
        te.export_model(torch.nn.Identity(), tmp_path / "m.onnx", input_shape=(1, 3, 8, 8), opset=13)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_inside_torch_export_is_an_interruption_not_an_export_failure(tmp_path, monkeypatch):
    """torch.export catches the KeyboardInterrupt and fails (or goes on) otherwise; se-deploy still stops."""
    import se_deploy.export.torch_export as te

    def swallowing_export(module, cfg, path):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            raise RuntimeError("capture strategy failed") from None

    monkeypatch.setattr(te, "_torch_export", swallowing_export)
    r = invoke("export", "se_resnet18", "-o", tmp_path / "m.onnx", "--input-shape", "1x3x8x8")
    line = one_line_error(r, 130, "interrupted")
    assert "--exporter legacy" not in line and list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the export's handler is gone


def test_fuse_refuses_to_replace_a_read_only_output(files, tmp_path):
    out = tmp_path / "f.onnx"
    out.write_bytes(b"keep me")
    out.chmod(0o444)
    one_line_error(invoke("fuse", files / "m.onnx", "-o", out), 2, "is read-only: refusing to replace it")
    assert out.read_bytes() == b"keep me"


# --------------------------------------------------------------------------- a failed check keeps a good output


@pytest.fixture
def good_output(tmp_path) -> tuple[Path, bytes, bytes]:
    out = tmp_path / "keep.int8.onnx"
    tiny_onnx(out)
    Path(str(out) + ".json").write_text('{"status": "accepted"}\n')
    return out, out.read_bytes(), Path(str(out) + ".json").read_bytes()


def _unchanged(out: Path, model: bytes, side: bytes) -> None:
    assert out.read_bytes() == model and Path(str(out) + ".json").read_bytes() == side
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]


def test_a_quantize_that_fails_its_check_keeps_the_existing_output(files, good_output, monkeypatch):
    import se_deploy.calibration.quantize as q
    from se_deploy.errors import EngineError

    out, model, side = good_output

    def engine_fails(reference, candidates, data):
        raise EngineError("onnxruntime cannot run the INT8 model")

    monkeypatch.setattr(q, "evaluate", engine_fails)
    r = invoke("quantize", files / "m.onnx", "--int8", "--target", "cpu", "--calib-data", files / "c.npz",
               "-o", out)
    one_line_error(r, 8, "onnxruntime cannot run the INT8 model")
    _unchanged(out, model, side)


def test_a_rejected_model_goes_to_its_own_name_only_when_asked(files, good_output, monkeypatch):
    import se_deploy.calibration.quantize as q

    out, model, side = good_output
    real = q.evaluate

    def big_drop(reference, candidates, data):
        report = real(reference, candidates, data)
        report["reference"].update(top1=90.0, top5=99.0)
        report["candidates"]["int8"].update(top1=50.0, top5=80.0, top1_drop=40.0)
        return report

    monkeypatch.setattr(q, "evaluate", big_drop)
    argv = ["quantize", files / "m.onnx", "--int8", "--target", "cpu", "--calib-data", files / "c.npz",
            "--max-drop", "1", "-o", out]
    one_line_error(invoke(*argv), 7, "dropped 40.00 points", f"nothing written to {out}",
                   "--keep-rejected keeps it as")
    _unchanged(out, model, side)
    assert not out.with_name("keep.int8.rejected.onnx").exists()
    one_line_error(invoke(*argv, "--keep-rejected"), 7, "the rejected model is kept as")
    _unchanged(out, model, side)
    kept = out.with_name("keep.int8.rejected.onnx")
    rec = json.loads(Path(str(kept) + ".json").read_text())
    assert rec["status"] == "rejected" and rec["accuracy"]["candidates"]["int8"]["model"] == str(out)
    import onnx

    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(kept)).graph.node)


def test_an_fp16_model_that_misses_its_bound_is_not_written(files, good_output):
    from se_deploy.calibration.fp16 import Fp16Config, convert_fp16
    from se_deploy.errors import QuantizationError

    out, model, side = good_output
    with pytest.raises(QuantizationError, match="is below 1.0; nothing written to"):
        convert_fp16(files / "m.onnx", out, Fp16Config(min_cosine=1.0))
    _unchanged(out, model, side)


# --------------------------------------------------------------------------- one run per directory

HOLD = textwrap.dedent("""
    import sys, time
    from se_deploy.files import locked_directory
    with locked_directory(sys.argv[1], what="run directory"):
        print("held", flush=True)
        time.sleep(60)
""")


def test_a_second_pipeline_on_the_same_directory_is_refused(tmp_path):
    cfg = tmp_path / "p.toml"
    cfg.write_text('[run]\nname = "t"\n[model]\nse = "se_resnet18"\ninput_shape = [1, 3, 16, 16]\n')
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        r = invoke("pipeline", "--config", cfg, "--out", run)
        one_line_error(r, 75, f"run directory {run} is in use by another se-deploy run (pid {holder.pid} on",
                       "--wait")
        assert sorted(p.name for p in run.iterdir()) == [".se-deploy.lock", ".se-deploy.lock.holder.json"]
    finally:
        holder.kill()
        holder.wait()


# --------------------------------------------------------------------------- signals, in a real process

EXPORT = ["-m", "se_deploy", "export", "se_resnet18", "--input-shape", "1x3x64x64", "--num-classes", "10"]


@pytest.mark.parametrize("sig,code,word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_a_signal_during_export_cleans_up_like_ctrl_c(tmp_path, sig, code, word):
    out_dir, tmp = tmp_path / "out", tmp_path / "tmp"
    out_dir.mkdir()
    tmp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp)}
    p = subprocess.Popen([sys.executable, *EXPORT, "-o", str(out_dir / "m.onnx")], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not any(tmp.iterdir()) and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # torch.export has started once its temporary directory exists
    assert p.poll() is None, "the export ended before it could be signalled"
    p.send_signal(sig)
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == code, (p.returncode, stderr)
    assert stderr.strip().splitlines()[-1] == f"error: {word}" and "Traceback" not in stderr
    assert list(tmp.iterdir()) == [] and list(out_dir.iterdir()) == []


# --------------------------------------------------------------------------- quiet output


def test_fp16_and_a_read_only_home_print_no_third_party_warnings(tmp_path):
    model = tiny_onnx(tmp_path / "m.onnx", tiny_weights=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": "/proc/no-home"}  # nothing can be written under it
    env.pop("ORT_DISABLE_TELEMETRY", None)
    r = subprocess.run([sys.executable, "-m", "se_deploy", "quantize", str(model), "--fp16", "-o",
                        str(tmp_path / "m.fp16.onnx")], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    text = r.stdout + r.stderr
    assert "FP16" in r.stdout
    for noise in ("Warning", "warnings.warn", "telemetry", "truncated"):
        assert noise not in text, text


# --------------------------------------------------------------------------- results point at files that exist


def test_results_say_the_plain_twin_was_temporary_instead_of_naming_a_deleted_file(tmp_path):
    from se_deploy.bench.targets import prepare
    from tests.runtime.test_onnxruntime_runner import export_tiny, tiny_se_net

    model = export_tiny(tiny_se_net(), tmp_path / "se.onnx", shape=(1, 3, 16, 16))
    work = tmp_path / "work"
    work.mkdir()
    prep = prepare(model, backend=None, baseline="auto", input_shape=(1, 3, 16, 16), workdir=work)
    se, twin = prep.models
    assert se.artifact == model and se.temporary is None
    assert twin.role == "plain" and twin.artifact is None and twin.sha256  # measured, then deleted with workdir
    assert twin.temporary == "the SE-ablated twin, made for this run and deleted after it"
    assert prep.candidates[1].artifact.startswith(str(work))  # what runs is the file in the work folder


def test_compare_with_an_unreadable_candidate_is_one_line(files, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf")
    r = runner.invoke(app, ["compare", str(files / "m.onnx"), str(bad), "--data", str(files / "c.npz")])
    one_line_error(r, 2, "bad.onnx", "not a readable ONNX model")


def test_bench_trtexec_path_without_the_trtexec_backend_is_refused(files, tmp_path):
    r = runner.invoke(app, ["bench", str(files / "m.onnx"), "--trtexec", "/bin/true", "-o", str(tmp_path / "r.json")])
    one_line_error(r, 2, "--backend trtexec")
    assert not (tmp_path / "r.json").exists()
