"""Quantization leaves the user's current directory alone, even when onnxruntime's symbolic shape inference fails."""

from __future__ import annotations

import onnx

from se_deploy.calibration.dataset import load_calibration
from se_deploy.calibration.preprocess import make_preprocess
from se_deploy.calibration.quantize import QuantConfig, quantize_int8
from se_deploy.export import passes as P
from se_deploy.onnx_io import save_onnx
from tests.export.se_graphs import SESpec, make_se_model


def test_expand_gate_model_quantizes_without_litter_in_the_cwd(tmp_path, monkeypatch):
    # expand-gate's Resize with a symbolic batch is where onnxruntime's symbolic shape inference
    # gives up; it then dumps sym_shape_infer_temp.onnx and a <uuid>.data file into the cwd
    spec = SESpec(fc="gemm", reshape="reshape_dynamic", batch="N", c=16, r=4)
    model, _ = make_se_model(spec)
    gated, report = P.run_passes(model, ["canonicalize", "expand-gate"])
    assert [e["status"] for e in report["passes"]] == ["applied", "applied"]
    models, cwd = tmp_path / "models", tmp_path / "cwd"
    models.mkdir()
    cwd.mkdir()
    save_onnx(gated, models / "gated.onnx")
    dims = [d.dim_value or 1 for d in gated.graph.input[0].type.tensor_type.shape.dim]
    calib = load_calibration(None, input_name=gated.graph.input[0].name, input_shape=tuple(dims),
                             preprocess=make_preprocess("none"), calib_size=8, seed=0, synthetic=True)
    monkeypatch.chdir(cwd)
    # relative paths: the pre-processing changes directory and must still find both files
    side = quantize_int8("../models/gated.onnx", "../models/gated.int8.onnx", calib, QuantConfig(target="cpu"))
    assert sorted(p.name for p in cwd.iterdir()) == []
    assert any("symbolic shape inference failed" in w for w in side["warnings"])
    q = onnx.load(str(models / "gated.int8.onnx"))
    ops = {n.op_type for n in q.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Resize"} <= ops
