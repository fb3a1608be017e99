"""A deterministic quick-train of the zoo's small SE models on a real dataset, for accuracy proofs.

Quantization accuracy means nothing on random weights: every output is noise and any
precision "agrees". scikit-learn ships the UCI handwritten digits (1,797 8x8 grey images,
10 classes) inside the package, so no download is needed. Each image is upscaled to
``image_size`` x ``image_size`` (bilinear) and repeated over 3 channels, then normalised
with mean 0.5 / std 0.5. A stratified split holds out 30% (540 images) that neither
training nor INT8 calibration ever sees.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from se_deploy.calibration.dataset import CalibrationSet
from se_deploy.errors import UsageError
from se_deploy.export.torch_export import export_model
from se_deploy.models import create_model

HOLDOUT_FRACTION = 0.3
NORM_MEAN = 0.5
NORM_STD = 0.5
DEFAULT_EPOCHS = 3


@dataclass
class TrainedModel:
    """A trained torch model with its held-out split. Arrays are N x 3 x S x S float32, normalised."""
    model: object  # torch.nn.Module in eval mode
    model_name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    accuracy: float  # held-out top-1, percent (torch eager)
    train_accuracy: float  # on the first 256 training images (a cheap overfitting check)
    seconds: float
    seed: int
    epochs: int
    image_size: int
    history: list[dict] = field(default_factory=list)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, 3, self.image_size, self.image_size)

    def describe(self) -> dict:
        return {"model": self.model_name, "dataset": "sklearn digits (8x8 -> "
                f"{self.image_size}x{self.image_size}, 3 channels, mean {NORM_MEAN} std {NORM_STD})",
                "train_samples": int(len(self.y_train)), "test_samples": int(len(self.y_test)),
                "test_top1": self.accuracy, "train_top1": self.train_accuracy, "seconds": self.seconds,
                "seed": self.seed, "epochs": self.epochs}

    def calibration_set(self, input_name: str = "input", size: int | None = None):
        """Training images (never the held-out ones) as a CalibrationSet."""
        return _as_set(self.x_train, self.y_train, input_name, "training split (calibration)", size, self.seed)

    def eval_set(self, input_name: str = "input"):
        """The held-out images with labels as a CalibrationSet."""
        return _as_set(self.x_test, self.y_test, input_name, "held-out evaluation", None, self.seed)


def _as_set(x, y, input_name, role, size, seed):
    idx = np.arange(len(x))
    if size is not None and size < len(x):
        idx = np.sort(np.random.default_rng(seed).choice(len(x), size=size, replace=False))
    prov = {"source": "sklearn digits", "role": role, "preprocess": {"name": "digits", "mean": NORM_MEAN,
                                                                     "std": NORM_STD}, "warnings": []}
    return CalibrationSet(x[idx], input_name, "npz", prov, y[idx])


def digits_arrays(image_size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) from scikit-learn's digits, upscaled and normalised."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if image_size < 8:
        raise UsageError(f"image size must be >= 8, got {image_size}")
    digits = load_digits()
    x = torch.from_numpy((digits.images / 16.0).astype(np.float32))[:, None]
    x = torch.nn.functional.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = ((x.repeat(1, 3, 1, 1) - NORM_MEAN) / NORM_STD).numpy()
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=HOLDOUT_FRACTION, stratify=y, random_state=seed)
    return (np.ascontiguousarray(x_tr), y_tr, np.ascontiguousarray(x_te), y_te)


def _accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    import torch

    with torch.no_grad():
        logits = torch.cat([model(torch.from_numpy(x[i:i + 256])) for i in range(0, len(x), 256)])
    return float((logits.argmax(1).numpy() == y).mean() * 100.0)


def quick_train(model_name: str = "se_resnet18", *, seed: int = 0, epochs: int = DEFAULT_EPOCHS, image_size: int = 32,
                batch_size: int = 64, lr: float = 3e-3, model=None) -> TrainedModel:
    """Train ``model_name`` from the zoo (or the given ``model``) on digits; deterministic for a seed.

    AdamW with a one-cycle schedule; fixed seeds for weights, shuffling and the split.
    se_resnet18 at 32x32 for 3 epochs reaches 98.5% held-out top-1 (seed 0); one epoch
    costs about 14 s of a quiet 2-core CPU.
    """
    import torch

    if epochs <= 0:
        raise UsageError(f"epochs must be > 0, got {epochs}")
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    np.random.seed(seed)
    x_tr, y_tr, x_te, y_te = digits_arrays(image_size, seed)
    if model is None:
        model = create_model(model_name, num_classes=10)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = (len(x_tr) + batch_size - 1) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                pct_start=0.25)
    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.05)
    history = []
    for epoch in range(epochs):
        order = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(xt), batch_size):
            idx = order[i:i + batch_size]
            if len(idx) < 2:  # BatchNorm needs more than one sample
                continue
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        history.append({"epoch": epoch + 1, "loss": total / len(xt)})
    model.eval()
    acc = _accuracy(model, x_te, y_te)
    train_acc = _accuracy(model, x_tr[:256], y_tr[:256])
    return TrainedModel(model, model_name, x_tr, y_tr, x_te, y_te, acc, train_acc,
                        round(time.perf_counter() - t0, 1), seed, epochs, image_size, history)


def export_trained(trained: TrainedModel, output: str | Path, *, dynamic_batch: bool = True, **overrides) -> Path:
    """Export the trained model to ONNX with se-deploy's exporter (parity-checked, with sidecar)."""
    export_model(trained.model, output, input_shape=trained.input_shape, dynamic_batch=dynamic_batch,
                 source={"kind": "quick-train", **trained.describe()}, **overrides)
    return Path(output)


#: What :func:`write_demo` writes into its folder.
DEMO_FILES = ("model.onnx", "calib.npz", "eval.npz")


@dataclass(frozen=True)
class DemoFiles:
    """What :func:`write_demo` wrote, with the figures the command reports."""
    model: Path
    calib: Path
    eval: Path
    accuracy: float
    seconds: float
    calib_samples: int
    eval_samples: int


def write_demo(output_dir: str | Path, model_name: str = "se_resnet18", *, seed: int = 0,
               epochs: int = DEFAULT_EPOCHS, image_size: int = 32) -> DemoFiles:
    """Train ``model_name`` on digits and write ``model.onnx``, ``calib.npz`` and ``eval.npz`` into ``output_dir``
    (created when its parent exists)."""
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"output path is not a folder: {out}")
    if not out.parent.is_dir():
        raise UsageError(f"parent folder does not exist: {out.parent}")
    out.mkdir(exist_ok=True)
    trained = quick_train(model_name, seed=seed, epochs=epochs, image_size=image_size)
    model = export_trained(trained, out / "model.onnx")
    trained.calibration_set().save_npz(out / "calib.npz")
    trained.eval_set().save_npz(out / "eval.npz")
    return DemoFiles(model, out / "calib.npz", out / "eval.npz", trained.accuracy, trained.seconds,
                     len(trained.y_train), len(trained.y_test))


__all__ = ["DEFAULT_EPOCHS", "DEMO_FILES", "DemoFiles", "TrainedModel", "digits_arrays", "export_trained", "quick_train",
           "write_demo"]
