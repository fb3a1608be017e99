"""Numerical comparison used by every proof: export parity, graph passes, quantization, engines."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Comparison:
    """How far ``got`` is from ``ref``. ``rel_max_abs`` = max|got-ref| / max(max|ref|, eps)."""

    max_abs: float
    rel_max_abs: float
    mean_abs: float
    cosine: float
    sqnr_db: float
    top1_agreement: float | None
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def compare_arrays(ref: np.ndarray, got: np.ndarray) -> Comparison:
    ref = np.asarray(ref, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if ref.shape != got.shape:
        raise ValueError(f"shape mismatch: reference {ref.shape} vs candidate {got.shape}")
    diff = got - ref
    max_abs = float(np.max(np.abs(diff))) if diff.size else 0.0
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    rel = max_abs / max(scale, 1e-12)
    r = ref.reshape(ref.shape[0], -1) if ref.ndim >= 1 and ref.size else ref.reshape(1, -1)
    g = got.reshape(r.shape)
    nr = np.linalg.norm(r, axis=1)
    ng = np.linalg.norm(g, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where((nr > 0) & (ng > 0), np.sum(r * g, axis=1) / (nr * ng), np.where(nr == ng, 1.0, 0.0))
    noise = float(np.sum(diff**2))
    signal = float(np.sum(ref**2))
    if noise == 0.0:
        sqnr = float("inf")
    elif signal == 0.0:
        sqnr = float("-inf")
    else:
        sqnr = 10.0 * np.log10(signal / noise)
    top1 = None
    if ref.ndim == 2 and ref.shape[1] > 1:
        top1 = float(np.mean(np.argmax(ref, axis=1) == np.argmax(got, axis=1)))
    return Comparison(max_abs, rel, float(np.mean(np.abs(diff))) if diff.size else 0.0, float(np.mean(cos)),
                      float(sqnr), top1, int(ref.shape[0]) if ref.ndim else 1)


def probe_inputs(shape: Sequence[int], batch_sizes: Sequence[int] = (), seed: int = 0,
                 dtype=np.float32) -> list[tuple[str, np.ndarray]]:
    """Deterministic test inputs: random normal and constant, for each batch size.

    ``shape`` is the full input shape; when ``batch_sizes`` is given, dim 0 is replaced.
    Constant inputs catch folding bugs that random inputs average away.
    """
    rng = np.random.default_rng(seed)
    sizes = list(batch_sizes) or [shape[0]]
    out = []
    for b in sizes:
        s = (b, *shape[1:])
        out.append((f"random(b={b})", rng.standard_normal(s).astype(dtype)))
        out.append((f"constant(b={b})", np.full(s, 0.5, dtype=dtype)))
    return out
