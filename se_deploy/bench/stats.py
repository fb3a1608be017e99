"""Latency statistics: summaries, paired-bootstrap ratio intervals, and the SE tax.

Percentiles use linear interpolation between order statistics (Hyndman & Fan type 7,
numpy's default ``method="linear"``, also Excel's PERCENTILE.INC): for sorted samples
``x[0..n-1]`` the q-th percentile sits at fractional rank ``h = (n - 1) * q / 100`` and is
``x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)])``. So for 1, 2, ..., 100
the median is 50.5 and p90 is 90.1.

``std`` is the sample standard deviation (ddof=1; 0 for a single sample) and ``cv`` is
``std / mean``, the coefficient of variation used to flag noisy runs.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from se_deploy.errors import BenchmarkError, UsageError

PERCENTILE_METHOD = "linear"
PERCENTILE_METHOD_DOC = "linear interpolation between order statistics (Hyndman-Fan type 7, numpy 'linear')"

#: A run whose coefficient of variation exceeds this is reported as noisy.
NOISY_CV = 0.10


def _as_array(ms: Sequence[float], what: str = "latency series") -> np.ndarray:
    a = np.asarray(ms, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise BenchmarkError(f"{what} is empty: nothing was timed")
    if not np.all(np.isfinite(a)):
        raise BenchmarkError(f"{what} contains non-finite values")
    return a


def percentile(ms: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by the module's documented method."""
    if not 0 <= q <= 100:
        raise UsageError(f"percentile must be in [0, 100], got {q}")
    return float(np.percentile(_as_array(ms), q, method=PERCENTILE_METHOD))


def summarize(ms: Sequence[float]) -> dict:
    """min, mean, median, p90, p95, p99, max, std, cv and n of a latency series in ms."""
    a = _as_array(ms)
    p50, p90, p95, p99 = np.percentile(a, [50, 90, 95, 99], method=PERCENTILE_METHOD)
    mean = float(a.mean())
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return {
        "n": int(a.size),
        "min": float(a.min()),
        "mean": mean,
        "median": float(p50),
        "p90": float(p90),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(a.max()),
        "std": std,
        "cv": std / mean if mean > 0 else 0.0,
    }


def throughput(ms: Sequence[float], batch: int) -> float:
    """Items per second at the median latency of a batch of ``batch`` items."""
    med = float(np.median(_as_array(ms)))
    return batch * 1e3 / med if med > 0 else math.inf


def noise_warning(summary: dict, *, threshold: float = NOISY_CV) -> str | None:
    """A one-line warning when a run is too noisy to trust small differences, else None."""
    cv = summary.get("cv", 0.0)
    if cv <= threshold:
        return None
    return (f"noisy run: coefficient of variation {cv:.0%} exceeds {threshold:.0%}; differences smaller than "
            f"the spread are not meaningful - close other workloads, pin threads, or raise --min-duration-s")


def _median_ratio(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(a, axis=axis) / np.median(b, axis=axis)


def ratio_interval(a_ms: Sequence[float], b_ms: Sequence[float], *, confidence: float = 0.95,
                   n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """median(a) / median(b) with a paired percentile-bootstrap interval: (point, lo, hi).

    ``a_ms[i]`` and ``b_ms[i]`` must come from the same interleaved round (as
    :func:`se_deploy.bench.harness.run_interleaved` returns them). Resampling whole rounds
    keeps the drift that both candidates shared, so it cancels in the ratio instead of
    widening the interval.

    The bootstrap is ``scipy.stats.bootstrap(paired=True, method="percentile")``, seeded
    with ``numpy.random.default_rng(seed)``. Percentile, not BCa: BCa is undefined (NaN, with
    a warning) when every resample gives the same ratio, as it does for a constant tax.
    """
    a = _as_array(a_ms, "series A")
    b = _as_array(b_ms, "series B")
    if a.size != b.size:
        raise BenchmarkError(f"paired series differ in length ({a.size} vs {b.size}); run them interleaved")
    if a.size < 2:
        raise BenchmarkError(f"an interval needs at least 2 paired rounds, got {a.size}")
    if not 0 < confidence < 1:
        raise UsageError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 1:
        raise UsageError(f"n_boot must be >= 1, got {n_boot}")
    if np.any(b <= 0) or np.any(a < 0):
        raise BenchmarkError("latencies must be positive")
    from scipy.stats import bootstrap  # scipy.stats takes about a second to import; only bench needs it

    boot = bootstrap((a, b), _median_ratio, paired=True, vectorized=True, n_resamples=n_boot,
                     confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
    ci = boot.confidence_interval
    return float(_median_ratio(a, b)), float(ci.low), float(ci.high)


def se_tax(se_ms: Sequence[float], plain_ms: Sequence[float], *, confidence: float = 0.95, n_boot: int = 2000,
           seed: int = 0) -> dict:
    """The SE tax: how much slower the SE model is than its plain twin, with an interval.

    ``tax_pct = (median(se) / median(plain) - 1) * 100``; ``tax_pct_lo``/``tax_pct_hi`` bound
    it at ``confidence`` by the paired bootstrap of :func:`ratio_interval`.
    """
    point, lo, hi = ratio_interval(se_ms, plain_ms, confidence=confidence, n_boot=n_boot, seed=seed)
    return {
        "ratio": point,
        "ratio_lo": lo,
        "ratio_hi": hi,
        "tax_pct": (point - 1.0) * 100.0,
        "tax_pct_lo": (lo - 1.0) * 100.0,
        "tax_pct_hi": (hi - 1.0) * 100.0,
        "se_median_ms": float(np.median(np.asarray(se_ms, dtype=np.float64))),
        "plain_median_ms": float(np.median(np.asarray(plain_ms, dtype=np.float64))),
        "confidence": confidence,
        "n_boot": n_boot,
        "n_pairs": len(se_ms),
        "method": "paired percentile bootstrap over interleaved rounds of median(SE)/median(plain)",
    }


__all__ = ["NOISY_CV", "PERCENTILE_METHOD_DOC", "noise_warning", "percentile", "ratio_interval", "se_tax",
           "summarize", "throughput"]
