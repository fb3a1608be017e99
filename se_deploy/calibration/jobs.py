"""The quantize command's policy as library calls: which samples calibrate and which check accuracy,
and a TensorRT calibration cache recorded beside the INT8 model.
"""

from __future__ import annotations

from pathlib import Path

from se_deploy._util import read_sidecar, write_sidecar
from se_deploy.calibration.dataset import CalibrationSet
from se_deploy.calibration.quantize import QuantConfig, quantize_int8
from se_deploy.calibration.trt_cache import collect_amax, write_calibration_cache

#: Below this many real samples, holding some out would starve calibration: all of them calibrate.
MIN_SAMPLES_TO_HOLD_OUT = 20


def split_for_accuracy(data: CalibrationSet, eval_set: CalibrationSet | None, holdout: float,
                       seed: int) -> tuple[CalibrationSet, CalibrationSet | None]:
    """(calibration samples, held-out samples for the accuracy check).

    Separate evaluation data wins; otherwise a ``holdout`` fraction of real data (at least
    :data:`MIN_SAMPLES_TO_HOLD_OUT` samples) is kept out of calibration; synthetic data and tiny sets
    calibrate whole, and the accuracy check then runs on calibration samples (the sidecar says so).
    """
    if eval_set is not None:
        return data, eval_set
    if len(data) >= MIN_SAMPLES_TO_HOLD_OUT and not data.is_synthetic:
        return data.split(holdout, seed)
    return data, None


def quantize_with_holdout(model: str | Path, output: str | Path, data: CalibrationSet | None, config: QuantConfig, *,
                          eval_set: CalibrationSet | None = None, holdout: float = 0.2, seed: int = 0,
                          save_calib: str | Path | None = None,
                          keep_rejected: bool = False,
                          trt_cache: str | Path | None = None) -> tuple[dict, CalibrationSet | None]:
    """Split the data (:func:`split_for_accuracy`), optionally save the calibration part, quantize.

    With ``trt_cache`` the scales come from a TensorRT calibration cache and ``data`` (optional) only
    fills the tensors it lacks. Returns the INT8 sidecar and the calibration samples actually used."""
    calib, held = (None, eval_set) if data is None else split_for_accuracy(data, eval_set, holdout, seed)
    if save_calib is not None and calib is not None:
        calib.save_npz(save_calib)
    return quantize_int8(model, output, calib, config, eval_set=held, keep_rejected=keep_rejected,
                         trt_cache=trt_cache), calib


def write_trt_cache_for(model: str | Path, int8_model: str | Path, calib: CalibrationSet, config: QuantConfig,
                        cache: str | Path, *, trt_version: str) -> int:
    """Write a TensorRT calibration cache of the FP32 ``model``'s tensors and record it in the INT8 sidecar.

    Returns the number of tensors in the cache."""
    amax = collect_amax(model, calib, method=config.method, percentile=config.percentile,
                        batch_size=config.batch_size, entropy_bins=config.entropy_bins)
    write_calibration_cache(cache, amax, trt_version=trt_version)
    meta = read_sidecar(int8_model) or {}
    meta["trt_calibration_cache"] = {"path": str(cache), "tensors": len(amax), "trt_version": trt_version,
                                     "method": config.method, "algorithm": "EntropyCalibration2",
                                     "onnx": str(model)}
    meta.pop("se_deploy_version", None)
    meta.pop("created", None)
    write_sidecar(int8_model, meta)
    return len(amax)


__all__ = ["MIN_SAMPLES_TO_HOLD_OUT", "quantize_with_holdout", "split_for_accuracy", "write_trt_cache_for"]
