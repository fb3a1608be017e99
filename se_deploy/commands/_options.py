"""Option groups that several commands share, declared once (as Polygraphy's ``DataLoaderArgs`` does).

``@data_options`` adds the data options (``--preprocess --resize --crop --mean --std --bgr
--scale/--no-scale --input-shape --seed --strict``) to a command, and hands the command one
:class:`~se_deploy.calibration.data_options.DataOptions` argument named ``data`` instead.
"""

from __future__ import annotations

import functools
import inspect
import typing
from typing import Callable, Optional

import typer

from se_deploy.calibration.data_options import DataOptions

PRESET_HELP = ("Preprocessing preset for image folders: imagenet (resize 256, crop 224, mean/std) or none. "
               "Default: imagenet for folders, none for .npz/.npy.")

# name -> (annotation, typer option). The names are DataOptions' fields.
_DATA_OPTIONS: dict[str, tuple[object, object]] = {
    "preset": (Optional[str], typer.Option(None, "--preprocess", help=PRESET_HELP)),
    "resize": (Optional[int], typer.Option(None, "--resize", help="Resize the shorter side to N pixels.")),
    "crop": (Optional[int], typer.Option(None, "--crop", help="Centre crop N x N.")),
    "mean": (Optional[str], typer.Option(None, "--mean", help="Per-channel mean, e.g. 0.485,0.456,0.406.")),
    "std": (Optional[str], typer.Option(None, "--std", help="Per-channel std, e.g. 0.229,0.224,0.225.")),
    "bgr": (bool, typer.Option(False, "--bgr", help="Feed channels as BGR.")),
    "scale": (Optional[bool], typer.Option(None, "--scale/--no-scale", help="Divide pixels by 255.")),
    "input_shape": (Optional[str], typer.Option(None, "--input-shape",
                                                help="NxCxHxW filling the model's dynamic dimensions.")),
    "seed": (int, typer.Option(0, "--seed", help="Seed for subset choice and the held-out split.")),
    "strict": (bool, typer.Option(False, "--strict", help="Fail on a corrupt image instead of skipping it.")),
}


def data_options(fn: Callable) -> Callable:
    """Give ``fn(..., data: DataOptions)`` the data options as command-line flags."""
    hints = typing.get_type_hints(fn)
    sig = inspect.signature(fn)
    if "data" not in sig.parameters:
        raise TypeError(f"{fn.__name__} must take a 'data' parameter to use @data_options")
    params = [p for p in sig.parameters.values() if p.name != "data"]
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=ann)
             for name, (ann, option) in _DATA_OPTIONS.items()]

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        values = {name: kwargs.pop(name) for name in _DATA_OPTIONS}
        return fn(*args, data=DataOptions(**values), **kwargs)

    wrapper.__signature__ = sig.replace(parameters=params + extra)
    annotations = {k: v for k, v in hints.items() if k != "data"}
    annotations.update({name: ann for name, (ann, _) in _DATA_OPTIONS.items()})
    wrapper.__annotations__ = annotations
    return wrapper


__all__ = ["PRESET_HELP", "data_options"]
