"""Registry of named SE graph passes.

A pass is a function ``fn(model: onnx_ir.Model, ctx: PassContext) -> dict`` that edits the
onnx-ir model in place and returns details for the report (at least ``changed``: how many
SE blocks it rewrote). ``run_passes`` (in ``__init__``) proves each pass numerically and
rolls it back when the proof fails.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from se_deploy.errors import UsageError


@dataclass(frozen=True)
class PassOptions:
    """Settings shared by the passes and their verification.

    ``tolerance``: largest max-abs output error, relative to the output's max magnitude,
    that an exact pass may introduce (float reordering only).
    ``fold_tolerance``: the same bound for fold-gates, which is approximate by design.
    ``fold_min_top1``: fold-gates also needs this top-1 agreement on the calibration data.
    ``gate_std_threshold``: a block's gates count as constant when every channel's gate
    standard deviation over the calibration samples is at most this.
    ``batch_sizes``: batch sizes probed when the model's batch dimension is dynamic.
    ``input_shapes``: shapes for inputs with dynamic non-batch dimensions.
    """

    tolerance: float = 1e-5
    fold_tolerance: float = 1e-2
    fold_min_top1: float | None = 0.99
    gate_std_threshold: float = 0.02
    batch_sizes: tuple[int, ...] = (1, 2)
    input_shapes: Mapping[str, tuple[int, ...]] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.tolerance > 0):
            raise UsageError(f"tolerance must be > 0, got {self.tolerance}")
        if not (self.fold_tolerance > 0):
            raise UsageError(f"fold tolerance must be > 0, got {self.fold_tolerance}")
        if self.fold_min_top1 is not None and not (0.0 <= self.fold_min_top1 <= 1.0):
            raise UsageError(f"minimum top-1 agreement must be within [0, 1], got {self.fold_min_top1}")
        if not (self.gate_std_threshold >= 0):
            raise UsageError(f"gate std threshold must be >= 0, got {self.gate_std_threshold}")
        if not self.batch_sizes or any(int(b) <= 0 for b in self.batch_sizes):
            raise UsageError(f"batch sizes must be positive integers, got {self.batch_sizes}")


@dataclass
class PassContext:
    """What a pass may read besides the graph: options and calibration feeds."""

    options: PassOptions = field(default_factory=PassOptions)
    calib_feeds: Sequence[Mapping[str, np.ndarray]] = ()


class PassKind(str, enum.Enum):
    """What a pass promises, which decides how it is proved.

    ``exact``: the function is unchanged (float reordering only); proved on probe inputs.
    ``approximate``: changes the function within a bound; judged on calibration data.
    ``ablation``: changes the function by design (the plain twin); not a proof target.
    """

    exact = "exact"
    approximate = "approximate"
    ablation = "ablation"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class GraphPass:
    name: str
    fn: Callable
    kind: PassKind
    needs_calibration: bool
    summary: str

    @property
    def exact(self) -> bool:
        return self.kind is PassKind.exact

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind.value, "exact": self.exact,
                "needs_calibration": self.needs_calibration, "summary": self.summary}


_PASSES: dict[str, GraphPass] = {}


def register_pass(name: str, *, kind: PassKind, summary: str, needs_calibration: bool = False) -> Callable:
    def deco(fn: Callable) -> Callable:
        if name in _PASSES:
            raise ValueError(f"pass {name!r} registered twice")
        _PASSES[name] = GraphPass(name, fn, PassKind(kind), needs_calibration, summary)
        return fn

    return deco


def get_pass(name: str) -> GraphPass:
    try:
        return _PASSES[name]
    except KeyError:
        raise UsageError(f"unknown pass {name!r}; available passes: {', '.join(sorted(_PASSES))}") from None


def list_passes() -> list[GraphPass]:
    return list(_PASSES.values())


def parse_pass_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError(f"empty pass list {text!r}; available passes: {', '.join(sorted(_PASSES))}")
    for n in names:
        get_pass(n)
    return names
