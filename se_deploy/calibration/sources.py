"""Where calibration and evaluation samples come from: image folders, .npy/.npz files, synthetic.

Each reader returns plain arrays plus facts for the provenance record; the
:class:`~se_deploy.calibration.dataset.CalibrationSet` wraps them.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from se_deploy._util import sha256_file
from se_deploy.errors import CalibrationError, first_line

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
LABEL_KEYS = ("labels", "label", "y")
#: ``calib.npz`` keeps its labels in ``calib.labels.npz`` (keys ``labels`` and ``data_sha256``), so the
#: data file holds exactly one array per model input, as NVIDIA ModelOpt's CLI requires.
LABELS_SUFFIX = ".labels.npz"
_FLOAT_KINDS = "f"


@dataclass
class SourceData:
    arrays: np.ndarray  # N x C x H x W float32
    labels: np.ndarray | None = None
    class_names: list[str] | None = None
    files: list[str] | None = None
    facts: dict = field(default_factory=dict)


def find_images(root: Path) -> list[Path]:
    """Every image below ``root``, sorted by relative POSIX path so the order is the same everywhere."""
    found = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def class_layout(root: Path, files: Sequence[Path]) -> tuple[np.ndarray | None, list[str] | None]:
    """Labels for the image-folder-per-class layout (``root/<class>/<image>``), else (None, None).

    The layout counts only when every image sits exactly one folder deep and there are at
    least two class folders; class indices follow the sorted folder names.
    """
    parts = [f.relative_to(root).parts for f in files]
    if not parts or any(len(p) != 2 for p in parts):
        return None, None
    names = sorted({p[0] for p in parts})
    if len(names) < 2:
        return None, None
    index = {n: i for i, n in enumerate(names)}
    return np.asarray([index[p[0]] for p in parts], dtype=np.int64), names


def read_images(files: Sequence[Path], convert: Callable, *, strict: bool,
                progress: Callable[[int, int], None] | None = None) -> tuple[list[np.ndarray], list[int], list[str]]:
    """Decode ``files`` with Pillow and ``convert`` each image; ``progress(done, total)`` after each.

    Returns (arrays, indices of the files kept, unreadable files). A corrupt file raises
    CalibrationError when ``strict``; otherwise it is skipped and listed.
    """
    from PIL import Image, UnidentifiedImageError

    arrays: list[np.ndarray] = []
    kept: list[int] = []
    bad: list[str] = []

    def _one(i: int, path: Path) -> None:
        try:
            with Image.open(path) as im:
                im.load()
                arrays.append(convert(im))
            kept.append(i)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            if strict:
                raise CalibrationError(f"unreadable image {path} ({type(e).__name__}); "
                                       "drop --strict to skip corrupt images") from None
            bad.append(str(path))

    for i, path in enumerate(files):
        _one(i, path)
        if progress is not None:
            progress(i + 1, len(files))
    return arrays, kept, bad


def _check_array(arr: np.ndarray, what: str, sample_shape: Sequence) -> np.ndarray:
    if arr.dtype.kind not in _FLOAT_KINDS:
        raise CalibrationError(f"{what} has dtype {arr.dtype}, expected float32 "
                               "(preprocessed data; use an image folder for raw pixels)")
    if arr.ndim != len(sample_shape) + 1:
        raise CalibrationError(f"{what} has shape {tuple(arr.shape)}, expected (N, "
                               f"{', '.join(str(d) for d in sample_shape)})")
    for got, want in zip(arr.shape[1:], sample_shape):
        if isinstance(want, int) and want > 0 and got != want:
            raise CalibrationError(f"{what} has shape {tuple(arr.shape)}, expected (N, "
                                   f"{', '.join(str(d) for d in sample_shape)})")
    if arr.shape[0] == 0:
        raise CalibrationError(f"{what} holds no samples")
    if not np.all(np.isfinite(arr)):
        raise CalibrationError(f"{what} contains NaN or infinite values")
    return np.ascontiguousarray(arr, dtype=np.float32)


def labels_path(data_path: str | Path) -> Path:
    """``calib.npz`` -> ``calib.labels.npz``: where the labels of a data file live."""
    p = Path(data_path)
    return p.with_name(p.name[: -len(p.suffix)] + LABELS_SUFFIX if p.suffix else p.name + LABELS_SUFFIX)


def read_sibling_labels(data_path: Path, n: int) -> np.ndarray | None:
    """The labels file beside ``data_path``, checked to belong to it (by the data file's sha256); None if absent."""
    lp = labels_path(data_path)
    if not lp.is_file():
        return None
    try:
        with np.load(lp, allow_pickle=False) as z:
            labels, digest = np.asarray(z["labels"]), str(z["data_sha256"])
    except (OSError, ValueError, KeyError, EOFError) as e:
        raise CalibrationError(f"cannot read the labels file {lp}: {type(e).__name__}: {first_line(e)}") from None
    if digest != sha256_file(data_path):
        raise CalibrationError(f"{lp.name} was written for another version of {data_path.name} (sha256 differs); "
                               "delete it or write both files again")
    return _check_labels(labels, n, lp.name)


def _check_labels(labels: np.ndarray, n: int, where: str) -> np.ndarray:
    if labels.ndim != 1 or labels.shape[0] != n or labels.dtype.kind not in "iu":
        raise CalibrationError(f"{where}: labels must be {n} integers, got shape {tuple(labels.shape)} "
                               f"dtype {labels.dtype}")
    return labels.astype(np.int64)


def read_array_file(path: Path, input_name: str, sample_shape: Sequence) -> SourceData:
    """A .npy (one array) or .npz (keyed by the model's input name) file; labels from an npz ``labels`` key
    or from the ``<name>.labels.npz`` file beside it."""
    suffix = path.suffix.lower()
    # A truncated or corrupt file fails in np.load or only when a member is read (zip, zlib, header errors).
    unreadable = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
    try:
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
            return SourceData(_check_array(arr, f"{path.name}", sample_shape), facts={"dtype": str(arr.dtype)})
        data = np.load(path, allow_pickle=False)
        with data:
            keys = list(data.keys())
            if input_name not in keys:
                raise CalibrationError(f"{path.name} has no array named {input_name!r} (the model's input); "
                                       f"it holds {keys}")
            arr = data[input_name]
            labels = None
            for key in LABEL_KEYS:
                if key in keys and key != input_name:
                    labels = np.asarray(data[key])
                    break
    except unreadable as e:
        raise CalibrationError(f"cannot read {path} (truncated or corrupt?): {type(e).__name__}: {first_line(e)}"
                               .rstrip(": ")) from None
    arrays = _check_array(arr, f"{path.name}[{input_name!r}]", sample_shape)
    facts = {"dtype": str(arr.dtype), "keys": keys}
    if labels is not None:
        labels = _check_labels(labels, arrays.shape[0], path.name)
    else:
        labels = read_sibling_labels(path, arrays.shape[0])
        if labels is not None:
            facts["labels_file"] = labels_path(path).name
    return SourceData(arrays, labels=labels, facts=facts)


def synthetic(n: int, sample_shape: Sequence[int], seed: int) -> SourceData:
    """Standard-normal tensors for smoke runs. Not real data: every report says so."""
    rng = np.random.default_rng(seed)
    arr = rng.standard_normal((n, *sample_shape)).astype(np.float32)
    return SourceData(arr, facts={"distribution": "standard normal", "warning": "synthetic data, not real images"})
