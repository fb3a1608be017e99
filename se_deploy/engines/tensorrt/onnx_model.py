"""What the builder needs to know about an ONNX model before TensorRT sees it (pure Python).

Detects a prebuilt Q/DQ or FP16 model, lists the graph inputs, and turns ``--batch
min:opt:max`` into the optimization-profile shapes for every input.
"""

from __future__ import annotations

from dataclasses import dataclass

from se_deploy.engines.tensorrt.config import OnnxPrecision
from se_deploy.errors import UsageError

_QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}
_FLOAT16 = 10  # onnx.TensorProto.FLOAT16
_BFLOAT16 = 16


@dataclass(frozen=True)
class GraphInput:
    name: str
    dims: tuple  # int for a fixed dim, str (symbol) or None for a dynamic one
    elem_type: int

    @property
    def is_dynamic(self) -> bool:
        return any(not isinstance(d, int) for d in self.dims)


def onnx_precision(model) -> OnnxPrecision:
    """Count Q/DQ nodes and FP16 tensors (initializers, inputs, Cast-to-FP16) in every graph."""
    qdq = 0
    fp16 = 0
    for graph in _graphs(model.graph):
        for node in graph.node:
            if node.op_type in _QDQ_OPS:
                qdq += 1
            if node.op_type == "Cast":
                fp16 += sum(1 for a in node.attribute if a.name == "to" and a.i in (_FLOAT16, _BFLOAT16))
            if node.op_type == "Constant":
                fp16 += sum(1 for a in node.attribute if a.name == "value" and a.t.data_type == _FLOAT16)
        fp16 += sum(1 for t in graph.initializer if t.data_type in (_FLOAT16, _BFLOAT16))
        fp16 += sum(1 for v in graph.input if v.type.tensor_type.elem_type in (_FLOAT16, _BFLOAT16))
    return OnnxPrecision(qdq_nodes=qdq, fp16_tensors=fp16)


def _graphs(graph):
    yield graph
    for node in graph.node:
        for a in node.attribute:
            if a.type == 5:  # GRAPH
                yield from _graphs(a.g)
            elif a.type == 10:  # GRAPHS
                for g in a.graphs:
                    yield from _graphs(g)


def graph_inputs(model) -> list[GraphInput]:
    """The real inputs (initializers listed as inputs in old opsets are left out)."""
    inits = {t.name for t in model.graph.initializer}
    out = []
    for v in model.graph.input:
        if v.name in inits:
            continue
        tt = v.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim)
        out.append(GraphInput(v.name, dims, tt.elem_type))
    return out


def profile_shapes(inputs: list[GraphInput], batch: tuple[int, int, int] | None
                   ) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """min/opt/max shape for each input that needs a profile; ``{}`` for a fully static model.

    Only dim 0 (the batch) may be dynamic. A static model with ``--batch`` is refused, since
    TensorRT cannot change a batch fixed in the ONNX.
    """
    shapes = {}
    for inp in inputs:
        rest = inp.dims[1:]
        if any(not isinstance(d, int) or d <= 0 for d in rest):
            raise UsageError(f"input {inp.name!r} has dynamic dimensions other than the batch {inp.dims}: "
                             "re-export it with fixed spatial sizes")
        if not inp.dims:
            continue
        b0 = inp.dims[0]
        if isinstance(b0, int) and b0 > 0:
            if batch is not None and batch != (b0, b0, b0):
                raise UsageError(f"input {inp.name!r} has a fixed batch of {b0} in the ONNX, so --batch "
                                 f"{':'.join(map(str, batch))} cannot apply: re-export with a dynamic batch")
            continue
        lo, opt, hi = batch or (1, 1, 1)
        shapes[inp.name] = ((lo, *rest), (opt, *rest), (hi, *rest))
    return shapes


def static_shape(inp: GraphInput, batch: int = 1) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d > 0 else batch for d in inp.dims)
