import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from se_deploy.runtime.onnxruntime import run_onnx
from se_deploy.errors import ExportError, UsageError
from se_deploy.export.torch_export import ExportConfig, export_model
from se_deploy.models import create_model, list_models

SMALL = (1, 3, 32, 32)


@pytest.mark.parametrize("name", list_models())
def test_every_zoo_model_exports_with_parity(tmp_path, name):
    # legacy exporter keeps the full-zoo sweep fast; the dynamo path is covered below
    out = tmp_path / f"{name}.onnx"
    r = export_model(create_model(name, num_classes=10), out, input_shape=SMALL, exporter="legacy", fuse=False)
    assert r.info["parity"]["passed"] and r.info["parity"]["worst_rel_max_abs"] <= 1e-4
    onnx.checker.check_model(onnx.load(str(out)))
    side = json.loads(Path(str(out) + ".json").read_text())
    assert side["onnx_sha256"] and side["exporter"] == "legacy" and side["parity"]["passed"]


@pytest.mark.parametrize("exporter", ["dynamo", "legacy"])
def test_dynamic_batch_export_runs_at_other_batches(tmp_path, exporter):
    m = create_model("se_mobilenet_v2", num_classes=10)
    out = tmp_path / "m.onnx"
    r = export_model(m, out, input_shape=(1, 3, 64, 64), dynamic_batch=True, exporter=exporter)
    probes = r.info["parity"]["probes"]
    assert {p["input"] for p in probes} == {"random(b=1)", "constant(b=1)", "random(b=3)", "constant(b=3)"}
    x = np.random.default_rng(1).standard_normal((5, 3, 64, 64)).astype(np.float32)
    got = run_onnx(str(out), {"input": x})["logits"]
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).numpy()
    assert np.max(np.abs(got - ref)) <= 1e-4 * np.max(np.abs(ref))
    side = json.loads(Path(str(out) + ".json").read_text())
    assert side["inputs"][0]["shape"][0] == "batch" and side["dynamic_batch"] is True
    assert side["source"]["kind"] == "module" and side["se_deploy_version"]
    # the sidecar records the opset the file holds (the config records what was asked)
    written = next(o.version for o in onnx.load(str(out)).opset_import if o.domain in ("", "ai.onnx"))
    assert side["opset"] == written and side["config"]["opset"] == 18


def test_parity_failure_writes_nothing(tmp_path, monkeypatch):
    import se_deploy.export.torch_export as te

    real = te.check_parity

    def broken(module, model, cfg):
        res = real(module, model, cfg)
        res.update(passed=False, worst_rel_max_abs=1.0)
        return res

    monkeypatch.setattr(te, "check_parity", broken)
    out = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match="parity check failed"):
        export_model(create_model("resnet18", num_classes=4), out, input_shape=SMALL, exporter="legacy", fuse=False)
    assert not out.exists() and not Path(str(out) + ".json").exists()
    assert list(tmp_path.iterdir()) == []


def test_interrupted_export_leaves_no_partial_file(tmp_path, monkeypatch):
    import se_deploy.onnx_io as oio

    def interrupted_write(self, data):
        Path.write_bytes.__wrapped__(self, data[: len(data) // 2]) if hasattr(Path.write_bytes, "__wrapped__") else None
        raise KeyboardInterrupt

    out = tmp_path / "m.onnx"
    model = onnx.load_model_from_string(onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])).SerializeToString())
    monkeypatch.setattr(Path, "write_bytes", interrupted_write)
    with pytest.raises(KeyboardInterrupt):
        oio.save_onnx(model, out)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_config_validation():
    with pytest.raises(UsageError, match="^exporter: 'torchscript' is not one of dynamo, legacy$"):
        ExportConfig(exporter="torchscript")
    with pytest.raises(UsageError, match="^opset: 7 must be >= 13$"):
        ExportConfig(opset=7)
    with pytest.raises(UsageError, match="^input_shape: \\[1, 3, 224\\] must be NxCxHxW"):
        ExportConfig(input_shape=(1, 3, 224))
    with pytest.raises(UsageError, match="^simplifier: 'onnx-simplifier' is not one of onnxsim, onnxslim$"):
        ExportConfig(simplifier="onnx-simplifier")


def test_legacy_exporter_refuses_an_opset_it_cannot_write():
    """Refused, not clamped: a clamp would write opset 20 while the sidecar said 21."""
    with pytest.raises(UsageError, match="^opset: 21 is newer than the legacy exporter writes \\(at most 20\\)"):
        ExportConfig(exporter="legacy", opset=21)
    assert ExportConfig(exporter="legacy", opset=20).opset == 20
    assert ExportConfig(exporter="dynamo", opset=21).opset == 21
