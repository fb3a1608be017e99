"""Option groups that several commands share, declared once (as Polygraphy's ``DataLoaderArgs`` does),
and each command's declaration of the files it reads and writes.

``@data_options`` adds the data options (``--preprocess --resize --crop --mean --std --bgr
--scale/--no-scale --input-shape --seed --strict``) to a command, and hands the command one
:class:`~se_deploy.calibration.data_options.DataOptions` argument named ``data`` instead.

``@files(inputs=..., outputs=...)`` names the parameters that are input files and output files;
before the command body runs, :func:`se_deploy.files.refuse_clobbering` rejects an output that is
the same file as an input or as another output. Every command declares (``@files()`` for one that
writes nothing), and a test runs the check over every declaration.
"""

from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import typer

from se_deploy._util import sidecar_path
from se_deploy.calibration.data_options import DataOptions
from se_deploy.files import refuse_clobbering

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


Derived = Callable[[Mapping[str, Any]], Mapping[str, Any]]


@dataclass(frozen=True)
class FileDeclaration:
    """The files a command reads and writes, by parameter name.

    ``sidecars``: outputs that get a ``.json`` sidecar beside them (it is an output too).
    ``derived``: ``parameter values -> {label: path(s)}`` for outputs the command makes from its
    options (defaults such as ``model.plan``, files inside an output folder).
    """

    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    sidecars: tuple[str, ...] = ()
    derived: Derived | None = None

    @property
    def writes(self) -> bool:
        return bool(self.outputs or self.derived)


def _label(param: inspect.Parameter) -> str:
    info = param.default
    decls = getattr(info, "param_decls", None) or ()
    if isinstance(info, typer.models.OptionInfo) and decls:
        return next((d for d in decls if d.startswith("--")), decls[0])
    return getattr(info, "metavar", None) or param.name.upper()


def files(*, inputs: tuple[str, ...] = (), outputs: tuple[str, ...] = (), sidecars: tuple[str, ...] = (),
          derived: Derived | None = None) -> Callable:
    """Declare which parameters are input and output files; refuse clobbering before the body runs."""
    decl = FileDeclaration(tuple(inputs), tuple(outputs), tuple(sidecars), derived)

    def deco(fn: Callable) -> Callable:
        sig = inspect.signature(fn)
        unknown = [n for n in (*inputs, *outputs, *sidecars) if n not in sig.parameters]
        if unknown or not set(sidecars) <= set(outputs):
            raise TypeError(f"{fn.__name__}: @files names unknown parameters or a sidecar of no output: "
                            f"{unknown or sorted(set(sidecars) - set(outputs))}")
        labels = {n: _label(sig.parameters[n]) for n in (*inputs, *outputs)}

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            values = {n: p.default for n, p in sig.parameters.items()}
            values.update(sig.bind_partial(*args, **kwargs).arguments)
            refuse_clobbering(*declared_paths(decl, labels, values))
            return fn(*args, **kwargs)

        wrapper.__se_files__ = decl
        return wrapper

    return deco


def declared_paths(decl: FileDeclaration, labels: Mapping[str, str],
                   values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """({label: input path(s)}, {label: output path(s)}) for one invocation."""
    ins = {f"the input {labels[n]}": values[n] for n in decl.inputs}
    outs: dict[str, Any] = {}
    for n in decl.outputs:
        v = values[n]
        outs[labels[n]] = v
        if n in decl.sidecars and isinstance(v, (str, Path)):
            outs[f"the sidecar of {labels[n]}"] = sidecar_path(v)
    if decl.derived is not None:
        outs.update(decl.derived(values))
    return ins, outs


def file_declaration(callback: Callable) -> FileDeclaration | None:
    """The declaration of a registered command's callback, through any wrappers."""
    return getattr(callback, "__se_files__", None)


__all__ = ["FileDeclaration", "PRESET_HELP", "data_options", "declared_paths", "file_declaration", "files"]
