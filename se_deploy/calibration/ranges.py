"""Per-tensor activation ranges from onnxruntime's calibrators, shared by Q/DQ and the TensorRT cache.

Ranges are collected here rather than inside ``quantize_static`` for one reason:
``quantize_static`` cannot set the histogram size. onnxruntime's entropy calibrator (and
NVIDIA ModelOpt, which calls it) uses 128 bins for 128 quantized bins, which leaves a single
candidate threshold: the KL search then returns the first batch's range, widened by later
batches, which is close to minmax. ``entropy_bins`` sets the histogram size; the default is
chosen from measured accuracy (BENCHMARKS.md, "Entropy histogram size"). The result is handed
to ``quantize_static`` through its calibration cache file.

:func:`ranges_from_amax` builds the same structure from absolute maxima (a TensorRT
calibration cache's scales times 127), so imported caches take the same path.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

from se_deploy.calibration.dataset import CalibrationSet
from se_deploy.errors import CalibrationError, UsageError, first_line
from se_deploy.names import CalibMethod

HISTOGRAM_BINS = 2048  # TensorRT's own histogram size; the percentile method uses it
DEFAULT_ENTROPY_BINS = 128  # measured best of 128/512/2048 on the trained demo models (BENCHMARKS.md)
QUANTIZED_BINS = 128
# Batches per collect_data call. onnxruntime keeps every activation of a call in memory
# (its max_intermediate_outputs option drops data instead of merging it), so the data is
# fed in chunks: each call folds its chunk into the running ranges or histograms.
CHUNK_BATCHES = 8
# onnxruntime's CalibrationMethod member for each of our methods (a test checks it covers CalibMethod)
ORT_METHODS = {CalibMethod.minmax: "MinMax", CalibMethod.entropy: "Entropy", CalibMethod.percentile: "Percentile"}


def calibration_batch(input_shape: tuple, requested: int, n_samples: int) -> int:
    """The batch the calibrator feeds: the model's static batch, else the requested one capped by the data."""
    b = input_shape[0] if input_shape else None
    if isinstance(b, int) and b > 0:
        return b
    return max(1, min(requested, n_samples))


def ort_method(method: str):
    """onnxruntime's CalibrationMethod for ``method``; one line for an unknown name."""
    from onnxruntime.quantization.calibrate import CalibrationMethod

    if method not in ORT_METHODS:
        raise UsageError(f"unknown calibration method {method!r}; choose one of {CalibMethod.choices()}")
    return getattr(CalibrationMethod, ORT_METHODS[method])


class _Reader:
    """onnxruntime CalibrationDataReader over a CalibrationSet (the protocol is get_next/rewind)."""

    def __init__(self, calib: CalibrationSet, input_name: str, batch_size: int) -> None:
        self._calib, self._name, self._bs = calib, input_name, batch_size
        self.rewind()

    def rewind(self) -> None:
        self._it = iter(self._calib.batches(self._bs, drop_last=True))
        self._peek = None

    def __len__(self) -> int:
        return len(self._calib) // self._bs

    def more(self) -> bool:
        if self._peek is None:
            self._peek = next(self._it, None)
        return self._peek is not None

    def get_next(self):
        if not self.more():
            return None
        batch, self._peek = self._peek, None
        return {self._name: batch[self._calib.input_name]}


class _Chunk:
    """At most ``limit`` batches of a reader, for one collect_data call."""

    def __init__(self, reader: _Reader, limit: int) -> None:
        self._reader, self._left = reader, limit

    def get_next(self):
        if self._left <= 0:
            return None
        self._left -= 1
        return self._reader.get_next()


def collect_ranges(onnx_path: str | Path, calib: CalibrationSet, *, input_name: str, batch_size: int,
                   method: str = CalibMethod.minmax, percentile: float = 99.999, symmetric: bool = True,
                   entropy_bins: int = DEFAULT_ENTROPY_BINS):
    """onnxruntime ``TensorsData`` (tensor -> lowest/highest) for every float tensor of the model."""
    from onnxruntime.quantization.calibrate import create_calibrator

    calibrate_method = ort_method(method)
    if entropy_bins < QUANTIZED_BINS:
        raise UsageError(f"entropy histograms need at least {QUANTIZED_BINS} bins (one per INT8 level), "
                         f"got {entropy_bins}")
    extra: dict = {"symmetric": symmetric}
    if method == CalibMethod.entropy:
        extra.update(num_bins=entropy_bins, num_quantized_bins=QUANTIZED_BINS)
    elif method == CalibMethod.percentile:
        extra.update(num_bins=HISTOGRAM_BINS, percentile=percentile)
    with tempfile.TemporaryDirectory(prefix="se_deploy_ranges_") as tmp:
        try:
            calibrator = create_calibrator(Path(onnx_path), None, augmented_model_path=str(Path(tmp) / "aug.onnx"),
                                           calibrate_method=calibrate_method, extra_options=extra)
            reader = _Reader(calib, input_name, batch_size)
            with contextlib.redirect_stdout(io.StringIO()):  # onnxruntime prints progress to stdout
                while reader.more():
                    calibrator.collect_data(_Chunk(reader, CHUNK_BATCHES))
                ranges = calibrator.compute_data()
        except (CalibrationError, UsageError):
            raise
        except MemoryError:
            raise CalibrationError(f"out of memory collecting {method} histograms; use --method minmax or fewer "
                                   "samples (--calib-size)") from None
        except Exception as e:
            first = first_line(e)
            raise CalibrationError(f"collecting tensor ranges failed: {first}") from None
        finally:
            calibrator = None
    return ranges


def ranges_from_amax(amax: dict[str, float], method: str = CalibMethod.minmax):
    """onnxruntime ``TensorsData`` with the symmetric range [-amax, amax] for each tensor."""
    import numpy as np
    from onnxruntime.quantization.calibrate import TensorData, TensorsData

    data = {name: TensorData(lowest=np.array(-abs(v), dtype=np.float32), highest=np.array(abs(v), dtype=np.float32))
            for name, v in amax.items()}
    return TensorsData(ort_method(method), data)


def amax_of(ranges) -> dict[str, float]:
    """tensor -> max(|lowest|, |highest|) of an onnxruntime ``TensorsData``."""
    import numpy as np

    out = {}
    for name, rng in ranges.data.items():
        lo, hi = (float(np.max(np.abs(v))) for v in rng.range_value)
        out[name] = max(lo, hi)
    return out


__all__ = ["amax_of", "calibration_batch", "collect_ranges", "ort_method", "ranges_from_amax", "DEFAULT_ENTROPY_BINS", "HISTOGRAM_BINS",
           "ORT_METHODS", "QUANTIZED_BINS"]
