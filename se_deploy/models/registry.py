"""Model registry: ``register_model`` fills it, ``create_model`` / ``list_models`` query it."""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from typing import Callable

from se_deploy.errors import ModelError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    factory: Callable
    family: str
    se: bool
    plain_twin: str | None
    description: str


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, factory: Callable, *, family: str, se: bool, plain_twin: str | None = None,
                   description: str = "") -> None:
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} registered twice")
    _REGISTRY[name] = ModelEntry(name, factory, family, se, plain_twin, description)


def _ensure_loaded() -> None:
    # Import for the side effect of registration.
    from se_deploy.models import mobilenet, resnet  # noqa: F401


def list_models(pattern: str = "*", *, se: bool | None = None) -> list[str]:
    _ensure_loaded()
    names = sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))
    if se is not None:
        names = [n for n in names if _REGISTRY[n].se == se]
    return names


def get_entry(name: str) -> ModelEntry:
    _ensure_loaded()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelError(f"unknown model {name!r}{hint} (see `se-deploy models` for the list)")
    return _REGISTRY[name]


def is_registered(name: str) -> bool:
    _ensure_loaded()
    return name in _REGISTRY


def plain_twin(name: str) -> str | None:
    """The zoo model with the same code and SE switched off, or None (plain models, unknown SE models)."""
    return get_entry(name).plain_twin


def create_model(name: str, *, seed: int | None = 0, **kwargs):
    """Create a zoo model in eval mode. kwargs: num_classes, reduction, se_gate, ... (per family).

    Random initial weights are drawn from ``seed`` (without touching the global RNG), so the
    same name and seed always give the same network: a sidecar can recreate its reference.
    """
    import torch

    entry = get_entry(name)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if not entry.se:
        kwargs = {k: v for k, v in kwargs.items() if k not in ("reduction", "se_gate", "se_fc")}
    try:
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            model = entry.factory(**kwargs)
    except (TypeError, ValueError) as e:
        raise ModelError(f"cannot create {name}: {e}") from None
    return model.eval()
