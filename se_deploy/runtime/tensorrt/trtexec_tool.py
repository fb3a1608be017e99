"""NVIDIA's ``trtexec`` as a tool: finding it, asking its version, running it, reading what it writes.

Every JetPack installs trtexec (``/usr/src/tensorrt/bin/trtexec``, package ``libnvinfer-bin``),
also where the TensorRT Python bindings cannot be imported (a venv without
``--system-site-packages``). se-deploy uses it to build plans (``build-engine``) and to time
them (``bench --backend trtexec``). No TensorRT import happens here.

Formats, as trtexec writes them (``samples/common/sampleReporting.cpp``, ``logging.h``; the
same on 8.6, 10.3, 10.13 and 11.1; real files are the test fixtures in tests/engines/trtexec/):

* the first line of every run: ``&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # <command>``
  (10.4+ append ``[b<build>]``); the digits are ``NV_TENSORRT_VERSION``: major*1000 +
  minor*100 + patch on 8.x, major*10000 + minor*100 + patch from 10.0; the last line is
  ``&&&& PASSED ...`` or ``&&&& FAILED ...``;
* log lines ``[MM/DD/YYYY-HH:MM:SS] [I] text`` with severities F E W I V; the device block
  ``Selected Device: Orin`` / ``Compute Capability: 8.7`` and ``TensorRT version: 10.3.0``;
* ``--exportTimes``: a JSON array, one object per timed iteration, with ``h2dMs``, ``computeMs``,
  ``d2hMs`` and ``latencyMs`` (their sum) among its keys;
* ``--exportProfile``: a JSON array, ``{"count": N}`` first, then one object per layer with
  ``name``, ``timeMs`` (total), ``averageMs``, ``medianMs`` (8.6+) and ``percentage``;
* ``--exportLayerInfo``: the engine inspector's JSON (read by
  :func:`se_deploy.engines.tensorrt.inspector.parse_engine_information`).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from se_deploy.errors import EngineError, InputError, UsageError

#: Where JetPack (and NVIDIA's x86 packages) install trtexec; it is not on PATH there.
DEFAULT_LOCATIONS = ("/usr/src/tensorrt/bin/trtexec",)

_BANNER = re.compile(r"&&&& (RUNNING|PASSED|FAILED) TensorRT\.trtexec \[TensorRT v(\d+)\]")
_LOG = re.compile(r"^\[\d\d/\d\d/\d{4}-\d\d:\d\d:\d\d\] \[([FEWIV])\] ?(.*)$")
TIMES_KEYS = ("h2dMs", "computeMs", "d2hMs", "latencyMs")


def find_trtexec(explicit: str | os.PathLike | None = None, *, which: Callable[[str], str | None] = shutil.which,
                 locations: Sequence[str] = DEFAULT_LOCATIONS) -> str | None:
    """The trtexec to use: ``explicit`` (``--trtexec PATH``, which must exist), else ``trtexec`` on PATH,
    else JetPack's install location; None when there is none."""
    if explicit is not None:
        p = Path(explicit)
        if not p.is_file() or not os.access(p, os.X_OK):
            raise UsageError(f"--trtexec {p}: not an executable file")
        return str(p)
    found = which("trtexec")
    if found:
        return found
    for loc in locations:
        if os.path.isfile(loc) and os.access(loc, os.X_OK):
            return loc
    return None


@dataclass(frozen=True)
class TrtexecVersion:
    """The TensorRT release a trtexec binary belongs to (from its banner digits)."""

    digits: int  # NV_TENSORRT_VERSION, e.g. 100300 or 8602

    @property
    def parts(self) -> tuple[int, int, int]:
        d = self.digits
        if d >= 10000:  # 10.x and later: major*10000 + minor*100 + patch
            return d // 10000, d // 100 % 100, d % 100
        return d // 1000, d // 100 % 10, d % 100  # 8.x: major*1000 + minor*100 + patch

    @property
    def major(self) -> int:
        return self.parts[0]

    def __str__(self) -> str:
        return ".".join(map(str, self.parts))


def parse_banner(text: str) -> TrtexecVersion | None:
    """The version in the first ``&&&& RUNNING TensorRT.trtexec [TensorRT vNNNN]`` line of ``text``."""
    m = _BANNER.search(text)
    return TrtexecVersion(int(m.group(2))) if m else None


def log_messages(text: str, severities: str = "FE") -> list[str]:
    """The text of the log lines with the given severities (``F`` fatal, ``E`` error, ``W`` warning...)."""
    out = []
    for line in text.splitlines():
        m = _LOG.match(line.rstrip())
        if m and m.group(1) in severities:
            out.append(m.group(2).strip())
    return out


def parse_device_info(text: str) -> dict:
    """GPU name, compute capability and TensorRT version from a run's ``=== Device Information ===`` block."""
    out: dict = {}
    for key, pattern in (("gpu_name", r"\] Selected Device: (.+)$"),
                         ("compute_capability", r"\] Compute Capability: (\d+\.\d+)\s*$"),
                         ("tensorrt_version", r"\] TensorRT version: ([\d.]+)\s*$")):
        m = re.search(pattern, text, re.M)
        if m:
            out[key] = m.group(1).strip()
    return out


def run_trtexec(argv: Sequence[str], *, timeout: float | None = None, log: Callable[[str], None] | None = None,
                what: str = "trtexec") -> str:
    """Run trtexec; return its output (stdout and stderr together). A non-zero exit, a ``&&&& FAILED``
    banner or a timeout raises one EngineError line quoting trtexec's last error message."""
    try:
        proc = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace", timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise UsageError(f"trtexec not found: {argv[0]}") from None
    except PermissionError:
        raise UsageError(f"trtexec is not executable: {argv[0]}") from None
    except subprocess.TimeoutExpired:
        raise EngineError(f"{what} did not finish within {timeout:.0f} s") from None
    out = proc.stdout or ""
    if log is not None:
        for line in log_messages(out, "W"):
            log(f"trtexec: {line}")
    if proc.returncode != 0 or re.search(r"^&&&& FAILED", out, re.M):
        errors = log_messages(out)
        last = errors[-1] if errors else (out.strip().splitlines() or ["no output"])[-1]
        raise EngineError(f"{what} failed (exit code {proc.returncode}): {last[:300]}")
    return out


def probe_version(trtexec: str, *, timeout: float = 60.0) -> TrtexecVersion:
    """Ask ``trtexec --help`` for its banner, which names the TensorRT version."""
    try:
        proc = subprocess.run([trtexec, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace", timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise EngineError(f"cannot run {trtexec} --help to learn its TensorRT version: {type(e).__name__}") from None
    version = parse_banner(proc.stdout or "")
    if version is None:
        raise EngineError(f"{trtexec} --help printed no '&&&& RUNNING TensorRT.trtexec [TensorRT vN]' banner: "
                          "is it NVIDIA's trtexec?")
    return version


# --------------------------------------------------------------------------- JSON exports
def _load_json(path: str | os.PathLike, what: str):
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"trtexec wrote no {what} file {p}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{p} is not trtexec {what} JSON: {e}") from None


def _number(v, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise InputError(f"{where}: expected a number, got {v!r}")
    return float(v)


def read_export_times(path: str | os.PathLike) -> dict[str, list[float]]:
    """``--exportTimes``: per timed iteration, ``{"h2dMs": [...], "computeMs": [...], "d2hMs": [...],
    "latencyMs": [...]}`` in iteration order."""
    data = _load_json(path, "--exportTimes")
    if not isinstance(data, list) or not data:
        raise InputError(f"{path}: --exportTimes JSON must be a non-empty array of iterations")
    out: dict[str, list[float]] = {k: [] for k in TIMES_KEYS}
    for i, it in enumerate(data):
        if not isinstance(it, dict):
            raise InputError(f"{path}: iteration {i} is not an object")
        for k in TIMES_KEYS:
            if k not in it:
                raise InputError(f"{path}: iteration {i} has no {k!r}")
            out[k].append(_number(it[k], f"{path}: iteration {i} {k}"))
    return out


@dataclass(frozen=True)
class LayerTime:
    name: str
    total_ms: float
    average_ms: float
    median_ms: float | None
    percentage: float


def read_export_profile(path: str | os.PathLike) -> tuple[int, list[LayerTime]]:
    """``--exportProfile``: (profiled iterations, per-layer times in engine order)."""
    data = _load_json(path, "--exportProfile")
    if not isinstance(data, list) or not data or not isinstance(data[0], dict) or "count" not in data[0]:
        raise InputError(f"{path}: --exportProfile JSON must be an array starting with {{\"count\": N}}")
    count = int(_number(data[0]["count"], f"{path}: count"))
    layers = []
    for i, e in enumerate(data[1:], start=1):
        if not isinstance(e, dict) or "name" not in e:
            raise InputError(f"{path}: entry {i} is not a layer object")
        where = f"{path}: layer {e.get('name')!r}"
        median = e.get("medianMs")
        layers.append(LayerTime(str(e["name"]), _number(e.get("timeMs"), where), _number(e.get("averageMs"), where),
                                _number(median, where) if median is not None else None,
                                _number(e.get("percentage"), where)))
    return count, layers


def read_export_layer_info(path: str | os.PathLike) -> dict:
    """``--exportLayerInfo``: the engine inspector JSON object (``Layers`` plus ``Bindings`` or ``I/O Tensors``)."""
    data = _load_json(path, "--exportLayerInfo")
    if not isinstance(data, dict) or not isinstance(data.get("Layers"), list):
        raise InputError(f"{path}: --exportLayerInfo JSON must be an object with a \"Layers\" list")
    return data


__all__ = ["DEFAULT_LOCATIONS", "LayerTime", "TrtexecVersion", "find_trtexec", "log_messages", "parse_banner",
           "parse_device_info", "probe_version", "read_export_layer_info", "read_export_profile",
           "read_export_times", "run_trtexec"]
