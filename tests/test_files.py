"""se_deploy.files: the same-file check, staged artifact writes and the run-directory lock, on their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from se_deploy.errors import BusyError, InputError, UsageError
from se_deploy.files import LOCK_NAME, locked_directory, refuse_clobbering, rejected_path, staged_artifact

ROOT = Path(__file__).resolve().parents[1]


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith("."))


# --------------------------------------------------------------------------- same file


@pytest.fixture
def model(tmp_path) -> Path:
    p = tmp_path / "m.onnx"
    p.write_bytes(b"model")
    (tmp_path / "m.onnx.json").write_text("{}")
    return p


@pytest.mark.parametrize("spelling", ["same", "relative", "dotted", "symlink", "hardlink", "symlink-to-symlink"])
def test_an_output_that_is_an_input_is_refused_however_it_is_spelled(model, tmp_path, monkeypatch, spelling):
    monkeypatch.chdir(tmp_path)
    if spelling == "same":
        out = model
    elif spelling == "relative":
        out = Path("m.onnx")
    elif spelling == "dotted":
        (tmp_path / "sub").mkdir()
        out = Path("sub/../m.onnx")
    elif spelling == "symlink":
        out = tmp_path / "link.onnx"
        out.symlink_to(model)
    elif spelling == "hardlink":
        out = tmp_path / "hard.onnx"
        os.link(model, out)
    else:
        (tmp_path / "a.onnx").symlink_to(model)
        out = tmp_path / "b.onnx"
        out.symlink_to(tmp_path / "a.onnx")
    with pytest.raises(UsageError, match=r"^-o .* is the same file as the input MODEL \(.*m\.onnx\): se-deploy never "
                                         r"overwrites an input"):
        refuse_clobbering({"the input MODEL": model}, {"-o": out})


def test_an_input_sidecar_is_an_input_and_outputs_must_differ(model, tmp_path):
    with pytest.raises(UsageError, match=r"^--report .*m\.onnx\.json is the same file as the sidecar .*m\.onnx\.json "
                                         r"of the input MODEL"):
        refuse_clobbering({"the input MODEL": model}, {"-o": tmp_path / "out.onnx",
                                                       "--report": tmp_path / "m.onnx.json"})
    # two outputs, neither written yet, one spelled through a symlinked folder
    (tmp_path / "d").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "d")
    with pytest.raises(UsageError, match="are the same file; give each output its own path"):
        refuse_clobbering({}, {"-o": tmp_path / "d" / "x.json", "--json": tmp_path / "alias" / "x.json"})


def test_distinct_paths_and_non_file_inputs_pass(model, tmp_path):
    (tmp_path / "images").mkdir()
    refuse_clobbering({"MODEL": "se_resnet18", "--calib-data": tmp_path / "images", "--weights": None,
                       "CANDIDATES": [model, tmp_path / "missing.onnx"]},
                      {"-o": tmp_path / "out.onnx", "the sidecar of -o": tmp_path / "out.onnx.json", "--json": None})


# --------------------------------------------------------------------------- staged artifacts


def _good_output(tmp_path) -> tuple[Path, bytes, bytes]:
    out = tmp_path / "keep.int8.onnx"
    out.write_bytes(b"good model")
    (tmp_path / "keep.int8.onnx.json").write_text('{"status": "accepted"}')
    return out, out.read_bytes(), (tmp_path / "keep.int8.onnx.json").read_bytes()


def test_staged_artifact_publishes_the_artifact_and_its_sidecar_together(tmp_path):
    out, _, _ = _good_output(tmp_path)
    with staged_artifact(out) as st:
        st.path.write_bytes(b"new model")
        st.write_sidecar({"status": "accepted", "n": 2})
        assert not out.read_bytes() == b"new model"  # nothing visible before the block ends
    assert out.read_bytes() == b"new model"
    assert json.loads((tmp_path / "keep.int8.onnx.json").read_text())["n"] == 2
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("failure", [ValueError("check failed"), KeyboardInterrupt()])
def test_a_failed_check_keeps_the_existing_output_and_its_sidecar(tmp_path, failure):
    out, model_bytes, side_bytes = _good_output(tmp_path)
    with pytest.raises(type(failure)):
        with staged_artifact(out) as st:
            st.path.write_bytes(b"invalid 2.9 KB model")
            st.write_sidecar({"status": "rejected"})
            raise failure
    assert out.read_bytes() == model_bytes and (tmp_path / "keep.int8.onnx.json").read_bytes() == side_bytes
    assert _leftovers(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == [
        "keep.int8.onnx", "keep.int8.onnx.json"]


def test_a_rejected_artifact_the_user_keeps_goes_beside_the_good_one(tmp_path):
    out, model_bytes, side_bytes = _good_output(tmp_path)
    with pytest.raises(ValueError):
        with staged_artifact(out) as st:
            st.path.write_bytes(b"rejected model")
            st.write_sidecar({"status": "rejected"})
            assert st.keep_rejected() == tmp_path / "keep.int8.rejected.onnx"
            raise ValueError("over budget")
    assert out.read_bytes() == model_bytes and (tmp_path / "keep.int8.onnx.json").read_bytes() == side_bytes
    assert (tmp_path / "keep.int8.rejected.onnx").read_bytes() == b"rejected model"
    assert json.loads((tmp_path / "keep.int8.rejected.onnx.json").read_text())["status"] == "rejected"
    assert _leftovers(tmp_path) == []
    assert rejected_path("a/m.plan") == Path("a/m.rejected.plan") and rejected_path("x") == Path("x.rejected")


def test_an_artifact_without_a_new_sidecar_drops_the_stale_one(tmp_path):
    out, _, _ = _good_output(tmp_path)
    with staged_artifact(out) as st:
        st.path.write_bytes(b"plain twin")
    assert out.read_bytes() == b"plain twin" and not (tmp_path / "keep.int8.onnx.json").exists()


def test_a_read_only_output_is_refused_not_replaced(tmp_path):
    out, model_bytes, _ = _good_output(tmp_path)
    out.chmod(0o444)
    try:
        with pytest.raises(InputError, match=r"^output .*keep\.int8\.onnx is read-only: refusing to replace it"):
            with staged_artifact(out) as st:
                st.path.write_bytes(b"x")
        assert out.read_bytes() == model_bytes and _leftovers(tmp_path) == []
    finally:
        out.chmod(0o644)


# --------------------------------------------------------------------------- the run-directory lock

HOLD = textwrap.dedent("""
    import sys, time
    from se_deploy.files import locked_directory
    with locked_directory(sys.argv[1]):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
        print(time.monotonic(), flush=True)  # CLOCK_MONOTONIC: one clock for every process
""")


def _holder(d: Path, seconds: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(d), str(seconds)], stdout=subprocess.PIPE, text=True,
                         env=env)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_second_run_is_refused_at_once_naming_the_holder_or_waits(tmp_path):
    d = tmp_path / "run"
    p = _holder(d, 3.0)
    try:
        with pytest.raises(BusyError, match=rf"^run directory {d} is in use by another se-deploy run \(pid {p.pid} on "
                                            r".+, started .+: .+\); wait for it, rerun with --wait"):
            with locked_directory(d, what="run directory"):
                pass
        # refused while the holder still holds the directory: it did not wait for the holder to finish
        assert p.poll() is None and BusyError.exit_code == 75
        said = []
        with locked_directory(d, wait=True, on_wait=said.append):  # blocks until the holder is done
            acquired = time.monotonic()
        assert acquired >= float(p.stdout.readline()) and said and f"pid {p.pid}" in said[0]
    finally:
        p.kill()
        p.wait()


def test_a_lock_dies_with_its_process_and_every_exit_releases_it(tmp_path):
    d = tmp_path / "run"
    p = _holder(d, 60.0)
    p.kill()  # SIGKILL: no cleanup runs; the lock file and the holder details stay behind
    p.wait()
    assert (d / LOCK_NAME).exists()
    with locked_directory(d):  # the kernel released the lock with the process
        pass
    with pytest.raises(RuntimeError):
        with locked_directory(d):
            raise RuntimeError("stage failed")
    with locked_directory(d):  # released on the error path too
        pass


def test_a_run_directory_that_cannot_be_one_is_one_line(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InputError, match=r"^run directory .*file exists and is not a directory$"):
        with locked_directory(f, what="run directory"):
            pass
    with pytest.raises(InputError, match=r"^cannot create run directory .*file/sub: Not a directory$"):
        with locked_directory(f / "sub", what="run directory"):
            pass
