"""Inputs are never modified: every command declares its files, and no output may be the same file as an input.

One table of example invocations covers every writing command; a test fails when a command is
registered without a declaration, or when its declaration and this table disagree. The property
test sets each output of each command to each of its inputs (spelled as the same path, through
``./`` and ``sub/..``, a symlink or a hard link) and checks the one-line refusal and that every input
byte is unchanged. The check runs before any work, so no case here runs an export or a benchmark.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from se_deploy.cli import app
from se_deploy.commands._options import file_declaration

runner = CliRunner()

#: Every writing command, as an invocation with one placeholder per declared file parameter, and the file
#: each input placeholder starts as (outputs start as fresh names).
COMMANDS: dict[str, dict] = {
    "export": dict(argv=["export", "{model}", "-o", "{output}", "--weights", "{weights}", "--input-shape", "1x3x8x8"],
                   inputs={"model": "ckpt.pt", "weights": "w.pt"}),
    "fuse": dict(argv=["fuse", "{model_path}", "-o", "{output}", "--report", "{report}", "--fold-gates",
                       "--calib-data", "{calib_data}"],
                 inputs={"model_path": "m.onnx", "calib_data": "c.npz"}),
    "quantize": dict(argv=["quantize", "{model}", "--int8", "--calib-data", "{calib_data}", "--eval-data",
                           "{eval_data}", "-o", "{output}", "--write-trt-cache", "{write_trt_cache}",
                           "--save-calib", "{save_calib}"],
                     inputs={"model": "m.onnx", "calib_data": "c.npz", "eval_data": "e.npz"}),
    "compare": dict(argv=["compare", "{reference}", "{candidates}", "--data", "{source}", "--json", "{json_out}"],
                    inputs={"reference": "m.onnx", "candidates": "q.onnx", "source": "e.npz"}),
    "calibrate": dict(argv=["calibrate", "{model}", "--calib-data", "{source}", "-o", "{output}"],
                      inputs={"model": "m.onnx", "source": "c.npz"}),
    "build-engine": dict(argv=["build-engine", "{onnx}", "--int8", "--calibrator", "entropy", "--calib-data",
                               "{calib_data}", "-o", "{output}", "--calib-cache", "{calib_cache}", "--timing-cache",
                               "{timing_cache}", "--trt-version", "10", "--print-trtexec"],
                         inputs={"onnx": "m.onnx", "calib_data": "c.npz"}),
    "bench": dict(argv=["bench", "{target}", "--baseline", "{baseline}", "-o", "{output}", "--html", "{html}"],
                  inputs={"target": "m.onnx", "baseline": "q.onnx"}),
    "report": dict(argv=["report", "render", "{files}", "-o", "{output}"], inputs={"files": "results.json"}),
}
#: Writing commands whose only outputs are derived from their options; they have cases of their own below.
DERIVED_ONLY = {"pipeline", "train-demo", "se-budget"}

SMALL_PIPELINE = '[run]\nname = "t"\n[model]\nse = "se_resnet18"\ninput_shape = [1, 3, 16, 16]\n'


def _registered() -> dict:
    return {c.name: file_declaration(c.callback) for c in app.registered_commands}


def test_every_command_declares_its_files():
    """A command added without @files fails here, so the same-file check can never be forgotten."""
    decls = _registered()
    assert len(decls) >= 13
    missing = sorted(name for name, d in decls.items() if d is None)
    assert not missing, f"commands without a @files declaration: {missing}"
    writing = {name for name, d in decls.items() if d.writes}
    assert writing == set(COMMANDS) | DERIVED_ONLY, "add the new writing command to COMMANDS in this test"
    for name, spec in COMMANDS.items():
        d = decls[name]
        assert set(spec["inputs"]) == set(d.inputs), name
        placeholders = {a[1:-1] for a in spec["argv"] if a.startswith("{")}
        assert placeholders == set(d.inputs) | set(d.outputs), name


def _tiny_onnx(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 1, 1], np.ones(12, np.float32).tolist())
    graph = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["y"]),
                               helper.make_node("GlobalAveragePool", ["y"], ["output"])], "tiny",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 1, 1])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    Path(str(path) + ".json").write_text('{"artifact": "onnx"}\n')


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    import torch

    from tests.report.conftest import build_results

    d = tmp_path_factory.mktemp("inputs")
    _tiny_onnx(d / "m.onnx")
    _tiny_onnx(d / "q.onnx")
    rng = np.random.default_rng(0)
    np.savez(d / "c.npz", input=rng.standard_normal((64, 3, 8, 8)).astype(np.float32))
    np.savez(d / "e.npz", input=rng.standard_normal((16, 3, 8, 8)).astype(np.float32), labels=np.arange(16) % 4)
    torch.save({"arch": "se_resnet18", "state_dict": {"x": torch.zeros(2)}}, d / "ckpt.pt")
    torch.save({"state_dict": {"x": torch.zeros(2)}}, d / "w.pt")
    (d / "results.json").write_text(json.dumps(build_results().to_dict()))
    (d / "sub").mkdir()
    return d


def _fingerprint(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir()) if p.is_file()}


def _cases() -> list[tuple[str, str, str]]:
    """(command, output parameter, target): each input, and each input's sidecar."""
    out = []
    for name, spec in COMMANDS.items():
        outputs = [a[1:-1] for a in spec["argv"] if a.startswith("{") and a[1:-1] not in spec["inputs"]]
        for o in outputs:
            for param, file in spec["inputs"].items():
                out.append((name, o, file))
                if file.endswith(".onnx"):
                    out.append((name, o, file + ".json"))
    return out


def _argv(spec: dict, d: Path, scratch: Path, values: dict[str, str]) -> list[str]:
    full = {p: str(d / f) for p, f in spec["inputs"].items()}
    for a in spec["argv"]:
        if a.startswith("{") and a[1:-1] not in full:
            full[a[1:-1]] = str(scratch / f"{a[1:-1]}.out")
    full.update(values)
    return [a.format(**full) if a.startswith("{") else a for a in spec["argv"]]


def _spell(target: Path, how: str, dots: list[str], scratch: Path) -> str:
    """Another name for the same file: the path itself (with ./ and sub/.. inserted), a symlink, a hard link."""
    if how == "symlink":
        link = scratch / ("link-" + target.name)
        link.symlink_to(target)
        return str(link)
    if how == "hardlink":
        link = scratch / ("hard-" + target.name)
        os.link(target, link)
        return str(link)
    return str(target.parent / "".join(dots) / target.name) if dots else str(target)


def _refused(result, *needles: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    for n in needles:
        assert n in errors[0], (n, errors[0])
    return errors[0]


@pytest.mark.parametrize("command,output,target", _cases())
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(how=st.sampled_from(["path", "symlink", "hardlink"]),
       dots=st.lists(st.sampled_from(["./", "sub/../"]), max_size=2))
def test_no_output_can_be_an_input(inputs, command, output, target, how, dots):
    before = _fingerprint(inputs)
    scratch = Path(tempfile.mkdtemp(dir=inputs.parent))
    try:
        alias = _spell(inputs / target, how, dots, scratch)
        r = runner.invoke(app, _argv(COMMANDS[command], inputs, scratch, {output: alias}))
        _refused(r, "is the same file as", "never overwrites an input")
        assert _fingerprint(inputs) == before
        assert sorted(p.name for p in scratch.iterdir()) == ([] if how == "path" else [Path(alias).name])
    finally:
        shutil.rmtree(scratch)


def _output_pairs() -> list[tuple[str, str, str]]:
    out = []
    for name, spec in COMMANDS.items():
        outputs = [a[1:-1] for a in spec["argv"] if a.startswith("{") and a[1:-1] not in spec["inputs"]]
        out += [(name, a, b) for i, a in enumerate(outputs) for b in outputs[i + 1:]]
    return out


@pytest.mark.parametrize("command,first,second", _output_pairs())
def test_two_outputs_cannot_be_one_file(inputs, tmp_path, command, first, second):
    before = _fingerprint(inputs)
    same = str(tmp_path / "same.out")
    r = runner.invoke(app, _argv(COMMANDS[command], inputs, tmp_path, {first: same, second: same}))
    _refused(r, "are the same file; give each output its own path")
    assert _fingerprint(inputs) == before and list(tmp_path.iterdir()) == []


def test_an_output_over_an_outputs_sidecar_is_refused(inputs, tmp_path):
    r = runner.invoke(app, ["fuse", str(inputs / "m.onnx"), "-o", str(tmp_path / "f.onnx"),
                            "--report", str(tmp_path / "f.onnx.json")])
    _refused(r, "--report", "the sidecar of --output", "are the same file")


@pytest.mark.parametrize("inside", ["pipeline.json", "results.json", "se/model.onnx", "calib.npz.json"])
def test_a_pipeline_config_inside_its_run_directory_is_never_overwritten(tmp_path, inside):
    cfg = tmp_path / "run" / inside
    cfg.parent.mkdir(parents=True)
    cfg.write_text(SMALL_PIPELINE)
    r = runner.invoke(app, ["pipeline", "--config", str(cfg), "--out", str(tmp_path / "run")])
    _refused(r, "is the same file as the input --config")
    assert cfg.read_text() == SMALL_PIPELINE
    shown = runner.invoke(app, ["pipeline", "--config", str(cfg), "--out", str(tmp_path / "run"), "--show-config"])
    assert shown.exit_code == 0 and 'se = "se_resnet18"' in shown.output  # --show-config writes nothing


def test_pipeline_data_inside_its_run_directory_is_never_overwritten(inputs, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(inputs / "c.npz", run / "calib.npz")  # e.g. the calibration set of an earlier run
    before = (run / "calib.npz").read_bytes()
    cfg = tmp_path / "p.toml"
    cfg.write_text(SMALL_PIPELINE + f'[calibration]\nsource = "{run / "calib.npz"}"\n')
    r = runner.invoke(app, ["pipeline", "--config", str(cfg), "--out", str(run)])
    _refused(r, "the run's file", "is the same file as calibration.source")
    assert (run / "calib.npz").read_bytes() == before


def test_derived_outputs_are_checked_too(inputs, tmp_path):
    # build-engine's default plan is the ONNX's name with .plan: a plan given as the ONNX would be overwritten
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"engine")
    r = runner.invoke(app, ["build-engine", str(plan), "--print-trtexec"])
    _refused(r, "the default plan", "is the same file as the input ONNX")
    assert plan.read_bytes() == b"engine"
    # quantize --keep-rejected writes OUT.rejected.onnx: never over an input
    model = tmp_path / "m.int8.rejected.onnx"
    shutil.copy(inputs / "m.onnx", model)
    before = model.read_bytes()
    r = runner.invoke(app, ["quantize", str(model), "--int8", "--synthetic", "-o", str(tmp_path / "m.int8.onnx"),
                            "--keep-rejected"])
    _refused(r, "the rejected copy", "is the same file as the input MODEL")
    assert model.read_bytes() == before
