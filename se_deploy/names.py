"""Every closed set of names se-deploy accepts, defined once.

Config types, CLI choices, error messages and dispatch tables all take their names from
here, so a config can never accept a name that a stage does not know (the pipeline once
accepted ``exporter = "torchscript"`` and failed at run time). Adding a backend is one
line in :class:`Backend`; :class:`EngineBackend` follows it.

This module sits at the bottom of the package and imports only the standard library.
"""

from __future__ import annotations

import enum


class Name(str, enum.Enum):
    """A name that compares, hashes, prints and formats as its plain string value.

    With ``str`` mixed into ``Enum``, ``f"{Backend.onnxruntime}"`` gives the value up to
    Python 3.11 but ``Backend.onnxruntime`` from 3.12 on, so ``__str__`` and ``__format__``
    are pinned to the value here. ``enum.StrEnum`` does the same, but it is new in 3.11
    and JetPack 6 ships Python 3.10.
    """

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(m.value for m in cls)

    @classmethod
    def choices(cls) -> str:
        """``"a, b, c"``: the allowed values as error messages list them."""
        return ", ".join(cls.values())


class Backend(Name):
    """Runtimes that run a model (one runner each in se_deploy.runtime)."""

    onnxruntime = "onnxruntime"
    tensorrt = "tensorrt"
    torch = "torch"


# The pipeline's engine choice: "auto" or a backend that runs a built artifact. torch is
# left out because it runs the eager PyTorch model, the reference, not an engine.
EngineBackend = Name("EngineBackend", [("auto", "auto")] + [(b.name, b.value) for b in Backend
                                                            if b is not Backend.torch])

# se-budget times ONNX variants of one model: the backends that run an .onnx file directly.
BudgetBackend = Name("BudgetBackend", [(b.name, b.value) for b in Backend if b is Backend.onnxruntime])


class BenchMode(Name):
    """singlestream: p90 latency headline (MLPerf); offline: throughput headline."""

    singlestream = "singlestream"
    offline = "offline"


class Exporter(Name):
    """torch.onnx exporters: dynamo (torch.export) and legacy (TorchScript tracing)."""

    dynamo = "dynamo"
    legacy = "legacy"


class Simplifier(Name):
    onnxsim = "onnxsim"
    onnxslim = "onnxslim"


class Precision(Name):
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


class QuantTarget(Name):
    """The Q/DQ form to write: tensorrt (symmetric s8) or cpu (onnxruntime's u8s8)."""

    tensorrt = "tensorrt"
    cpu = "cpu"


class CalibMethod(Name):
    """How activation ranges are chosen from calibration data."""

    minmax = "minmax"
    entropy = "entropy"
    percentile = "percentile"


class PreprocessPreset(Name):
    none = "none"
    imagenet = "imagenet"


ALL: tuple[type[Name], ...] = (Backend, EngineBackend, BudgetBackend, BenchMode, Exporter, Simplifier, Precision, QuantTarget,
                               CalibMethod, PreprocessPreset)

__all__ = ["ALL", "Backend", "BenchMode", "BudgetBackend", "CalibMethod", "EngineBackend", "Exporter", "Name", "Precision",
           "PreprocessPreset", "QuantTarget", "Simplifier"]
