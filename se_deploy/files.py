"""The promises se-deploy keeps about the files it touches (README, "Errors"), one mechanism each.

* **Inputs are never modified.** :func:`refuse_clobbering` rejects, before any work, an output
  that is the same file as an input (same path, a symlink to it, a hard link to it; an input's
  sidecar counts as an input) or as another output.
* **An output appears only when complete and checked.** :func:`staged_artifact` writes an
  artifact and its sidecar in a staging folder beside the target and moves them into place only
  after every check on them passed; on any failure (an error, Ctrl-C, SIGTERM) the staging folder
  is removed and an existing output and its sidecar stay as they were. A rejected artifact the
  user asked to keep goes to a name of its own (:func:`rejected_path`), never over the good one.
* **One run per output directory at a time.** :func:`locked_directory` holds an exclusive
  ``filelock`` lock on the directory for the whole run; a second run refuses at once, naming the
  holder, or waits. The lock is the kernel's (``flock``): it dies with its process, so a crashed
  run never blocks the next one.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Union

import filelock

from se_deploy._util import check_output_path, dump_json, sidecar_path, write_sidecar
from se_deploy.errors import BusyError, InputError, InternalError, UsageError

PathLike = Union[str, os.PathLike]
Paths = Union[PathLike, Iterable[PathLike], None]

LOCK_NAME = ".se-deploy.lock"
HOLDER_SUFFIX = ".holder.json"


# --------------------------------------------------------------------------- inputs are never modified


def _as_list(value: Paths) -> list[Path]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [Path(value)]
    return [Path(v) for v in value if v is not None]


def _identity(path: Path) -> tuple:
    """What makes two names the same file: (device, inode) for an existing file, so symlinks and hard
    links match; the fully resolved path for a file not written yet."""
    try:
        st = os.stat(path)
    except OSError:
        return ("path", os.path.realpath(path))
    return ("inode", st.st_dev, st.st_ino)


@dataclass
class _Named:
    label: str  # how the user named it: "-o m.onnx", "the input MODEL (m.onnx)"
    path: Path
    identity: tuple = field(init=False)

    def __post_init__(self) -> None:
        self.identity = _identity(self.path)


def _input_files(inputs: Mapping[str, Paths]) -> list[_Named]:
    out = []
    for label, value in inputs.items():
        for p in _as_list(value):
            if p.is_file():
                out.append(_Named(f"{label} ({p})", p))
                side = sidecar_path(p)
                if side.is_file():
                    out.append(_Named(f"the sidecar {side} of {label}", side))
    return out


def refuse_clobbering(inputs: Mapping[str, Paths], outputs: Mapping[str, Paths]) -> None:
    """Raise one-line :class:`UsageError` (exit 2) when an output is the same file as an input or as
    another output.

    ``inputs`` and ``outputs`` map how the user named a path (``"MODEL"``, ``"-o"``) to one path, several,
    or None. Names that are not files (a zoo model name, an image folder) are not inputs here. Include
    an artifact's sidecar among the outputs when the writer writes one.
    """
    ins = _input_files(inputs)
    seen: list[_Named] = []
    for label, value in outputs.items():
        for p in _as_list(value):
            out = _Named(f"{label} {p}", p)
            for i in ins:
                if out.identity == i.identity:
                    raise UsageError(f"{out.label} is the same file as {i.label}: se-deploy never overwrites an "
                                     "input; choose another output path")
            for o in seen:
                if out.identity == o.identity:
                    raise UsageError(f"{out.label} and {o.label} are the same file; give each output its own path")
            seen.append(out)


# --------------------------------------------------------------------------- outputs appear only when complete


def rejected_path(path: PathLike) -> Path:
    """Where a rejected artifact goes when the user asks to keep it: ``m.int8.onnx`` -> ``m.int8.rejected.onnx``."""
    p = Path(path)
    return p.with_name(f"{p.stem}.rejected{p.suffix}") if p.suffix else p.with_name(p.name + ".rejected")


class StagedArtifact:
    """An artifact being written: :attr:`path` and :attr:`sidecar` are temporary names in a staging folder
    beside :attr:`final`; writers write there and checks read from there."""

    def __init__(self, final: Path, staging: Path) -> None:
        self.final = final
        self.staging = staging
        self.path = staging / final.name
        self.sidecar = sidecar_path(self.path)
        self.rejected_target: Path | None = None

    def write_sidecar(self, data: dict[str, Any]) -> Path:
        return write_sidecar(self.path, data)

    def keep_rejected(self, target: PathLike | None = None) -> Path:
        """On the failure that follows, publish the artifact (and its sidecar) as ``target`` (default
        :func:`rejected_path`) instead of discarding it. The good output, if any, stays untouched."""
        self.rejected_target = check_output_path(target or rejected_path(self.final))
        return self.rejected_target


def _publish(st: StagedArtifact, target: Path) -> None:
    if not st.path.is_file():
        raise InternalError(f"nothing was written for {st.final}")
    old_side = sidecar_path(target)
    # Companions (an ONNX model's external weights) first, the artifact next, its sidecar last. An old
    # sidecar goes before the artifact is replaced: it describes the file being replaced, never the new one.
    for f in sorted(st.staging.iterdir()):
        if f not in (st.path, st.sidecar):
            os.replace(f, target.parent / (target.name + f.name[len(st.final.name):]
                                           if f.name.startswith(st.final.name) else f.name))
    if old_side.is_file() or old_side.is_symlink():
        old_side.unlink()
    os.replace(st.path, target)
    if st.sidecar.is_file():
        os.replace(st.sidecar, old_side)


@contextlib.contextmanager
def staged_artifact(path: PathLike) -> Iterator[StagedArtifact]:
    """Write an artifact and its sidecar under temporary names; move both into place when the block ends
    without error.

    Checks (structure, onnxruntime load, accuracy budget) belong inside the block, reading
    :attr:`StagedArtifact.path`. On any exception, including KeyboardInterrupt, both temporaries are
    removed and an existing ``path`` and its sidecar are left as they were; when
    :meth:`StagedArtifact.keep_rejected` was called, the artifact is published under the rejected name
    first, then the exception goes on.
    """
    final = check_output_path(path)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".staging", dir=final.parent))
    st = StagedArtifact(final, staging)
    try:
        yield st
    except BaseException:
        try:
            if st.rejected_target is not None and st.path.is_file():
                _publish(st, st.rejected_target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        _publish(st, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --------------------------------------------------------------------------- one run per directory


def _holder_path(lock: Path) -> Path:
    return lock.with_name(lock.name + HOLDER_SUFFIX)


def _describe_holder(lock: Path) -> str:
    try:
        h = json.loads(_holder_path(lock).read_text())
        return (f"pid {h.get('pid')} on {h.get('host')}, started {h.get('started')}: "
                f"{h.get('command')}")
    except (OSError, ValueError, AttributeError):
        return "a process that has not written its details yet"


def prepare_directory(path: PathLike, what: str = "output directory") -> Path:
    """Create ``path`` (and its parents) or say in one line why it cannot be: a file in the way, no permission."""
    d = Path(path)
    if d.exists() and not d.is_dir():
        raise InputError(f"{what} {d} exists and is not a directory")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create {what} {d}: {e.strerror or e}") from None
    return d


@contextlib.contextmanager
def locked_directory(path: PathLike, *, wait: bool = False, what: str = "output directory",
                     on_wait: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold an exclusive lock on directory ``path`` (created when missing) for the block.

    Another holder makes this raise :class:`BusyError` naming it (pid, host, command, start time), or,
    with ``wait``, block until it is done (``on_wait`` is told who is being waited for). The lock is an
    OS lock on ``<path>/.se-deploy.lock``: released on every exit path, and by the kernel when the
    holding process dies, so a stale lock file never blocks.
    """
    d = prepare_directory(path, what)
    lock_file = d / LOCK_NAME
    try:
        lock = filelock.FileLock(str(lock_file), timeout=-1 if wait else 0)
    except OSError as e:  # pragma: no cover - filelock defers opening to acquire()
        raise InputError(f"cannot lock {what} {d}: {e}") from None
    try:
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            holder = _describe_holder(lock_file)
            if not wait:
                raise BusyError(f"{what} {d} is in use by another se-deploy run ({holder}); wait for it, rerun "
                                "with --wait, or choose another --out") from None
            if on_wait is not None:
                on_wait(f"waiting for {what} {d}, in use by {holder}")
            lock.acquire()
    except OSError as e:
        raise InputError(f"cannot lock {what} {d}: {e.strerror or e}") from None
    try:
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv),
                  "started": _dt.datetime.now().astimezone().replace(microsecond=0).isoformat()}
        with contextlib.suppress(OSError):
            _holder_path(lock_file).write_text(dump_json(holder))
        yield d
    finally:
        with contextlib.suppress(OSError):
            _holder_path(lock_file).unlink()
        lock.release()


__all__ = ["LOCK_NAME", "StagedArtifact", "locked_directory", "prepare_directory", "refuse_clobbering",
           "rejected_path", "staged_artifact"]
