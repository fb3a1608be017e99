"""TensorRT INT8 calibration cache: TensorRT's own text format, read and written.

The TensorRT <= 10 implicit-calibration path (``config.int8_calibrator``'s
``read_calibration_cache``) and ``trtexec --int8 --calib=FILE`` read this file::

    TRT-100300-EntropyCalibration2
    input: 3c010204
    /layer1/conv/Conv_output_0: 3d4ccccd

One header line ``TRT-<version digits>-<algorithm>``, then one ``tensor: scale`` line per
tensor, the scale as the big-endian IEEE-754 float32 bit pattern in hex, with
``scale = amax / 127``. onnxruntime's ``write_calibration_table`` writes a different format,
and nothing in the maintained libraries reads or writes this one, so it is done here.

Reading takes the file as TensorRT writes it (checked against caches TensorRT 8.6 and
10.9-10.13 wrote, in tests/calibration/fixtures/): hex without leading zeros (``366: 0``),
tensor names with spaces, brackets and colons (``(Unnamed Layer* 82) [Shuffle]_output``,
``input_1:0``), so a line splits on its *last* ``": "``; ``7f800000`` (+inf) for tensors whose
range TensorRT could not bound. Version digits are NV_TENSORRT_VERSION: major*1000 +
minor*100 + patch up to 8.x (``8601``), major*10000 + minor*100 + patch from 10.0
(``100300``). Writing pads every value to 8 hex digits, which TensorRT and NVIDIA ModelOpt's
cache reader both accept (ModelOpt's rejects unpadded values).

Tensor names are the ONNX tensor names of the graph TensorRT parses, so the ranges must be
collected on that same (float) ONNX file: :func:`collect_amax` does that with onnxruntime's
calibrators.

The header's algorithm must match the calibrator that reads the cache: trtexec's own
calibrator is EntropyCalibration2, so that is the default whatever method collected the
ranges (the method is recorded in the sidecar).
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from se_deploy._util import write_text_atomic
from se_deploy.calibration.ranges import amax_of, calibration_batch, collect_ranges
from se_deploy.errors import CalibrationError, InputError, UsageError
from se_deploy.onnx_io import load_onnx, model_input

ALGORITHMS = ("EntropyCalibration2", "EntropyCalibration", "MinMaxCalibration", "LegacyCalibration")
INT8_MAX = 127.0
DEFAULT_TRT_VERSION = "10.3.0"  # JetPack 6.1/6.2
_HEADER = re.compile(r"^TRT-(\d+)-([A-Za-z0-9]+)$")
_HEX = re.compile(r"^[0-9a-fA-F]{1,8}$")
_SEP = ": "


def trt_version_digits(version: str | int) -> str:
    """``"10.3.0"`` -> ``"100300"``, ``"8.6.1"`` -> ``"8601"`` (NV_TENSORRT_VERSION); digits pass through.

    TensorRT 10 encodes major*10000 + minor*100 + patch; TensorRT 8 encoded
    major*1000 + minor*100 + patch. A cache whose header names another version is ignored
    by TensorRT, so the header must match the TensorRT that reads it.
    """
    text = str(version).strip()
    if text.isdigit():
        return text
    parts = text.split(".")
    if not 2 <= len(parts) <= 4 or not all(p.isdigit() for p in parts):
        raise UsageError(f"malformed TensorRT version {version!r}: expected e.g. 10.3.0 or 8.6.1")
    major, minor = int(parts[0]), int(parts[1])
    patch = int(parts[2]) if len(parts) > 2 else 0
    if major >= 10:
        return str(major * 10000 + minor * 100 + patch)
    return str(major * 1000 + minor * 100 + patch)


def scale_to_hex(scale: float) -> str:
    return struct.pack(">f", scale).hex()


def hex_to_scale(text: str) -> float:
    """Big-endian float32 bits in 1-8 hex digits (TensorRT drops leading zeros: ``0`` is 0.0)."""
    return struct.unpack(">f", bytes.fromhex(text.rjust(8, "0")))[0]


def version_of_digits(digits: str) -> tuple[int, int, int]:
    """``"100300"`` -> (10, 3, 0), ``"8601"`` -> (8, 6, 1): NV_TENSORRT_VERSION back to major.minor.patch."""
    d = int(digits)
    if d >= 100000:  # TensorRT 10 and later: major*10000 + minor*100 + patch
        return d // 10000, d // 100 % 100, d % 100
    return d // 1000, d // 100 % 10, d % 100  # up to 8.x: major*1000 + minor*100 + patch


def write_calibration_cache(path: str | Path, scales_or_amax: dict[str, float], *,
                            algorithm: str = "EntropyCalibration2", trt_version: str = DEFAULT_TRT_VERSION,
                            values: str = "amax") -> Path:
    """Write a TensorRT calibration cache.

    ``values="amax"`` (the default) takes each tensor's absolute maximum and writes
    ``amax / 127``; ``values="scale"`` writes the given scales unchanged.
    """
    if algorithm not in ALGORITHMS:
        raise UsageError(f"unknown calibration algorithm {algorithm!r}; choose one of {list(ALGORITHMS)}")
    if values not in ("amax", "scale"):
        raise UsageError(f"values must be 'amax' or 'scale', got {values!r}")
    if not scales_or_amax:
        raise CalibrationError("no tensor ranges to write into the calibration cache")
    lines = [f"TRT-{trt_version_digits(trt_version)}-{algorithm}"]
    for name, v in scales_or_amax.items():
        if not name or "\n" in name:
            raise CalibrationError(f"tensor name {name!r} cannot be written into a calibration cache")
        v = float(v)
        if not math.isfinite(v) or v < 0:
            raise CalibrationError(f"tensor {name!r} has an invalid range {v}")
        scale = v / INT8_MAX if values == "amax" else v
        lines.append(f"{name}: {scale_to_hex(scale)}")
    return write_text_atomic(path, "\n".join(lines) + "\n")


@dataclass(frozen=True)
class TrtCache:
    """A calibration cache as read: header parts, and the scale of every tensor line in file order."""

    path: str
    header: str
    version: tuple[int, int, int]
    algorithm: str
    scales: dict[str, float]

    @property
    def version_text(self) -> str:
        return ".".join(str(v) for v in self.version)


def load_calibration_cache(path: str | Path) -> TrtCache:
    """Read a TensorRT calibration cache as TensorRT writes it; one-line InputError when malformed."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"calibration cache not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read calibration cache {p}: {type(e).__name__}") from None
    lines = text.splitlines()
    first = lines[0].strip() if lines else ""
    m = _HEADER.match(first)
    if not m:
        raise InputError(f"{p} is not a TensorRT calibration cache: the first line must look like "
                         f"TRT-100300-EntropyCalibration2, got {first[:60]!r}")
    scales: dict[str, float] = {}
    for i, raw in enumerate(lines[1:], start=2):
        line = raw.rstrip("\r")
        if not line.strip():
            continue  # a trailing blank line is harmless
        name, sep, value = line.rpartition(_SEP)  # names may hold ': ' themselves; the value never does
        value = value.strip()
        if not sep or not name or not _HEX.match(value):
            raise InputError(f"{p}:{i}: expected 'tensor_name: hex scale' (1-8 hex digits), got {line[:80]!r}")
        if name in scales:
            raise InputError(f"{p}:{i}: tensor {name!r} appears twice")
        scales[name] = hex_to_scale(value)
    return TrtCache(str(p), first, version_of_digits(m.group(1)), m.group(2), scales)


def read_calibration_cache(path: str | Path) -> tuple[str, dict[str, float]]:
    """(header, {tensor name: scale}) from a TensorRT calibration cache; one-line errors when malformed."""
    cache = load_calibration_cache(path)
    return cache.header, cache.scales


@dataclass(frozen=True)
class CacheImport:
    """A cache matched against an ONNX model's tensors.

    ``amax``: usable ranges (scale * 127) for tensors the model has; ``not_in_model``: cache
    entries for tensors the ONNX does not have (TensorRT-internal layers such as
    ``ONNXTRT_Broadcast_*`` or ``(Unnamed Layer* N)``); ``unusable``: tensor -> why its scale
    cannot become a Q/DQ scale (infinite or NaN).
    """

    amax: dict[str, float]
    not_in_model: tuple[str, ...]
    unusable: dict[str, str]
    zero: tuple[str, ...]


def match_cache(cache: TrtCache, tensors: set[str]) -> CacheImport:
    """Split ``cache`` into ranges for ``tensors`` (the model's tensor names) and what cannot be used."""
    amax: dict[str, float] = {}
    missing, zero = [], []
    unusable: dict[str, str] = {}
    for name, scale in cache.scales.items():
        if name not in tensors:
            missing.append(name)
        elif not math.isfinite(scale):
            unusable[name] = f"scale {scale} (TensorRT could not bound its range)"
        elif scale < 0:
            unusable[name] = f"negative scale {scale}"
        else:
            amax[name] = scale * INT8_MAX
            if scale == 0:
                zero.append(name)
    return CacheImport(amax, tuple(missing), unusable, tuple(zero))


def parse_header(header: str) -> tuple[str, str]:
    """``TRT-100300-EntropyCalibration2`` -> ``("100300", "EntropyCalibration2")``."""
    m = _HEADER.match(header.strip())
    if not m:
        raise InputError(f"malformed calibration cache header {header!r}")
    return m.group(1), m.group(2)


def collect_amax(onnx_path: str | Path, calib, *, method: str = "entropy", percentile: float = 99.999,
                 batch_size: int = 8, entropy_bins: int | None = None) -> dict[str, float]:
    """Per-tensor absolute maximum over ``calib`` (a CalibrationSet) for every float tensor of the ONNX.

    Uses onnxruntime's calibrators on the very ONNX file TensorRT will parse, so the names
    match the network's tensors. ``method``: minmax, entropy (TensorRT's EntropyCalibration2
    idea: the KL-optimal clip) or percentile.
    """

    model = load_onnx(onnx_path)
    inp = model_input(model)
    name, shape = inp.name, inp.dims
    if calib.input_name != name:
        raise CalibrationError(f"calibration data is keyed {calib.input_name!r} but the model input is {name!r}")
    ranges = collect_ranges(onnx_path, calib, input_name=name, batch_size=calibration_batch(shape, batch_size, len(calib)),
                            method=method, percentile=percentile, symmetric=True,
                            **({} if entropy_bins is None else {"entropy_bins": entropy_bins}))
    return amax_of(ranges)


__all__ = ["ALGORITHMS", "CacheImport", "DEFAULT_TRT_VERSION", "TrtCache", "collect_amax", "hex_to_scale",
           "load_calibration_cache", "match_cache", "parse_header", "read_calibration_cache", "scale_to_hex",
           "trt_version_digits", "version_of_digits", "write_calibration_cache"]
