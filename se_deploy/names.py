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
    openvino = "openvino"
    tensorrt = "tensorrt"
    torch = "torch"


# The pipeline's engine choice: "auto" or a backend that runs a built artifact. torch is
# left out because it runs the eager PyTorch model, the reference, not an engine.
EngineBackend = Name("EngineBackend", [("auto", "auto")] + [(b.name, b.value) for b in Backend
                                                            if b is not Backend.torch])

# se-budget times ONNX variants of one model: the backends that run an .onnx file directly.
BudgetBackend = Name("BudgetBackend", [(b.name, b.value) for b in Backend if b in (Backend.onnxruntime, Backend.openvino)])


# What bench can time: "auto" (see se_deploy.bench.backend_choice), every runtime, and trtexec (NVIDIA's
# timing tool, which times a TensorRT plan in whole runs of its own process rather than through a runner).
BenchBackend = Name("BenchBackend", [("auto", "auto")] + [(b.name, b.value) for b in Backend] + [("trtexec", "trtexec")])


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
    """What an engine computes in. ``int8fp16`` is TensorRT's best mixed build: INT8 Q/DQ, with the layers
    left unquantized in FP16 (the Q/DQ model written with FP16 high precision), strongly typed."""

    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"
    int8fp16 = "int8fp16"


class QuantTarget(Name):
    """The Q/DQ form to write: tensorrt (symmetric s8) or cpu (onnxruntime's u8s8)."""

    tensorrt = "tensorrt"
    cpu = "cpu"


class HighPrecision(Name):
    """The type of the layers an INT8 Q/DQ model leaves unquantized (ModelOpt's high-precision dtype).

    TensorRT 11 (and 10 with --stronglyTyped) runs every layer in the type the ONNX gives it,
    so fp16 here is what makes the float layers of an INT8 engine FP16.
    """

    fp16 = "fp16"
    fp32 = "fp32"


class SeMode(Name):
    """What of each SE block an INT8 model quantizes.

    cheap: the squeeze reads the INT8 map and the scale Mul reads INT8 map and gate; the
    excitation (FCs, activation, gate) runs in the high-precision type. float: the whole block
    stays float (for comparison). all: the excitation's FCs are INT8 too (``--quantize-se``).
    """

    cheap = "cheap"
    float = "float"
    all = "all"


class QdqRule(Name):
    """The Q/DQ linter's rules (``se-deploy inspect --qdq tensorrt``): placements TensorRT will not fuse."""

    conv_add_qdq = "conv_add_qdq"  # a Q/DQ between a Conv and the Add it would fuse into
    float_residual = "float_residual"  # the residual input of a Conv+Add fusion arrives in float
    se_float_map = "se_float_map"  # an SE squeeze or scale reads (or writes) a float map
    fp32_layer = "fp32_layer"  # a float32 layer: FP32 in a strongly typed build
    inflated_weight_scale = "inflated_weight_scale"  # a weight channel's scale exceeds ~1.01 x amax/127
    int32_bias = "int32_bias"  # an int32 bias DequantizeLinear
    unquantized_input = "unquantized_input"  # a Conv / non-matrix-vector Gemm reads float data or weights
    float_pool = "float_pool"  # a pool feeding INT8 reads a float map
    asymmetric_qdq = "asymmetric_qdq"  # a non-zero or unsigned zero point


class CalibMethod(Name):
    """How activation ranges are chosen from calibration data."""

    minmax = "minmax"
    entropy = "entropy"
    percentile = "percentile"


class PreprocessPreset(Name):
    none = "none"
    imagenet = "imagenet"


ALL: tuple[type[Name], ...] = (Backend, EngineBackend, BenchBackend, BudgetBackend, BenchMode, Exporter, Simplifier,
                               Precision, QuantTarget, HighPrecision, SeMode, QdqRule, CalibMethod, PreprocessPreset)

__all__ = ["ALL", "Backend", "BenchBackend", "BenchMode", "BudgetBackend", "CalibMethod", "EngineBackend", "Exporter",
           "HighPrecision", "Name", "Precision", "PreprocessPreset", "QdqRule", "QuantTarget", "SeMode", "Simplifier"]
