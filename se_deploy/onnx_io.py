"""Loading and saving ONNX models with one-line errors and atomic writes, and the facts every layer
reads from a graph: its real inputs (:func:`graph_inputs`) and the precision it carries
(:func:`onnx_precision`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from se_deploy._util import atomic_output
from se_deploy.errors import InputError, UsageError, first_line

_FLOAT16 = 10  # onnx.TensorProto.FLOAT16
_BFLOAT16 = 16
_QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
#: onnxruntime's quantized-operator format: INT8, but not a form TensorRT parses.
_QOPERATOR_OPS = frozenset({"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QLinearAdd",
                            "QLinearMul", "QLinearGlobalAveragePool"})

# Protobuf cannot serialise a single message over 2 GB; above this we switch to external data.
EXTERNAL_DATA_THRESHOLD = 2 * 1024**3 - 64 * 1024**2


def load_onnx(path: str | os.PathLike, *, check: bool = True):
    """Load an ONNX model; a missing, truncated, corrupt or non-ONNX file raises InputError."""
    import onnx

    p = Path(path)
    if not p.exists():
        raise InputError(f"ONNX file not found: {p}")
    if p.is_dir():
        raise InputError(f"expected an ONNX file, got a directory: {p}")
    if p.stat().st_size == 0:
        raise InputError(f"ONNX file is empty: {p}")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # protobuf DecodeError, truncated file, text file ...
        raise InputError(f"not a readable ONNX model: {p} ({type(e).__name__})") from None
    _load_external_data(model, p)
    if len(model.graph.node) == 0 and len(model.graph.output) == 0:
        raise InputError(f"not an ONNX model (no graph): {p}")
    if check:
        try:
            onnx.checker.check_model(model)
        except Exception as e:
            msg = first_line(e)
            raise InputError(f"invalid ONNX model {p}: {msg}") from None
    return model


def _load_external_data(model, path: Path) -> None:
    """Read the weights a model keeps in files beside it, naming the file when one is missing or unreadable."""
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    locations = {e.value for t in model.graph.initializer if uses_external_data(t)
                 for e in t.external_data if e.key == "location"}
    for loc in sorted(locations):
        data = path.parent / loc
        if not data.is_file():
            raise InputError(f"{path} keeps its weights in {data}, which is missing: copy it beside the model")
    if locations:
        try:
            load_external_data_for_model(model, str(path.parent))
        except Exception as e:
            raise InputError(f"cannot read the external weights of {path}: {first_line(e)}") from None


def save_onnx(model, path: str | os.PathLike) -> Path:
    """Write ``model`` atomically as one file; use external data only above 2 GB."""
    import onnx

    final = Path(path)
    size = model.ByteSize()
    if size < EXTERNAL_DATA_THRESHOLD:
        with atomic_output(final) as tmp:
            tmp.write_bytes(model.SerializeToString())
        return final
    # Large model: weights go to <name>.data beside the model. Write both under temp names.
    data_name = final.name + ".data"
    with atomic_output(final.parent / data_name) as tmp_data:
        with atomic_output(final) as tmp:
            onnx.save_model(model, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=tmp_data.name, size_threshold=1024)
            # point the graph at the final data file name
            m2 = onnx.load(str(tmp), load_external_data=False)
            for init in m2.graph.initializer:
                for entry in init.external_data:
                    if entry.key == "location":
                        entry.value = data_name
            tmp.write_bytes(m2.SerializeToString())
    return final


@dataclass(frozen=True)
class GraphInput:
    """A real graph input. ``dims``: an int for a fixed dimension, the symbol (str) or None for a dynamic one."""

    name: str
    dims: tuple
    elem_type: int

    @property
    def is_dynamic(self) -> bool:
        return any(not isinstance(d, int) for d in self.dims)

    @property
    def fixed_dims(self) -> tuple:
        """``dims`` with every dynamic dimension as None."""
        return tuple(d if isinstance(d, int) else None for d in self.dims)

    @property
    def dtype(self) -> str:
        """The numpy dtype name (``float32``), or ``unknown``."""
        import numpy as np
        from onnx import helper

        try:
            return str(np.dtype(helper.tensor_dtype_to_np_dtype(self.elem_type)))
        except Exception:
            return "unknown"


def _dims(value_info) -> tuple:
    t = value_info.type.tensor_type
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None)
                 for d in t.shape.dim)


def graph_inputs(model) -> list[GraphInput]:
    """The real inputs (initializers listed as inputs in old opsets are left out)."""
    inits = {t.name for t in model.graph.initializer}
    return [GraphInput(v.name, _dims(v), v.type.tensor_type.elem_type) for v in model.graph.input
            if v.name not in inits]


def graph_outputs(model) -> list[GraphInput]:
    return [GraphInput(v.name, _dims(v), v.type.tensor_type.elem_type) for v in model.graph.output]


def model_input(model, *, purpose: str = "INT8/FP16 conversion") -> GraphInput:
    """The single graph input; a model with several is refused with one line."""
    inputs = graph_inputs(model)
    if len(inputs) != 1:
        raise UsageError(f"{purpose} supports single-input models; this one has {len(inputs)} inputs "
                         f"({[i.name for i in inputs]})")
    return inputs[0]


@dataclass(frozen=True)
class OnnxPrecision:
    """What precision an ONNX model already carries."""

    qdq_nodes: int = 0
    fp16_tensors: int = 0
    qoperator_nodes: int = 0

    @property
    def has_qdq(self) -> bool:
        return self.qdq_nodes > 0

    @property
    def has_fp16(self) -> bool:
        return self.fp16_tensors > 0

    @property
    def name(self) -> str:
        """``int8`` (Q/DQ or quantized operators), ``fp16`` or ``fp32``: the precision the model runs in."""
        if self.has_qdq or self.qoperator_nodes:
            return "int8"
        return "fp16" if self.has_fp16 else "fp32"


def _graphs(graph):
    yield graph
    for node in graph.node:
        for a in node.attribute:
            if a.type == 5:  # GRAPH
                yield from _graphs(a.g)
            elif a.type == 10:  # GRAPHS
                for g in a.graphs:
                    yield from _graphs(g)


def onnx_precision(model) -> OnnxPrecision:
    """Count Q/DQ nodes, quantized operators and FP16 tensors (initializers, inputs, Cast-to-FP16) in every graph."""
    qdq = fp16 = qop = 0
    for graph in _graphs(model.graph):
        for node in graph.node:
            qdq += node.op_type in _QDQ_OPS
            qop += node.op_type in _QOPERATOR_OPS
            if node.op_type == "Cast":
                fp16 += sum(1 for a in node.attribute if a.name == "to" and a.i in (_FLOAT16, _BFLOAT16))
            if node.op_type == "Constant":
                fp16 += sum(1 for a in node.attribute if a.name == "value" and a.t.data_type == _FLOAT16)
        fp16 += sum(1 for t in graph.initializer if t.data_type in (_FLOAT16, _BFLOAT16))
        fp16 += sum(1 for v in graph.input if v.type.tensor_type.elem_type in (_FLOAT16, _BFLOAT16))
    return OnnxPrecision(qdq_nodes=qdq, fp16_tensors=fp16, qoperator_nodes=qop)
