"""Tiny ONNX models for the TensorRT builder tests (FP32, prebuilt Q/DQ, prebuilt FP16)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _save(model, path: Path) -> Path:
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def conv_model(path: Path, batch="N", size: int = 8) -> Path:
    """Conv-ReLU-GAP-MatMul classifier with 5 classes; ``batch`` "N" (dynamic) or an int."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal((4,)).astype(np.float32), "b"),
             numpy_helper.from_array(rng.standard_normal((4, 5)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("MatMul", ["f", "w2"], ["output"])]
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 5])
    graph = helper.make_graph(nodes, "conv", [x], [y], inits)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def qdq_model(path: Path) -> Path:
    """A Q/DQ (explicitly quantized) conv, as ``se-deploy quantize --target tensorrt`` writes."""
    rng = np.random.default_rng(1)
    w = rng.integers(-127, 127, size=(4, 3, 3, 3)).astype(np.int8)
    inits = [numpy_helper.from_array(np.array(0.02, np.float32), "x_scale"),
             numpy_helper.from_array(np.array(0, np.int8), "x_zp"),
             numpy_helper.from_array(w, "w_q"),
             numpy_helper.from_array(np.full((4,), 0.01, np.float32), "w_scale"),
             numpy_helper.from_array(np.zeros((4,), np.int8), "w_zp")]
    nodes = [helper.make_node("QuantizeLinear", ["input", "x_scale", "x_zp"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["output"], pads=[1, 1, 1, 1])]
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 4, 8, 8])
    graph = helper.make_graph(nodes, "qdq", [x], [y], inits)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def fp16_model(path: Path) -> Path:
    """FP32 I/O with an FP16 body (Cast in, FP16 weights, Cast out), as FP16 conversion writes."""
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float16), "w16")]
    nodes = [helper.make_node("Cast", ["input"], ["x16"], to=TensorProto.FLOAT16),
             helper.make_node("Conv", ["x16", "w16"], ["c16"], pads=[1, 1, 1, 1]),
             helper.make_node("Cast", ["c16"], ["output"], to=TensorProto.FLOAT)]
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 4, 8, 8])
    graph = helper.make_graph(nodes, "fp16", [x], [y], inits)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def calib_npz(path: Path, n: int = 16, size: int = 8) -> Path:
    rng = np.random.default_rng(3)
    np.savez(str(path), input=rng.standard_normal((n, 3, size, size)).astype(np.float32))
    return path


def nonzero_model(path: Path) -> Path:
    """Relu then NonZero: the output's second dimension depends on the input *values* (data-dependent shape)."""
    nodes = [helper.make_node("Relu", ["input"], ["r"]), helper.make_node("NonZero", ["r"], ["output"])]
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [4, 6])
    y = helper.make_tensor_value_info("output", TensorProto.INT64, [2, "nnz"])
    graph = helper.make_graph(nodes, "nonzero", [x], [y])
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def bf16_io_model(path: Path) -> Path:
    """BF16 input and output around an FP32 body (Cast in, Relu, Cast out): an engine with BF16 I/O tensors."""
    nodes = [helper.make_node("Cast", ["input"], ["x32"], to=TensorProto.FLOAT),
             helper.make_node("Relu", ["x32"], ["r"]),
             helper.make_node("Cast", ["r"], ["output"], to=TensorProto.BFLOAT16)]
    x = helper.make_tensor_value_info("input", TensorProto.BFLOAT16, [2, 8])
    y = helper.make_tensor_value_info("output", TensorProto.BFLOAT16, [2, 8])
    graph = helper.make_graph(nodes, "bf16io", [x], [y])
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
