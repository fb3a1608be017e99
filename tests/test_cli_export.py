"""`se-deploy export / inspect / models` through typer's runner: happy paths and every bad input."""

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from se_deploy.cli import app
from se_deploy.models import create_model

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, code, *needles):
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def test_export_then_inspect(tmp_path):
    out = tmp_path / "m.onnx"
    r = invoke("export", "se_resnet18", "-o", out, "--input-shape", "1x3x64x64", "--num-classes", "10",
               "--exporter", "legacy")
    assert r.exit_code == 0, r.output
    assert "parity" in r.output and "next: se-deploy inspect" in r.output
    side = json.loads(Path(str(out) + ".json").read_text())
    assert side["source"]["spec"] == "se_resnet18" and side["source"]["num_classes"] == 10
    r = invoke("inspect", out, "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["outputs"][0]["shape"] == [1, 10]
    assert info["op_histogram"]["Conv"] >= 20
    assert len(info["se_blocks"]) == 8 and info["se_share"]["blocks"] == 8
    # MACs of the convs/FCs at 64x64 match an independent count from the torch model
    assert info["macs"] == pytest.approx(_torch_macs(create_model("se_resnet18", num_classes=10), 64), rel=0.01)
    r = invoke("inspect", out)
    assert r.exit_code == 0 and "SE blocks: 8" in r.output and "MACs" in r.output


def _torch_macs(model, size):
    macs = 0

    def conv_hook(mod, inp, out):
        nonlocal macs
        macs += out.numel() * (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]

    def lin_hook(mod, inp, out):
        nonlocal macs
        macs += out.numel() * mod.in_features

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(conv_hook)
        elif isinstance(m, torch.nn.Linear):
            m.register_forward_hook(lin_hook)
    with torch.no_grad():
        model(torch.randn(1, 3, size, size))
    return macs


def test_export_with_weights_and_factory(tmp_path):
    m = create_model("resnet18", num_classes=4)
    ckpt = tmp_path / "w.pt"
    torch.save({"state_dict": m.state_dict()}, ckpt)
    out = tmp_path / "w.onnx"
    r = invoke("export", "resnet18", "--weights", ckpt, "--num-classes", "4", "-o", out, "--input-shape",
               "1x3x32x32", "--exporter", "legacy")
    assert r.exit_code == 0, r.output
    side = json.loads(Path(str(out) + ".json").read_text())
    assert side["source"]["weights_sha256"]
    r = invoke("export", "tests.models.factory_fixture:make", "-o", tmp_path / "f.onnx", "--input-shape",
               "1x3x16x16", "--exporter", "legacy", "--num-classes", "3")
    assert r.exit_code == 0, r.output


def test_checkpoint_with_arch_is_a_model_source(tmp_path):
    from safetensors.torch import save_file

    m = create_model("se_mobilenet_v1", num_classes=6)
    st = tmp_path / "m.safetensors"
    save_file(m.state_dict(), str(st), metadata={"arch": "se_mobilenet_v1"})
    r = invoke("export", st, "-o", tmp_path / "s.onnx", "--input-shape", "1x3x32x32", "--exporter", "legacy")
    assert r.exit_code == 0, r.output
    pt = tmp_path / "m.pt"
    torch.save({"arch": "se_mobilenet_v1", "state_dict": m.state_dict()}, pt)
    r = invoke("export", pt, "-o", tmp_path / "p.onnx", "--input-shape", "1x3x32x32", "--exporter", "legacy")
    assert r.exit_code == 0, r.output


def test_unknown_model(tmp_path):
    one_line_error(invoke("export", "se_resnet5", "-o", tmp_path / "x.onnx"), 3, "unknown model", "se_resnet50")


@pytest.mark.parametrize("shape", ["1x3x224", "1x3xAx224", "0x3x8x8", "banana"])
def test_malformed_input_shape(tmp_path, shape):
    one_line_error(invoke("export", "resnet18", "-o", tmp_path / "x.onnx", "--input-shape", shape), 2, "shape")


def test_missing_checkpoint(tmp_path):
    one_line_error(invoke("export", "resnet18", "--weights", tmp_path / "nope.pt", "-o", tmp_path / "x.onnx"), 2,
                   "checkpoint not found")


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x02garbage" * 10)
    one_line_error(invoke("export", "resnet18", "--weights", bad, "-o", tmp_path / "x.onnx"), 2, "checkpoint")
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"not safetensors")
    one_line_error(invoke("export", "resnet18", "--weights", bad_st, "-o", tmp_path / "x.onnx"), 2, "corrupt")


def test_checkpoint_key_mismatch_names_keys(tmp_path):
    ckpt = tmp_path / "other.pt"
    torch.save(create_model("se_resnet18").state_dict(), ckpt)
    line = one_line_error(invoke("export", "resnet18", "--weights", ckpt, "-o", tmp_path / "x.onnx"), 3,
                          "does not match", "unexpected (first: layer1.0.se.fc1.weight)")
    assert "missing" not in line
    ckpt2 = tmp_path / "plain.pt"
    torch.save(create_model("resnet18").state_dict(), ckpt2)
    one_line_error(invoke("export", "se_resnet18", "--weights", ckpt2, "-o", tmp_path / "x.onnx"), 3,
                   "missing (first: layer1.0.se.fc1.weight)")


def test_pickled_module_needs_unsafe_pickle(tmp_path):
    ckpt = tmp_path / "full.pt"
    torch.save(create_model("resnet18", num_classes=2), ckpt)
    one_line_error(invoke("export", ckpt, "-o", tmp_path / "x.onnx"), 2, "--unsafe-pickle")
    r = invoke("export", ckpt, "--unsafe-pickle", "-o", tmp_path / "x.onnx", "--input-shape", "1x3x32x32",
               "--exporter", "legacy")
    assert r.exit_code == 0, r.output


def test_output_in_missing_directory(tmp_path):
    one_line_error(invoke("export", "resnet18", "-o", tmp_path / "nodir" / "x.onnx"), 2, "does not exist")


def test_output_in_read_only_directory():
    # /proc refuses new files even for root, unlike a chmod'ed directory
    one_line_error(invoke("export", "resnet18", "-o", "/proc/se_deploy_x.onnx"), 2, "not writable")


def test_timm_missing_is_one_line(tmp_path):
    pytest.importorskip("torch")
    try:
        import timm  # noqa: F401
        pytest.skip("timm is installed")
    except ImportError:
        pass
    one_line_error(invoke("export", "timm:seresnet50", "-o", tmp_path / "x.onnx"), 9, "timm is not installed",
                   "pip install timm")


def test_inspect_truncated_and_non_onnx(tmp_path):
    good = tmp_path / "g.onnx"
    r = invoke("export", "resnet18", "-o", good, "--input-shape", "1x3x32x32", "--exporter", "legacy", "--no-fuse")
    assert r.exit_code == 0, r.output
    trunc = tmp_path / "t.onnx"
    trunc.write_bytes(good.read_bytes()[:5000])
    one_line_error(invoke("inspect", trunc), 2, "t.onnx")
    text = tmp_path / "notes.txt"
    text.write_text("hello, I am not a model\n")
    one_line_error(invoke("inspect", text), 2, "notes.txt")
    one_line_error(invoke("inspect", tmp_path / "missing.onnx"), 2, "not found")
    empty = tmp_path / "e.onnx"
    empty.write_bytes(b"")
    one_line_error(invoke("inspect", empty), 2, "empty")


def test_models_and_version():
    r = invoke("models", "se_*")
    assert r.exit_code == 0 and "se_resnet50" in r.output and "resnet50" in r.output
    r = invoke("--version")
    assert r.exit_code == 0 and "se-deploy" in r.output
