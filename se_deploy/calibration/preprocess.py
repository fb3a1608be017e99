"""Image preprocessing presets for calibration and evaluation data.

A :class:`Preprocess` turns one decoded image into a ``C x H x W`` float32 array. The
``imagenet`` preset is the usual torchvision evaluation transform (shorter side to 256,
centre crop 224, scale to [0, 1], per-channel mean/std). ``none`` leaves arrays as they
are: the data was preprocessed before it reached se-deploy. Explicit options override a
preset field by field, and :meth:`Preprocess.to_dict` is what every sidecar records.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from se_deploy.errors import UsageError
from se_deploy.names import PreprocessPreset

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """How raw images become model inputs.

    ``resize``: the shorter side is resized to this many pixels (None: no resize step).
    ``crop``: centre crop ``(height, width)`` (None: no crop; the image is then resized
    straight to the model's input size when it does not already match).
    ``scale``: divide pixel values by 255 before ``mean``/``std``.
    ``mean``/``std``: per-channel normalisation applied after scaling (None: skip).
    ``channel_order``: ``RGB`` or ``BGR`` for 3-channel inputs.
    """

    name: str = "none"
    resize: int | None = None
    crop: tuple[int, int] | None = None
    scale: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    channel_order: str = "RGB"

    def __post_init__(self) -> None:
        if self.resize is not None and (not isinstance(self.resize, int) or self.resize <= 0):
            raise UsageError(f"resize must be a positive integer, got {self.resize!r}")
        if self.crop is not None:
            crop = tuple(self.crop)
            if len(crop) != 2 or any(not isinstance(c, int) or c <= 0 for c in crop):
                raise UsageError(f"crop must be two positive integers (height, width), got {self.crop!r}")
            object.__setattr__(self, "crop", crop)
        if self.channel_order not in ("RGB", "BGR"):
            raise UsageError(f"channel order must be RGB or BGR, got {self.channel_order!r}")
        for field_name in ("mean", "std"):
            value = getattr(self, field_name)
            if value is None:
                continue
            value = tuple(float(v) for v in value)
            if not value:
                raise UsageError(f"{field_name} must have at least one value")
            object.__setattr__(self, field_name, value)
        if self.std is not None and any(s <= 0 for s in self.std):
            raise UsageError(f"std values must be > 0, got {self.std}")
        if (self.mean is None) != (self.std is None):
            raise UsageError("give both mean and std, or neither")
        if self.mean is not None and len(self.mean) != len(self.std):
            raise UsageError(f"mean has {len(self.mean)} values but std has {len(self.std)}")

    @property
    def is_identity(self) -> bool:
        return self.resize is None and self.crop is None and not self.scale and self.mean is None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["crop"] = list(self.crop) if self.crop else None
        d["mean"] = list(self.mean) if self.mean else None
        d["std"] = list(self.std) if self.std else None
        return d

    # ------------------------------------------------------------------ arrays
    def normalize(self, chw: np.ndarray) -> np.ndarray:
        """Apply scale and mean/std to a ``C x H x W`` (or ``N x C x H x W``) float array."""
        x = chw.astype(np.float32, copy=True)
        if self.scale:
            x /= 255.0
        if self.mean is not None:
            channels = x.shape[-3]
            mean, std = self._per_channel(self.mean, channels), self._per_channel(self.std, channels)
            x -= mean.reshape(-1, 1, 1)
            x /= std.reshape(-1, 1, 1)
        return x

    def _per_channel(self, values: tuple[float, ...], channels: int) -> np.ndarray:
        if len(values) == channels:
            return np.asarray(values, dtype=np.float32)
        if len(values) == 1:
            return np.full(channels, values[0], dtype=np.float32)
        if channels == 1:  # grayscale input with an RGB preset: use the channel average
            return np.asarray([float(np.mean(values))], dtype=np.float32)
        raise UsageError(f"mean/std have {len(values)} values but the model input has {channels} channels")

    # ------------------------------------------------------------------ images
    def image_to_array(self, image, channels: int, height: int, width: int) -> np.ndarray:
        """A decoded PIL image -> ``channels x height x width`` float32 (after normalisation)."""
        from PIL import Image

        if channels == 1:
            image = image.convert("L")
        elif channels == 3:
            image = image.convert("RGB")
        else:
            raise UsageError(f"images can feed only 1- or 3-channel inputs; the model input has {channels}")
        if self.resize is not None:
            w, h = image.size
            short = min(w, h)
            new_w, new_h = round(w * self.resize / short), round(h * self.resize / short)
            image = image.resize((max(1, new_w), max(1, new_h)), Image.BILINEAR)
        if self.crop is not None:
            ch, cw = self.crop
            w, h = image.size
            if ch > h or cw > w:
                raise UsageError(f"crop {ch}x{cw} is larger than the resized image {h}x{w}; "
                                 "raise --resize or lower --crop")
            left, top = (w - cw) // 2, (h - ch) // 2
            image = image.crop((left, top, left + cw, top + ch))
        if image.size != (width, height):
            if self.crop is not None:
                raise UsageError(f"preprocessing yields {self.crop[0]}x{self.crop[1]} images but the model "
                                 f"input is {height}x{width}; pass a matching --crop (and --resize)")
            image = image.resize((width, height), Image.BILINEAR)
        arr = np.asarray(image, dtype=np.float32)
        if arr.ndim == 2:
            arr = arr[None]
        else:
            arr = arr.transpose(2, 0, 1)
            if self.channel_order == "BGR":
                arr = arr[::-1]
        return self.normalize(np.ascontiguousarray(arr))


PRESETS: dict[PreprocessPreset, Preprocess] = {  # one per PreprocessPreset (a test checks)
    PreprocessPreset.imagenet: Preprocess(name="imagenet", resize=256, crop=(224, 224), scale=True, mean=IMAGENET_MEAN,
                           std=IMAGENET_STD, channel_order="RGB"),
    PreprocessPreset.none: Preprocess(name="none"),
}


def make_preprocess(preset: str = PreprocessPreset.none, *, resize: int | None = None, crop: int | tuple[int, int] | None = None,
                    scale: bool | None = None, mean: tuple[float, ...] | None = None,
                    std: tuple[float, ...] | None = None, channel_order: str | None = None) -> Preprocess:
    """A preset with explicit options laid over it; the result names itself ``preset+custom``."""
    if preset not in PRESETS:
        raise UsageError(f"unknown preprocessing preset {preset!r}; choose one of {PreprocessPreset.choices()}")
    base = PRESETS[preset]
    changes: dict[str, Any] = {}
    if resize is not None:
        changes["resize"] = resize
    if crop is not None:
        changes["crop"] = (crop, crop) if isinstance(crop, int) else tuple(crop)
    if scale is not None:
        changes["scale"] = scale
    if mean is not None:
        changes["mean"] = tuple(mean)
    if std is not None:
        changes["std"] = tuple(std)
    if channel_order is not None:
        changes["channel_order"] = channel_order.upper()
    if not changes:
        return base
    return replace(base, name=f"{base.name}+custom", **changes)


def parse_floats(text: str | None, what: str) -> tuple[float, ...] | None:
    """``"0.485,0.456,0.406"`` -> a tuple of floats; one line on error."""
    if text is None:
        return None
    try:
        vals = tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise UsageError(f"malformed {what} {text!r}: expected comma-separated numbers, e.g. 0.485,0.456,0.406") from None
    if not vals:
        raise UsageError(f"malformed {what} {text!r}: expected at least one number")
    return vals
