"""Per-tensor activation ranges from onnxruntime's calibrators, shared by Q/DQ and the TensorRT cache.

Ranges are collected here rather than inside ``quantize_static`` for one reason:
``quantize_static`` cannot set the histogram size, and onnxruntime's entropy calibrator
defaults to 128 bins for 128 quantized bins, which leaves a single candidate threshold, so
"entropy" silently equals "minmax". Collecting with 2048 bins (TensorRT's histogram size)
makes the KL search real; the result is handed to ``quantize_static`` through its
calibration cache file.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

from se_deploy.calibration.dataset import CalibrationSet
from se_deploy.errors import CalibrationError, UsageError

HISTOGRAM_BINS = 2048
QUANTIZED_BINS = 128
METHODS = ("minmax", "entropy", "percentile")


class _Reader:
    """onnxruntime CalibrationDataReader over a CalibrationSet (the protocol is get_next/rewind)."""

    def __init__(self, calib: CalibrationSet, input_name: str, batch_size: int) -> None:
        self._calib, self._name, self._bs = calib, input_name, batch_size
        self.rewind()

    def rewind(self) -> None:
        self._it = iter(self._calib.batches(self._bs, drop_last=True))

    def get_next(self):
        batch = next(self._it, None)
        return None if batch is None else {self._name: batch[self._calib.input_name]}

    def __len__(self) -> int:
        return len(self._calib) // self._bs


def collect_ranges(onnx_path: str | Path, calib: CalibrationSet, *, input_name: str, batch_size: int,
                   method: str = "minmax", percentile: float = 99.999, symmetric: bool = True):
    """onnxruntime ``TensorsData`` (tensor -> lowest/highest) for every float tensor of the model."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise UsageError(f"unknown calibration method {method!r}; choose one of {list(METHODS)}")
    extra: dict = {"symmetric": symmetric}
    if method == "entropy":
        extra.update(num_bins=HISTOGRAM_BINS, num_quantized_bins=QUANTIZED_BINS)
    elif method == "percentile":
        extra.update(num_bins=HISTOGRAM_BINS, percentile=percentile)
    with tempfile.TemporaryDirectory(prefix="se_deploy_ranges_") as tmp:
        try:
            calibrator = create_calibrator(Path(onnx_path), None, augmented_model_path=str(Path(tmp) / "aug.onnx"),
                                           calibrate_method=methods[method], extra_options=extra)
            with contextlib.redirect_stdout(io.StringIO()):  # onnxruntime prints progress to stdout
                calibrator.collect_data(_Reader(calib, input_name, batch_size))
                ranges = calibrator.compute_data()
        except (CalibrationError, UsageError):
            raise
        except MemoryError:
            raise CalibrationError(f"out of memory collecting {method} histograms; use --method minmax or fewer "
                                   "samples (--calib-size)") from None
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CalibrationError(f"collecting tensor ranges failed: {first}") from None
        finally:
            calibrator = None
    return ranges


__all__ = ["collect_ranges", "HISTOGRAM_BINS", "QUANTIZED_BINS"]
