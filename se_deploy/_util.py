"""Small shared helpers: atomic writes, hashing, sidecars, shape parsing, lazy imports."""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import importlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterator

from se_deploy import __version__
from se_deploy.errors import InputError, MissingDependencyError, UsageError

SIDECAR_SUFFIX = ".json"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_output_path(path: str | os.PathLike) -> Path:
    """Fail early, with one line, when ``path`` cannot be written."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise InputError(f"output directory does not exist: {parent}")
    if not parent.is_dir():
        raise InputError(f"output directory is not a directory: {parent}")
    if p.is_dir():
        raise InputError(f"output path is a directory: {p}")
    if p.is_file() and not os.stat(p).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        # A rename would replace it (only the folder's permission counts), and root passes os.access.
        raise InputError(f"output {p} is read-only: refusing to replace it (make it writable or choose another path)")
    # Probe by creating a file: os.access() says yes to root even on read-only mounts.
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".probe", dir=parent)
    except OSError as e:
        raise InputError(f"output directory is not writable: {parent} ({e.strerror})") from None
    os.close(fd)
    os.unlink(probe)
    return p


@contextlib.contextmanager
def working_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Run the block with ``path`` as the current directory (``contextlib.chdir`` is Python 3.11+)."""
    before = os.getcwd()
    os.chdir(path)
    try:
        yield Path(path)
    finally:
        os.chdir(before)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only on success.

    An interrupted or failed write (exception, Ctrl-C) removes the temporary file, so a
    half-written artifact never appears under the final name.
    """
    final = check_output_path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix + ".tmp", dir=final.parent or ".")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600; give the artifact the mode a plain open() would (0666 & ~umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "to_dict"):
        return o.to_dict()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    return write_text_atomic(path, dump_json(obj))


def sidecar_path(artifact: str | os.PathLike) -> Path:
    """``model.onnx`` -> ``model.onnx.json``; ``model.plan`` -> ``model.plan.json``."""
    return Path(str(artifact) + SIDECAR_SUFFIX)


def write_sidecar(artifact: str | os.PathLike, data: dict[str, Any]) -> Path:
    payload = {"se_deploy_version": __version__, "created": now_iso(), **data}
    return write_json_atomic(sidecar_path(artifact), payload)


def read_sidecar(artifact: str | os.PathLike) -> dict[str, Any] | None:
    p = sidecar_path(artifact)
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read sidecar {p}: {e}") from None


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def parse_shape(text: str) -> tuple[int, ...]:
    """Parse ``1x3x224x224`` (or ``1,3,224,224``) into a tuple of positive ints."""
    raw = text.strip().lower().replace(",", "x")
    parts = [p for p in raw.split("x")]
    if len(parts) < 2 or any(not p.strip().isdigit() for p in parts):
        raise UsageError(f"malformed shape {text!r}: expected positive integers joined by 'x', e.g. 1x3x224x224")
    dims = tuple(int(p) for p in parts)
    if any(d <= 0 for d in dims):
        raise UsageError(f"malformed shape {text!r}: every dimension must be > 0")
    return dims


def parse_int_list(text: str, what: str = "value") -> list[int]:
    try:
        vals = [int(v) for v in text.replace(" ", "").split(",")]  # "1,,2" is a typo, not [1, 2]
    except ValueError:
        raise UsageError(f"malformed {what} list {text!r}: expected comma-separated integers, e.g. 1,8,32") from None
    if not vals or any(v <= 0 for v in vals):
        raise UsageError(f"malformed {what} list {text!r}: expected positive integers")
    return vals


def lazy_import(module: str, *, install_hint: str, purpose: str = "") -> Any:
    """Import an optional dependency or raise one clear MissingDependencyError."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        what = f" (needed for {purpose})" if purpose else ""
        raise MissingDependencyError(f"{module} is not installed{what}: {install_hint}") from e
    except Exception as e:  # a broken install (e.g. a stub wheel) is reported the same way
        what = f" (needed for {purpose})" if purpose else ""
        raise MissingDependencyError(f"{module} cannot be imported{what} ({type(e).__name__}: {e}): {install_hint}") from e
