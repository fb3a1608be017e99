"""Where a model comes from: the zoo, ``timm:NAME``, ``package.module:factory``, or a checkpoint file.

Checkpoints load with ``torch.load(weights_only=True)``: tensors and plain containers only,
no arbitrary code. A full pickled ``nn.Module`` needs ``unsafe_pickle=True`` and the user's
explicit consent (``--unsafe-pickle``), because unpickling runs code from the file.
"""

from __future__ import annotations

import importlib
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from se_deploy._util import lazy_import, sha256_file
from se_deploy.errors import InputError, ModelError, first_line
from se_deploy.models.layers import SqueezeExcite
from se_deploy.models.registry import create_model, get_entry, is_registered

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
#: torch.save writes a zip archive; older torch (and plain pickles) start with the pickle protocol opcode.
_CHECKPOINT_MAGIC = (b"PK\x03\x04", b"\x80")
_FACTORY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass
class LoadedModel:
    module: Any  # torch.nn.Module in eval mode
    source: dict = field(default_factory=dict)  # provenance, written into sidecars
    zoo_name: str | None = None

    @property
    def plain_twin(self) -> str | None:
        return get_entry(self.zoo_name).plain_twin if self.zoo_name else None


def count_se_modules(module) -> int:
    """Count SE modules: ours, plus timm's / common third-party SE class names."""
    n = 0
    for m in module.modules():
        name = type(m).__name__
        if isinstance(m, SqueezeExcite) or name in {"SEModule", "SqueezeExcite", "SELayer", "SqueezeExcitation",
                                                     "EffectiveSEModule"}:
            n += 1
    return n


def _read_checkpoint(path: Path, *, unsafe_pickle: bool) -> Any:
    import torch

    if not path.exists():
        raise InputError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise InputError(f"checkpoint path is a directory: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file, safe_open

        try:
            tensors = load_file(str(path))
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise InputError(f"corrupt safetensors checkpoint {path}: {first_line(e)}") from None
        return {"state_dict": tensors, **({"arch": meta["arch"]} if "arch" in meta else {})}
    with open(path, "rb") as f:
        head = f.read(4)
    if not head.startswith(_CHECKPOINT_MAGIC):
        raise InputError(f"{path} is not a PyTorch checkpoint (neither torch.save's zip archive nor a pickle); "
                         "give a .pt/.pth/.safetensors file of weights")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=not unsafe_pickle)
    except Exception as e:
        msg = first_line(e)
        # Only a file that unpickles into objects gets the --unsafe-pickle advice: torch says so with "Unsupported
        # global" ("This file can still be loaded"); a corrupt or truncated file fails the same call otherwise.
        if not unsafe_pickle and ("Unsupported global" in str(e) or "can still be loaded" in str(e)):
            raise InputError(f"checkpoint {path} holds more than tensors (a pickled object); refusing to unpickle it. "
                             "If you trust the file, pass --unsafe-pickle") from None
        raise InputError(f"corrupt or unreadable checkpoint {path}: {msg}") from None


def _state_dict_of(obj: Any, path: Path) -> dict:
    import torch

    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model", "ema"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
        sd = {k[7:] if k.startswith("module.") else k: v for k, v in obj.items()}
        if not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise InputError(f"checkpoint {path} is not a state_dict (expected a mapping of names to tensors)")
        return sd
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    raise InputError(f"checkpoint {path} holds a {type(obj).__name__}, not a state_dict")


def load_weights(module, path: str | Path, *, unsafe_pickle: bool = False) -> dict:
    """Load a state_dict file into ``module`` (strict). Returns provenance for the sidecar."""
    path = Path(path)
    sd = _state_dict_of(_read_checkpoint(path, unsafe_pickle=unsafe_pickle), path)
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
        raise ModelError(f"checkpoint {path} does not match the model: keys " + ", ".join(parts))
    for k, v in sd.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ModelError(f"checkpoint {path} does not match the model: {k} has shape {tuple(v.shape)}, "
                             f"model expects {tuple(own[k].shape)}")
    module.load_state_dict(sd, strict=True)
    return {"weights": str(path), "weights_sha256": sha256_file(path)}


def load_model(spec: str, *, num_classes: int | None = None, reduction: int | None = None,
               weights: str | Path | None = None, unsafe_pickle: bool = False, **kwargs) -> LoadedModel:
    """Resolve ``spec`` to a torch module in eval mode.

    ``spec``: a zoo name (``se_resnet50``), ``timm:NAME``, ``package.module:factory``, or a
    checkpoint file. A checkpoint without an architecture needs a model spec plus ``weights``.
    """
    if unsafe_pickle:
        warnings.warn("--unsafe-pickle: unpickling runs code stored in the checkpoint; only use trusted files",
                      stacklevel=2)
    opts = {k: v for k, v in dict(num_classes=num_classes, reduction=reduction, **kwargs).items() if v is not None}
    source: dict = {"spec": spec}
    zoo_name = None
    if spec.startswith("timm:"):
        timm = lazy_import("timm", install_hint="pip install timm  (or: pip install 'se-deploy[timm]')",
                           purpose=f"model {spec}")
        name = spec[5:]
        if reduction is not None:
            raise InputError("--reduction applies to zoo models only; timm models define their own SE ratio")
        try:
            module = timm.create_model(name, pretrained=False, **({"num_classes": num_classes} if num_classes else {}))
        except Exception as e:  # timm raises RuntimeError for unknown names
            raise ModelError(f"timm cannot create {name!r}: {first_line(e)}") from None
        source.update(kind="timm", timm_version=getattr(timm, "__version__", "unknown"))
    elif Path(spec).suffix in CHECKPOINT_SUFFIXES or Path(spec).is_file():
        path = Path(spec)
        obj = _read_checkpoint(path, unsafe_pickle=unsafe_pickle)
        import torch

        if isinstance(obj, torch.nn.Module):
            module = obj
            source.update(kind="pickled_module", weights_sha256=sha256_file(path))
        else:
            arch = obj.get("arch") if isinstance(obj, dict) else None
            if not isinstance(arch, str):
                raise InputError(f"checkpoint {path} holds a state_dict without an architecture name; "
                                 f"pass the model name with --weights {path}")
            loaded = load_model(arch, num_classes=num_classes, reduction=reduction, **kwargs)
            sd = _state_dict_of(obj, path)
            if num_classes is None:
                fc = [v for k, v in sd.items() if k.endswith(("fc.weight", "classifier.1.weight"))]
                if fc and loaded.module.state_dict().get("fc.weight", fc[0]).shape != fc[0].shape:
                    loaded = load_model(arch, num_classes=int(fc[0].shape[0]), reduction=reduction, **kwargs)
            source.update(load_weights(loaded.module, path))
            source.update(kind="checkpoint", arch=arch)
            return LoadedModel(loaded.module.eval(), source, loaded.zoo_name)
    elif _FACTORY_RE.match(spec) and not is_registered(spec):
        mod_name, fn_name = spec.split(":")
        try:
            mod = importlib.import_module(mod_name)
        except ImportError as e:
            raise ModelError(f"cannot import {mod_name!r} for model {spec}: {e}") from None
        fn = getattr(mod, fn_name, None)
        if not callable(fn):
            raise ModelError(f"{mod_name!r} has no callable {fn_name!r}")
        call = f"{spec}({', '.join(f'{k}=' for k in opts)})"
        try:
            module = fn(**opts)
        except SystemExit as e:  # sys.exit() inside a factory must not end se-deploy with success
            raise ModelError(f"{call} exited (SystemExit {e.code!r}) instead of returning a model") from None
        except Exception as e:
            raise ModelError(f"{call} failed: {type(e).__name__}: {first_line(e)}") from None
        import torch

        if not isinstance(module, torch.nn.Module):
            raise ModelError(f"{call} returned a {type(module).__name__}, not a torch.nn.Module")
        source.update(kind="factory")
    else:
        module = create_model(spec, **opts)
        zoo_name = spec
        source.update(kind="zoo", **opts)
    if weights is not None:
        source.update(load_weights(module, weights, unsafe_pickle=unsafe_pickle))
    return LoadedModel(module.eval(), source, zoo_name)
