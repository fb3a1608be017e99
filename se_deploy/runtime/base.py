"""The runner interface that bench/, accuracy and parity code talk to.

A runner has a context-managed lifecycle (activate on ``__enter__``, release on
``__exit__``), describes its inputs and outputs, checks each feed against them, and
records the timing of the last ``infer`` call, split into host->device copy, compute
and device->host copy where the backend can tell them apart.
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from se_deploy.errors import EngineError, InputError


@dataclass(frozen=True)
class IOSpec:
    name: str
    shape: tuple  # ints, or str/None for dynamic dims
    dtype: str  # numpy dtype name, e.g. "float32"

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass
class Timing:
    """Milliseconds spent in the last call. ``h2d_ms``/``d2h_ms`` are None when not separable."""

    total_ms: float = 0.0
    compute_ms: float = 0.0
    h2d_ms: float | None = None
    d2h_ms: float | None = None
    extra: dict = field(default_factory=dict)


class Runner(abc.ABC):
    backend: str = "abstract"

    def __init__(self) -> None:
        self._active = False
        self.last_timing = Timing()

    # lifecycle -------------------------------------------------------------
    def __enter__(self) -> "Runner":
        if not self._active:
            self.activate()
            self._active = True
        return self

    def __exit__(self, *exc) -> None:
        if self._active:
            self.deactivate()
            self._active = False

    @abc.abstractmethod
    def activate(self) -> None: ...

    def deactivate(self) -> None:
        return None

    # metadata --------------------------------------------------------------
    @property
    @abc.abstractmethod
    def inputs(self) -> list[IOSpec]: ...

    @property
    @abc.abstractmethod
    def outputs(self) -> list[IOSpec]: ...

    def describe(self) -> dict:
        return {"backend": self.backend}

    # inference -------------------------------------------------------------
    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self._active:
            raise EngineError(f"{self.backend} runner used outside its context (use 'with runner:')")
        self.check_feed(feed)
        self._split: dict = {}
        t0 = time.perf_counter()
        out = self._infer(feed)
        total = (time.perf_counter() - t0) * 1e3
        # Backends that can separate copies from compute fill self._split inside _infer.
        self.last_timing = Timing(total_ms=total, compute_ms=self._split.get("compute_ms", total),
                                  h2d_ms=self._split.get("h2d_ms"), d2h_ms=self._split.get("d2h_ms"))
        return out

    @abc.abstractmethod
    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def check_feed(self, feed: Mapping[str, np.ndarray]) -> None:
        expected = {s.name: s for s in self.inputs}
        missing = [n for n in expected if n not in feed]
        extra = [n for n in feed if n not in expected]
        if missing or extra:
            raise InputError(f"feed does not match the model inputs: missing {missing}, unexpected {extra}; "
                             f"expected {sorted(expected)}")
        for name, arr in feed.items():
            spec = expected[name]
            if not isinstance(arr, np.ndarray):
                raise InputError(f"input {name!r}: expected a numpy array, got {type(arr).__name__}")
            if np.dtype(arr.dtype).name != spec.dtype:
                raise InputError(f"input {name!r}: dtype {np.dtype(arr.dtype).name}, model expects {spec.dtype}")
            if len(arr.shape) != len(spec.shape):
                raise InputError(f"input {name!r}: rank {len(arr.shape)} {tuple(arr.shape)}, "
                                 f"model expects rank {len(spec.shape)} {tuple(spec.shape)}")
            for got, want in zip(arr.shape, spec.shape):
                if isinstance(want, int) and want > 0 and got != want:
                    raise InputError(f"input {name!r}: shape {tuple(arr.shape)}, model expects {tuple(spec.shape)}")
