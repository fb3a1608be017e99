"""Reading calibration or evaluation data for a model, as the user asked for it: one options object.

Every command that reads data (quantize, compare, calibrate, fuse --fold-gates) takes the same
preprocessing and sampling options; :class:`DataOptions` holds them once, and
:func:`load_for_model` reads a source for a model's input with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from se_deploy._util import parse_shape
from se_deploy.calibration.dataset import CalibrationSet, load_calibration
from se_deploy.calibration.preprocess import Preprocess, make_preprocess, parse_floats
from se_deploy.errors import UsageError
from se_deploy.onnx_io import load_onnx, model_input


@dataclass(frozen=True)
class DataOptions:
    """How to read and preprocess data. ``preset`` None: ``imagenet`` for an image folder, ``none`` for arrays.

    ``mean``/``std`` are comma-separated numbers as typed (``0.485,0.456,0.406``); ``input_shape``
    (``NxCxHxW``) fills the model's dynamic dimensions; ``seed`` picks subsets and splits;
    ``strict`` fails on a corrupt image instead of skipping it.
    """

    preset: str | None = None
    resize: int | None = None
    crop: int | None = None
    mean: str | None = None
    std: str | None = None
    bgr: bool = False
    scale: bool | None = None
    input_shape: str | None = None
    seed: int = 0
    strict: bool = False

    def __post_init__(self) -> None:
        # parse now, so a malformed value fails before any data is read
        parse_floats(self.mean, "--mean")
        parse_floats(self.std, "--std")
        if self.input_shape is not None:
            parse_shape(self.input_shape)
        for name in ("resize", "crop"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise UsageError(f"--{name} must be > 0, got {v}")

    def preprocess_for(self, source: str | Path | None) -> Preprocess:
        preset = self.preset
        if preset is None:
            preset = "imagenet" if source is not None and Path(source).is_dir() else "none"
        return make_preprocess(preset, resize=self.resize, crop=self.crop, scale=self.scale,
                               mean=parse_floats(self.mean, "--mean"), std=parse_floats(self.std, "--std"),
                               channel_order="BGR" if self.bgr else None)


def model_io(model_path: str | Path, input_shape: str | None = None) -> tuple[str, tuple]:
    """(input name, shape) of a single-input model, with ``input_shape`` filling its dynamic dimensions."""
    inp = model_input(load_onnx(model_path))
    shape = inp.dims
    if input_shape:
        given = parse_shape(input_shape)
        if len(given) != len(shape):
            raise UsageError(f"--input-shape {input_shape} has rank {len(given)}, the model input has rank "
                             f"{len(shape)}")
        shape = tuple(g if not isinstance(s, int) or s <= 0 else s for g, s in zip(given, shape))
    return inp.name, shape


def load_for_model(source: str | Path | None, model_path: str | Path, options: DataOptions, *, role: str,
                   size: int | None = None, synthetic: bool = False,
                   progress: Callable[[int, int], None] | None = None) -> CalibrationSet:
    """Read ``source`` (image folder, .npz, .npy; or synthetic samples) for ``model_path``'s input."""
    name, shape = model_io(model_path, options.input_shape)
    ds = load_calibration(source, input_name=name, input_shape=shape, preprocess=options.preprocess_for(source),
                          calib_size=size, seed=options.seed, strict=options.strict, synthetic=synthetic,
                          progress=progress)
    ds.provenance["role"] = role
    return ds


def feed_loader(source: str | Path, options: DataOptions, *, size: int | None = None, batch: int = 8):
    """A ``(model, input shape) -> [{input: batch}]`` loader of ``source`` for passes that learn from data
    (fold-gates): batches of ``batch`` samples, or the model's fixed batch."""

    def load(model, shape: tuple) -> list[dict[str, np.ndarray]]:
        inp = model_input(model, purpose="--calib-data")
        ds = load_calibration(source, input_name=inp.name, input_shape=tuple(shape),
                              preprocess=options.preprocess_for(source), calib_size=size, seed=options.seed,
                              strict=options.strict)
        fixed_batch = shape[0] if shape and isinstance(shape[0], int) and shape[0] > 0 else None
        return list(ds.batches(fixed_batch or min(batch, len(ds))))

    return load


__all__ = ["DataOptions", "feed_loader", "load_for_model", "model_io"]
