"""`inspect` facts that reach results.json and the reports: the SE share must not depend on node names,
MACs are never computed for a guessed 1x1 map, and inspecting or fusing never changes the user's file."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from typer.testing import CliRunner

from se_deploy.cli import app
from se_deploy.export.inspect import inspect_model
from se_deploy.export.simplify import simplify
from tests.export.se_graphs import SESpec, make_se_model, make_shared_bias_model, route_through_identity

runner = CliRunner()


def _dynamic_hw(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for vi in list(out.graph.input[:1]) + list(out.graph.output[:1]):
        dims = vi.type.tensor_type.shape.dim
        for i, sym in ((0, "N"), (2, "H"), (3, "W")):
            dims[i].Clear()
            dims[i].dim_param = sym
    del out.graph.value_info[:]
    onnx.checker.check_model(out)
    return out


@pytest.mark.parametrize("rename", ["empty", "duplicated"])
def test_se_share_does_not_depend_on_node_names(rename):
    model, _ = make_se_model(SESpec(fc="gemm", reshape="flatten", weights="identity", consumer="conv1x1"))
    named = inspect_model(model)["se_share"]
    assert named["blocks"] == 1 and named["params"] > 0 and named["macs"] > 0 and named["macs_fraction"] > 0
    for n in model.graph.node:
        n.name = "" if rename == "empty" else "node"
    assert inspect_model(model)["se_share"] == named


def test_se_params_count_the_excitation_weights():
    spec = SESpec(c=8, r=4, fc="conv", bias=True, producer="conv1x1", consumer="add")
    share = inspect_model(make_se_model(spec)[0])["se_share"]
    assert share["params"] == 8 * 2 + 2 + 2 * 8 + 8  # FC1 W, b; FC2 W, b


def test_dynamic_hw_gives_unknown_macs_unless_the_shape_is_given():
    model, _ = make_se_model(SESpec(fc="gemm", reshape="flatten", hw=5))
    static = inspect_model(model)
    dyn = _dynamic_hw(model)
    info = inspect_model(dyn)
    assert info["macs"] is None and info["flops"] is None and info["other_ops"] is None
    assert "--input-shape" in info["macs_note"]
    assert info["se_share"]["macs"] is None and info["se_share"]["macs_fraction"] is None
    assert info["se_share"]["blocks"] == 1 and info["se_share"]["params"] == static["se_share"]["params"]
    given = inspect_model(dyn, input_shapes={"input": (4, 8, 5, 5)})  # batch ignored: counts are per batch of 1
    assert (given["macs"], given["flops"], given["other_ops"]) == (static["macs"], static["flops"], static["other_ops"])
    assert given["macs_note"] is None and given["se_share"] == static["se_share"]


def test_inspect_cli_input_shape(tmp_path):
    model, _ = make_se_model(SESpec(fc="gemm", reshape="flatten", hw=5))
    path = tmp_path / "dyn.onnx"
    onnx.save(_dynamic_hw(model), str(path))
    r = runner.invoke(app, ["inspect", str(path), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["macs"] is None and info["flops"] is None and "--input-shape" in info["macs_note"]
    r = runner.invoke(app, ["inspect", str(path)])
    assert r.exit_code == 0 and "MACs unknown" in r.output
    r = runner.invoke(app, ["inspect", str(path), "--json", "--input-shape", "1x8x5x5"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["macs"] == inspect_model(model)["macs"] > 0
    r = runner.invoke(app, ["inspect", str(path), "--input-shape", "1x3x5x5"])
    assert r.exit_code == 2 and "disagrees" in r.output


def test_inspect_and_fuse_never_change_the_input_file(tmp_path):
    model = route_through_identity(make_shared_bias_model("identity"))
    path = tmp_path / "untidy.onnx"
    onnx.save(model, str(path))
    before = path.read_bytes()
    assert runner.invoke(app, ["inspect", str(path), "--json"]).exit_code == 0
    for args in (["--explain"], ["--passes", "canonicalize,hoist-squeeze"], ["--ablate-se"]):
        out = tmp_path / "out.onnx"
        r = runner.invoke(app, ["fuse", str(path), "-o", str(out), *args])
        assert r.exit_code == 0, r.output
        assert out.read_bytes() != before
    assert path.read_bytes() == before


def test_inspect_counts_the_same_blocks_before_and_after_onnxsim(tmp_path):
    raw = tmp_path / "raw.onnx"
    r = runner.invoke(app, ["export", "se_resnet18", "-o", str(raw), "--input-shape", "1x3x64x64", "--num-classes", "5",
                            "--exporter", "legacy", "--dynamic-batch", "--no-simplify", "--no-fuse"])
    assert r.exit_code == 0, r.output
    simplified, info = simplify(onnx.load(str(raw)), dynamic_batch=True, input_shape=(1, 3, 64, 64))
    assert "error" not in info, info
    sim = tmp_path / "sim.onnx"
    onnx.save(simplified, str(sim))
    counts = []
    for p in (raw, sim):
        r = runner.invoke(app, ["inspect", str(p), "--json"])
        assert r.exit_code == 0, r.output
        counts.append(len(json.loads(r.output)["se_blocks"]))
    assert counts == [8, 8]
    assert Path(raw).stat().st_size > 0
