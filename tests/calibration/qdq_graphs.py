"""Small handwritten ONNX graphs for the placement rules and the Q/DQ linter (onnx.helper, numpy weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class G:
    """A graph under construction: nodes, initializers and unique names."""

    def __init__(self, shape=(1, 8, 8, 8), seed: int = 0, batch: str | int | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: dict[str, np.ndarray] = {}
        self.shape = tuple(shape)
        self.batch = batch
        self._n = 0

    def name(self, op: str) -> str:
        self._n += 1
        return f"{op}_{self._n}"

    def init(self, base: str, arr: np.ndarray) -> str:
        name = f"{base}_{len(self.inits)}"
        self.inits[name] = arr
        return name

    def op(self, op: str, inputs: list[str], name: str | None = None, **attrs) -> str:
        name = name or self.name(op)
        out = f"{name}_out"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int = 1, name: str | None = None, group: int = 1) -> str:
        w = (self.rng.standard_normal((cout, cin // group, k, k)) * (1.0 / np.sqrt(cin * k * k))).astype(np.float32)
        b = (self.rng.standard_normal(cout) * 0.1).astype(np.float32)
        return self.op("Conv", [x, self.init("w", w), self.init("b", b)], name, pads=[k // 2] * 4, group=group)

    def gemm(self, x: str, k: int, n: int, name: str | None = None) -> str:
        w = (self.rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
        b = (self.rng.standard_normal(n) * 0.1).astype(np.float32)
        return self.op("Gemm", [x, self.init("w", w), self.init("b", b)], name, transB=1)

    def se(self, x: str, c: int, r: int = 4, squeeze: str = "gap", prefix: str = "se") -> str:
        """Squeeze -> FC -> Relu -> FC -> Sigmoid -> Mul, as 1x1 Convs (gap) or ReduceMean + Gemm (mean)."""
        if squeeze == "gap":
            s = self.op("GlobalAveragePool", [x], f"{prefix}/squeeze")
            h = self.op("Relu", [self.conv(s, c, c // r, name=f"{prefix}/fc1")], f"{prefix}/act")
            g = self.op("Sigmoid", [self.conv(h, c // r, c, name=f"{prefix}/fc2")], f"{prefix}/gate")
        else:
            s = self.op("ReduceMean", [x, self.init("axes", np.array([2, 3], np.int64))], f"{prefix}/squeeze",
                        keepdims=0)
            h = self.op("Relu", [self.gemm(s, c, c // r, name=f"{prefix}/fc1")], f"{prefix}/act")
            g = self.op("Sigmoid", [self.gemm(h, c // r, c, name=f"{prefix}/fc2")], f"{prefix}/gate")
            g = self.op("Reshape", [g, self.init("shape", np.array([-1, c, 1, 1], np.int64))], f"{prefix}/unflatten")
        return self.op("Mul", [x, g], f"{prefix}/scale")

    def qdq(self, x: str, scale: float = 0.05, zp_type=np.int8, zp: int = 0) -> str:
        """A QuantizeLinear -> DequantizeLinear pair on ``x``."""
        s = self.init("scale", np.array(scale, np.float32))
        z = self.init("zp", np.array(zp, zp_type))
        q = self.op("QuantizeLinear", [x, s, z])
        return self.op("DequantizeLinear", [q, s, z])

    def int8_weight(self, q: np.ndarray, scale: np.ndarray, axis: int = 0) -> str:
        """An int8 initializer behind a DequantizeLinear (per-channel when ``scale`` has several values)."""
        qi = self.init("wq", q.astype(np.int8))
        s = self.init("ws", scale.astype(np.float32))
        z = self.init("wz", np.zeros(scale.shape, np.int8))
        return self.op("DequantizeLinear", [qi, s, z], axis=axis)

    def model(self, output: str, opset: int = 18):
        dims = list(self.shape)
        if self.batch is not None:
            dims[0] = self.batch
        graph = helper.make_graph(
            self.nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
            [numpy_helper.from_array(v, k) for k, v in self.inits.items()])
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="test")
        m.ir_version = 8
        m = onnx.shape_inference.infer_shapes(m)
        onnx.checker.check_model(m, full_check=True)
        return m

    def save(self, output: str, path: Path, opset: int = 18) -> Path:
        onnx.save(self.model(output, opset), str(path))
        return path


def reads_dq(model, node: str, index: int) -> bool:
    """Whether input ``index`` of ``node`` comes (through Casts) from a DequantizeLinear."""
    from se_deploy.calibration.qdq_lint import _Real

    real = _Real(model)
    return real.through_dq(real.nodes[node].input[index])
