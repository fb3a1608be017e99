"""Per-layer precision summary from TensorRT's engine-inspector JSON (pure Python).

``engine.create_engine_inspector().get_engine_information(LayerInformationFormat.JSON)``
(or ``trtexec --profilingVerbosity=detailed --exportLayerInfo=FILE``) has two schemas:

* 10.x: ``{"Layers": [...], "Bindings": ["input", "output"]}``; each layer's tensors carry
  ``"Format/Datatype": "Row major linear FP32"`` (the type is a word inside the phrase).
* 11.x: ``{"Layers": [...], "I/O Tensors": [{"Name": ..., ...}]}``; each layer's tensors
  carry separate ``"Format"`` and ``"Datatype"`` (also spelled ``"DataType"``) keys.

Without DETAILED profiling verbosity the layers are bare name strings; their precision
is reported as ``unknown``. A layer's precision is the narrowest floating or INT8 type
among its inputs and outputs (an INT8 conv with an FP32 output counts as ``int8``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass

from se_deploy.errors import InputError

SCHEMA_10 = "10.x (Bindings)"
SCHEMA_11 = "11.x (I/O Tensors)"

_DTYPE_WORDS = {
    "fp32": "fp32", "float": "fp32", "float32": "fp32", "kfloat": "fp32",
    "fp16": "fp16", "half": "fp16", "float16": "fp16", "khalf": "fp16",
    "bf16": "bf16", "bfloat16": "bf16",
    "fp8": "fp8", "e4m3": "fp8",
    "fp4": "fp4", "int4": "int4",
    "int8": "int8", "kint8": "int8", "uint8": "uint8",
    "int32": "int32", "int64": "int64", "bool": "bool",
}
# narrowest first; integers of index width and bool are not compute precisions
_COMPUTE_ORDER = ("int4", "fp4", "int8", "fp8", "fp16", "bf16", "fp32")


@dataclass(frozen=True)
class LayerPrecision:
    name: str
    layer_type: str
    precision: str
    tensor_types: tuple[str, ...]


@dataclass(frozen=True)
class EngineSummary:
    schema: str
    io_tensors: tuple[str, ...]
    layers: tuple[LayerPrecision, ...]

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(layer.precision for layer in self.layers))

    def to_dict(self, with_layers: bool = True) -> dict:
        d = {"schema": self.schema, "io_tensors": list(self.io_tensors), "layer_count": len(self.layers),
             "precision_counts": self.counts}
        if with_layers:
            d["layers"] = [asdict(layer) | {"tensor_types": list(layer.tensor_types)} for layer in self.layers]
        return d


def dtype_of(tensor: dict) -> str | None:
    """The data type of one tensor entry in either schema, normalised (``fp16``, ``int8``, ...)."""
    for key in ("Datatype", "DataType", "Data Type"):
        if key in tensor and tensor[key] is not None:
            return _word_dtype(str(tensor[key]))
    phrase = tensor.get("Format/Datatype")
    if phrase is None:
        return None
    return _word_dtype(str(phrase))


def _word_dtype(text: str) -> str | None:
    words = [w for w in re.split(r"[^0-9A-Za-z]+", text.lower()) if w]
    for w in words:
        if w in _DTYPE_WORDS:
            return _DTYPE_WORDS[w]
    return None


def _layer_precision(types: list[str]) -> str:
    compute = [t for t in types if t in _COMPUTE_ORDER]
    if compute:
        return min(compute, key=_COMPUTE_ORDER.index)
    return types[0] if types else "unknown"


def parse_engine_information(info) -> EngineSummary:
    """Parse the inspector output (a JSON string, bytes or an already decoded dict)."""
    if isinstance(info, (bytes, bytearray)):
        info = info.decode("utf-8", errors="replace")
    if isinstance(info, str):
        try:
            info = json.loads(info)
        except ValueError as e:
            raise InputError(f"engine-inspector output is not JSON: {e}") from None
    if not isinstance(info, dict) or not isinstance(info.get("Layers"), list):
        raise InputError("not TensorRT engine-inspector JSON: expected an object with a \"Layers\" list")
    if "I/O Tensors" in info:
        schema = SCHEMA_11
        io = tuple(str(t.get("Name", "")) if isinstance(t, dict) else str(t) for t in info["I/O Tensors"])
    elif "Bindings" in info:
        schema = SCHEMA_10
        io = tuple(str(t.get("Name", "")) if isinstance(t, dict) else str(t) for t in info["Bindings"])
    else:
        raise InputError("engine-inspector JSON has neither \"Bindings\" (TensorRT 10) nor \"I/O Tensors\" "
                         "(TensorRT 11)")
    layers = []
    for i, layer in enumerate(info["Layers"]):
        if isinstance(layer, str):  # profiling verbosity below DETAILED: names only
            layers.append(LayerPrecision(layer, "unknown", "unknown", ()))
            continue
        if not isinstance(layer, dict):
            raise InputError(f"engine-inspector layer {i} is neither an object nor a name")
        types = []
        for key in ("Inputs", "Outputs"):
            for t in layer.get(key) or []:
                if isinstance(t, dict):
                    d = dtype_of(t)
                    if d is not None:
                        types.append(d)
        layers.append(LayerPrecision(str(layer.get("Name", f"layer{i}")), str(layer.get("LayerType", "unknown")),
                                     _layer_precision(types), tuple(types)))
    return EngineSummary(schema, io, tuple(layers))
