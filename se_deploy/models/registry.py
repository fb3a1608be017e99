"""Model registry: the zoo's catalogue, and ``create_model`` / ``list_models`` over it.

Entries name their factory as ``"module:function"`` with fixed keyword arguments, so the
catalogue is plain data: listing models imports no PyTorch, and the model modules never
import the registry. ``register_model`` adds more entries (tests, plugins).
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from dataclasses import dataclass, field
from typing import Callable

from se_deploy.errors import ModelError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    factory: str | Callable  # "module:function", or the callable itself
    family: str
    se: bool
    plain_twin: str | None
    description: str
    kwargs: dict = field(default_factory=dict)

    def build(self, **kwargs):
        fn = self.factory
        if isinstance(fn, str):
            module, _, attr = fn.partition(":")
            fn = getattr(importlib.import_module(module), attr)
        return fn(**{**self.kwargs, **kwargs})


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, factory: str | Callable, *, family: str, se: bool, plain_twin: str | None = None,
                   description: str = "", **kwargs) -> None:
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} registered twice")
    _REGISTRY[name] = ModelEntry(name, factory, family, se, plain_twin, description, dict(kwargs))


def _register_zoo() -> None:
    for depth in (18, 34, 50, 101, 152):
        for se in (True, False):
            register_model(f"{'se_' if se else ''}resnet{depth}", "se_deploy.models.resnet:resnet", family="resnet",
                           se=se, plain_twin=f"resnet{depth}" if se else None, depth=depth,
                           description=f"{'SE-' if se else ''}ResNet-{depth}"
                           + (" (SE r=16 before the residual add)" if se else ""))
    for se in (True, False):
        register_model(f"{'se_' if se else ''}resnext50_32x4d", "se_deploy.models.resnet:resnext50_32x4d",
                       family="resnext", se=se, plain_twin="resnext50_32x4d" if se else None,
                       description=f"{'SE-' if se else ''}ResNeXt-50 32x4d")
        p = "se_" if se else ""
        register_model(f"{p}mobilenet_v1", "se_deploy.models.mobilenet:MobileNetV1", family="mobilenet_v1", se=se,
                       plain_twin="mobilenet_v1" if se else None,
                       description=f"{'SE-' if se else ''}MobileNet (V1)" + (", SE r=16 after each block" if se else ""))
        register_model(f"{p}mobilenet_v2", "se_deploy.models.mobilenet:MobileNetV2", family="mobilenet_v2", se=se,
                       plain_twin="mobilenet_v2" if se else None,
                       description=f"{'SE-' if se else ''}MobileNetV2"
                       + (", SE r=4 after the depthwise conv" if se else ""))


_register_zoo()


def list_models(pattern: str = "*", *, se: bool | None = None) -> list[str]:
    names = sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))
    if se is not None:
        names = [n for n in names if _REGISTRY[n].se == se]
    return names


def get_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelError(f"unknown model {name!r}{hint} (see `se-deploy models` for the list)")
    return _REGISTRY[name]


def is_registered(name: str) -> bool:
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
            model = entry.build(se=entry.se, **kwargs)
    except (TypeError, ValueError) as e:
        raise ModelError(f"cannot create {name}: {e}") from None
    return model.eval()
