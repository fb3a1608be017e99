"""CalibrationSet: preprocessed samples keyed by the model's input name, with their provenance.

The same set feeds onnxruntime's calibrators, the TensorRT calibrator and the accuracy
comparison (``batches()`` yields ``{input_name: array}``, the protocol they all share), and
it saves as ``calib.npz``, the layout NVIDIA ModelOpt and Polygraphy read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from se_deploy._util import atomic_output, sha256_file
from se_deploy.calibration import sources
from se_deploy.calibration.preprocess import Preprocess
from se_deploy.errors import CalibrationError, UsageError
from se_deploy.files import staged_artifact

SOURCE_KINDS = ("images", "npz", "npy", "synthetic")
MIN_INT8_SAMPLES = 100
DEFAULT_SYNTHETIC_SIZE = 100
_SHOW_FILES = 3


@dataclass
class CalibrationSet:
    arrays: np.ndarray  # N x C x H x W float32
    input_name: str
    source_kind: str
    provenance: dict = field(default_factory=dict)
    labels: np.ndarray | None = None
    class_names: list[str] | None = None

    def __post_init__(self) -> None:
        if self.source_kind not in SOURCE_KINDS:
            raise UsageError(f"unknown calibration source kind {self.source_kind!r}")
        if self.arrays.dtype != np.float32:
            self.arrays = self.arrays.astype(np.float32)
        if self.labels is not None and len(self.labels) != len(self.arrays):
            raise CalibrationError(f"{len(self.labels)} labels for {len(self.arrays)} samples")

    def __len__(self) -> int:
        return int(self.arrays.shape[0])

    @property
    def is_synthetic(self) -> bool:
        return self.source_kind == "synthetic"

    @property
    def warnings(self) -> list[str]:
        return self.provenance.setdefault("warnings", [])

    def batches(self, batch_size: int, *, drop_last: bool = False) -> Iterator[dict[str, np.ndarray]]:
        """``{input_name: N x C x H x W}`` batches in order. Fewer samples than one batch is an error."""
        if batch_size <= 0:
            raise UsageError(f"batch size must be > 0, got {batch_size}")
        if len(self) < batch_size:
            raise CalibrationError(f"only {len(self)} samples, fewer than the batch size {batch_size}; "
                                   "add samples or lower the batch size")
        stop = len(self) - (len(self) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            yield {self.input_name: self.arrays[start:start + batch_size]}

    def subset(self, indices: Sequence[int], role: str) -> "CalibrationSet":
        idx = np.asarray(indices, dtype=np.int64)
        prov = {**self.provenance, "role": role, "samples": int(idx.size), "warnings": list(self.warnings)}
        return CalibrationSet(self.arrays[idx], self.input_name, self.source_kind, prov,
                              None if self.labels is None else self.labels[idx], self.class_names)

    def split(self, holdout: float, seed: int) -> tuple["CalibrationSet", "CalibrationSet"]:
        """(calibration part, held-out part): a deterministic shuffle, ``holdout`` fraction held out."""
        if not 0.0 < holdout < 1.0:
            raise UsageError(f"held-out fraction must be between 0 and 1, got {holdout}")
        n_hold = int(round(len(self) * holdout))
        if n_hold < 1 or n_hold >= len(self):
            raise CalibrationError(f"cannot hold out {holdout:.0%} of {len(self)} samples for evaluation; "
                                   "give separate --eval-data or more samples")
        order = np.random.default_rng(seed).permutation(len(self))
        return (self.subset(np.sort(order[n_hold:]), "calibration"),
                self.subset(np.sort(order[:n_hold]), "held-out evaluation"))

    def save_npz(self, path: str | Path) -> Path:
        """Write ``{input_name: arrays}`` as an uncompressed .npz, atomically: one array per model input, the
        layout NVIDIA ModelOpt's ``--calibration_data_path`` accepts. Labels go to ``<name>.labels.npz`` beside
        it, tied to the data file by its sha256 (a stale labels file from an earlier write is removed)."""
        path = Path(path)
        if path.suffix != ".npz":
            raise UsageError(f"calibration data is saved as .npz; got {path.name}")
        with atomic_output(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **{self.input_name: self.arrays})
        lp = sources.labels_path(path)
        if self.labels is None:
            lp.unlink(missing_ok=True)
            return path
        with atomic_output(lp, suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, labels=np.asarray(self.labels, dtype=np.int64), data_sha256=np.array(sha256_file(path)))
        return path

    def save_with_sidecar(self, path: str | Path) -> Path:
        """:meth:`save_npz` plus ``path.json`` describing where the samples came from."""
        with staged_artifact(path) as staged:  # the samples and their sidecar appear together, or not at all
            self.save_npz(staged.path)
            staged.write_sidecar({"kind": "calibration-data", "input_name": self.input_name, **self.describe()})
        return Path(path)

    def describe(self) -> dict:
        """The provenance block that sidecars embed."""
        return {"source_kind": self.source_kind, "samples": len(self), "synthetic": self.is_synthetic,
                "labels": self.labels is not None, **{k: v for k, v in self.provenance.items()
                                                       if k not in ("samples",)}}


def _sample_shape(input_shape: Sequence, need_ints: bool) -> tuple:
    if len(input_shape) != 4:
        raise UsageError(f"calibration expects an N x C x H x W input, the model input has shape {tuple(input_shape)}")
    sample = tuple(input_shape[1:])
    if need_ints and any(not isinstance(d, int) or d <= 0 for d in sample):
        raise UsageError(f"the model input {tuple(input_shape)} has dynamic C/H/W; give a fixed --input-shape")
    return sample


def _short_of(calib_size: int | None, n_available: int, source: Path) -> list[str]:
    """The warning when more samples were asked for than the source holds (all of them are used)."""
    if calib_size is None or calib_size <= n_available:
        return []
    return [f"asked for {calib_size} samples but {source} holds {n_available}: using all {n_available}"]


def _pick(n_available: int, calib_size: int | None, seed: int) -> np.ndarray:
    if calib_size is None or calib_size >= n_available:
        return np.arange(n_available)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_available, size=calib_size, replace=False))


def _names(files: Sequence[str]) -> str:
    head = ", ".join(Path(f).name for f in files[:_SHOW_FILES])
    more = f" (+{len(files) - _SHOW_FILES} more)" if len(files) > _SHOW_FILES else ""
    return head + more


def load_calibration(source: str | Path | None, *, input_name: str, input_shape: tuple, preprocess: Preprocess,
                     calib_size: int | None, seed: int, strict: bool = False, synthetic: bool = False,
                     progress: Callable[[int, int], None] | None = None) -> CalibrationSet:
    """Read calibration samples from an image folder, a .npy/.npz file, or synthesise them.

    ``calib_size`` picks a deterministic subset (by ``seed``); None uses every sample.
    Image folders are read recursively in sorted order; a folder-per-class layout gives labels.
    ``progress(done, total)`` is called as images are decoded.
    """
    if calib_size is not None and calib_size <= 0:
        raise UsageError(f"calibration size must be > 0, got {calib_size}")
    if synthetic:
        if source is not None:
            raise UsageError("give calibration data or --synthetic, not both")
        sample = _sample_shape(input_shape, need_ints=True)
        n = calib_size or DEFAULT_SYNTHETIC_SIZE
        data = sources.synthetic(n, sample, seed)
        prov = {"source": "synthetic", "preprocess": {"name": "synthetic"}, "available": n, "seed": seed,
                "calib_size": calib_size, "skipped": 0, "skipped_files": [], **data.facts,
                "warnings": ["SYNTHETIC calibration data (random normal): numbers from it do not reflect real "
                             "accuracy"]}
        return CalibrationSet(data.arrays, input_name, "synthetic", prov)
    if source is None:
        raise UsageError("no calibration data: give an image folder, a .npz/.npy file, or --synthetic for a smoke run")

    path = Path(source)
    if not path.exists():
        raise CalibrationError(f"calibration data not found: {path}")
    if path.is_dir():
        return _load_images(path, input_name, input_shape, preprocess, calib_size, seed, strict, progress)
    kind = path.suffix.lower().lstrip(".")
    if kind not in ("npz", "npy"):
        raise CalibrationError(f"unsupported calibration file {path.name}: give an image folder, .npz or .npy")
    if not preprocess.is_identity:
        raise UsageError(f"{path.name} holds preprocessed arrays; preprocessing options apply only to image folders "
                         "(use --preprocess none)")
    sample = _sample_shape(input_shape, need_ints=False)
    data = sources.read_array_file(path, input_name, sample)
    idx = _pick(len(data.arrays), calib_size, seed)
    prov = {"source": str(path), "preprocess": preprocess.to_dict(), "available": int(len(data.arrays)),
            "calib_size": calib_size, "seed": seed, "skipped": 0, "skipped_files": [], **data.facts,
            "warnings": _short_of(calib_size, len(data.arrays), path)}
    return CalibrationSet(data.arrays[idx], input_name, kind, prov,
                          None if data.labels is None else data.labels[idx])


def _load_images(root: Path, input_name: str, input_shape: tuple, preprocess: Preprocess, calib_size: int | None,
                 seed: int, strict: bool, progress: Callable[[int, int], None] | None) -> CalibrationSet:
    channels, height, width = _sample_shape(input_shape, need_ints=True)
    if not any(root.iterdir()):
        raise CalibrationError(f"calibration folder is empty: {root}")
    files = sources.find_images(root)
    if not files:
        raise CalibrationError(f"no images ({', '.join(sources.IMAGE_EXTENSIONS)}) found under {root}")
    labels, class_names = sources.class_layout(root, files)
    idx = _pick(len(files), calib_size, seed)
    chosen = [files[i] for i in idx]

    def convert(image):
        return preprocess.image_to_array(image, channels, height, width)

    arrays, kept, bad = sources.read_images(chosen, convert, strict=strict, progress=progress)
    if not arrays:
        raise CalibrationError(f"no readable images under {root}: {_names(bad)}")
    warnings = _short_of(calib_size, len(files), root)
    if bad:
        warnings.append(f"skipped {len(bad)} unreadable image(s): {_names(bad)}")
    prov = {"source": str(root), "preprocess": preprocess.to_dict(), "available": len(files),
            "calib_size": calib_size, "seed": seed, "skipped": len(bad),
            "skipped_files": [str(Path(b).relative_to(root)) for b in bad[:20]],
            "class_layout": class_names is not None, "warnings": warnings}
    chosen_labels = None if labels is None else labels[idx][np.asarray(kept, dtype=np.int64)]
    return CalibrationSet(np.stack(arrays), input_name, "images", prov, chosen_labels, class_names)
