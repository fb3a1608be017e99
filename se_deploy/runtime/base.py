"""The runner interface that bench/, accuracy and parity code talk to.

A runner has a context-managed lifecycle (activate on ``__enter__``, release on
``__exit__``), describes its inputs and outputs, checks each feed against them, and
returns each ``infer`` call's outputs together with its timing, split into host->device
copy, compute and device->host copy where the backend can tell them apart.
"""

from __future__ import annotations

import abc
import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Iterator

import numpy as np

from se_deploy.errors import EngineError, InputError, UsageError


@dataclass(frozen=True)
class IOSpec:
    name: str
    shape: tuple  # ints, or str/None for dynamic dims
    dtype: str  # numpy dtype name, e.g. "float32"

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class Timing:
    """Milliseconds spent in one ``infer`` call. ``h2d_ms``/``d2h_ms`` are None when not separable."""

    total_ms: float = 0.0
    compute_ms: float = 0.0
    h2d_ms: float | None = None
    d2h_ms: float | None = None


@dataclass(frozen=True)
class CopySplit:
    """What a backend that can tell copies from compute measured inside ``_infer``."""

    h2d_ms: float
    compute_ms: float
    d2h_ms: float


class Inference(Mapping):
    """The outputs of one ``infer`` call (a read-only mapping name -> array) and its timing."""

    __slots__ = ("outputs", "timing")

    def __init__(self, outputs: dict[str, np.ndarray], timing: Timing) -> None:
        self.outputs = outputs
        self.timing = timing

    def __getitem__(self, name: str) -> np.ndarray:
        return self.outputs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.outputs)

    def __len__(self) -> int:
        return len(self.outputs)


@dataclass(frozen=True)
class Capabilities:
    """What a backend honours, so callers ask the runner instead of branching on its name.

    ``threads``: takes a host intra-op thread count (``threads`` option).
    ``spinning``: its idle threads busy-wait unless told not to (``allow_spinning`` option);
    bench turns that off when several runners are timed interleaved in one process.
    ``profiling``: ``profile(feed, iters)`` returns per-node kernel times.
    """

    threads: bool = False
    spinning: bool = False
    profiling: bool = False


@dataclass(frozen=True)
class NodeTime:
    """One executed node's mean kernel time per inference.

    ``name``/``op_type`` are the backend's own (after its fusions); ``covers`` lists the
    model's original ONNX node names this kernel executes (empty when the backend's
    profiler gives no way to tell: reported as unattributed, never guessed).
    """

    name: str
    op_type: str
    time_us: float
    covers: tuple[str, ...] = ()
    provider: str = ""


@dataclass(frozen=True)
class NodeProfile:
    """What ``Runner.profile`` measured: per-node times, each profiled run's wall time, and notes."""

    nodes: tuple[NodeTime, ...]
    runs_ms: tuple[float, ...]
    notes: tuple[str, ...] = ()
    details: dict = field(default_factory=dict)


class Runner(abc.ABC):
    """Lifecycle: ``with runner:`` activates it (and releases everything again when activation
    fails half-way); ``infer(feed)`` checks the feed and returns outputs with their timing."""

    backend: str = "abstract"
    capabilities: ClassVar[Capabilities] = Capabilities()
    #: The frozen dataclass holding this backend's options (``OrtConfig``, ``TorchConfig`` ...).
    config_class: ClassVar[type | None] = None

    @classmethod
    def from_options(cls, artifact, options: Mapping[str, object]) -> "Runner":
        """A runner for ``artifact`` with ``options`` as its config fields; an unknown option is refused."""
        if cls.config_class is None:
            if options:
                raise UsageError(f"the {cls.backend} backend takes no options, got {sorted(options)}")
            return cls(artifact)
        names = [f.name for f in dataclasses.fields(cls.config_class)]
        unknown = [k for k in options if k not in names]
        if unknown:
            raise UsageError(f"unknown {cls.backend} option(s) {unknown}; allowed: {', '.join(sorted(names))}")
        return cls(artifact, cls.config_class(**options))

    def __init__(self) -> None:
        self._active = False

    # lifecycle -------------------------------------------------------------
    def __enter__(self) -> "Runner":
        if not self._active:
            try:
                self.activate()
            except BaseException:
                self.deactivate()  # a half-activated runner must not leak sessions, contexts or buffers
                raise
            self._active = True
        return self

    def __exit__(self, *exc) -> None:
        if self._active:
            self.deactivate()
            self._active = False

    @abc.abstractmethod
    def activate(self) -> None: ...

    def deactivate(self) -> None:
        """Release everything ``activate`` acquired; must tolerate a partial activation."""
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
    def infer(self, feed: Mapping[str, np.ndarray]) -> Inference:
        if not self._active:
            raise EngineError(f"{self.backend} runner used outside its context (use 'with runner:')")
        self.check_feed(feed)
        t0 = time.perf_counter()
        outputs, split = self._infer(feed)
        total = (time.perf_counter() - t0) * 1e3
        if split is None:
            timing = Timing(total_ms=total, compute_ms=total)
        else:
            timing = Timing(total_ms=total, compute_ms=split.compute_ms, h2d_ms=split.h2d_ms, d2h_ms=split.d2h_ms)
        return Inference(outputs, timing)

    @abc.abstractmethod
    def _infer(self, feed: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], CopySplit | None]:
        """Run once; return the outputs and, where the backend can separate them, the copy/compute split."""

    def profile(self, feed: Mapping[str, np.ndarray], *, iters: int, warmup: int = 3) -> NodeProfile:
        """Per-node kernel times averaged over ``iters`` runs after ``warmup`` untimed ones
        (backends with ``capabilities.profiling``)."""
        raise EngineError(f"the {self.backend} backend has no per-node profiler")

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
