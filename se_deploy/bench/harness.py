"""Timing harness: warm up, then run candidates interleaved in one process.

This machine's speed drifts (thermal, other tenants, frequency scaling), so timing A
for ten seconds and then B for ten seconds measures the drift as much as the models.
Running A B A B ... in one process exposes both to the same conditions, and rotating
which candidate starts each round (A B, B A, A B ...) cancels the cost of going first
(cache state left by the other candidate, timer placement). Iteration ``i`` of every
candidate comes from the same round, so the series are *paired* and
:func:`se_deploy.bench.stats.ratio_interval` can bootstrap over rounds.
"""

from __future__ import annotations

import time
from typing import Callable, Mapping

from pydantic import NonNegativeFloat, PositiveInt, field_validator, model_validator

from se_deploy.config import BadValue, Config
from se_deploy.errors import UsageError


class Timing(Config):
    """How long to time: the limits :func:`run_interleaved` obeys.

    BenchConfig extends this, so the rule that ties ``max_iters`` to ``min_iters`` lives
    here once, for the CLI, the pipeline and scripts that call the harness directly.
    ``max_iters`` None (or 0, as older pipeline configs spell it) means no cap.
    """

    warmup_s: NonNegativeFloat = 1.0
    min_iters: PositiveInt = 30
    min_duration_s: NonNegativeFloat = 3.0
    max_iters: PositiveInt | None = None

    @field_validator("max_iters", mode="before")
    @classmethod
    def _zero_is_no_cap(cls, v):
        return None if v == 0 and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _cap_covers_minimum(self):
        if self.max_iters is not None and self.max_iters < self.min_iters:
            raise BadValue("max_iters", self.max_iters, f"must be >= min_iters ({self.min_iters}); leave it out "
                                                        "for no cap")
        return self


def warm_up(fn: Callable[[], object], seconds: float, *, clock: Callable[[], float] = time.perf_counter) -> int:
    """Call ``fn`` until ``seconds`` have passed (at least once); return the number of calls."""
    calls = 0
    start = clock()
    while True:
        fn()
        calls += 1
        if clock() - start >= seconds:
            return calls


def run_interleaved(
    candidates: Mapping[str, Callable[[], object]],
    *,
    warmup_s: float = 1.0,
    min_iters: int = 30,
    min_duration_s: float = 3.0,
    max_iters: int | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Time each zero-argument callable, interleaved; return per-iteration latencies in ms.

    Each candidate is first warmed up on its own for ``warmup_s`` seconds (at least one
    call, which also absorbs lazy initialisation). Then rounds run until every candidate
    has ``min_iters`` samples *and* the timed phase has lasted ``min_duration_s`` seconds,
    or until ``max_iters`` rounds. In round ``r`` the candidate order is rotated by ``r``.
    All returned lists have the same length (one entry per round), in round order.
    """
    if not candidates:
        raise UsageError("nothing to benchmark: no candidates given")
    limits = Timing(warmup_s=warmup_s, min_iters=min_iters, min_duration_s=min_duration_s, max_iters=max_iters)
    names = list(candidates)
    for name in names:
        warm_up(candidates[name], limits.warmup_s, clock=clock)

    samples: dict[str, list[float]] = {n: [] for n in names}
    n = len(names)
    start = clock()
    rounds = 0
    while True:
        if limits.max_iters is not None and rounds >= limits.max_iters:
            break
        if rounds >= limits.min_iters and clock() - start >= limits.min_duration_s:
            break
        shift = rounds % n
        for name in names[shift:] + names[:shift]:
            fn = candidates[name]
            t0 = clock()
            fn()
            samples[name].append((clock() - t0) * 1e3)
        rounds += 1
    return samples


__all__ = ["Timing", "run_interleaved", "warm_up"]
