"""A tiny classifier with SE blocks, built from ONNX nodes (no torch): stem conv, then per block a 3x3
conv + ReLU and an SE block (GlobalAveragePool -> 1x1 Conv -> ReLU -> 1x1 Conv -> Sigmoid -> Mul),
then global pooling and a Gemm classifier. ``constant_gate`` blocks have a zero second FC, so their
gate is sigmoid(bias) whatever the input: folding them is exact."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def make_se_classifier(blocks: int = 3, *, channels: int = 8, classes: int = 10, hw: int = 16,
                       constant_gate: tuple[int, ...] = (), relu: bool = True, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def init(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(arr.astype(np.float32), name))
        return name

    c, cr = channels, max(1, channels // 4)
    nodes.append(helper.make_node("Conv", ["input", init("stem.w", rng.standard_normal((c, 3, 3, 3)) * 0.3),
                                           init("stem.b", rng.standard_normal(c) * 0.1)], ["stem"], name="stem",
                                  pads=[1, 1, 1, 1]))
    x = "stem"
    for i in range(blocks):
        p = f"b{i}"
        nodes.append(helper.make_node("Conv", [x, init(f"{p}.w", rng.standard_normal((c, c, 3, 3)) * 0.25),
                                               init(f"{p}.bias", rng.standard_normal(c) * 0.1)], [f"{p}.conv"],
                                      name=f"{p}.conv", pads=[1, 1, 1, 1]))
        # without the ReLU the SE input comes straight from the Conv, so a fold goes into its weights
        nodes.append(helper.make_node("Relu" if relu else "Identity", [f"{p}.conv"], [f"{p}.act"], name=f"{p}.relu"))
        nodes.append(helper.make_node("GlobalAveragePool", [f"{p}.act"], [f"{p}.pool"], name=f"{p}.se.pool"))
        nodes.append(helper.make_node("Conv", [f"{p}.pool", init(f"{p}.fc1.w", rng.standard_normal((cr, c, 1, 1))),
                                               init(f"{p}.fc1.b", rng.standard_normal(cr) * 0.1)], [f"{p}.fc1"],
                                      name=f"{p}.se.fc1"))
        nodes.append(helper.make_node("Relu", [f"{p}.fc1"], [f"{p}.fc1r"], name=f"{p}.se.relu"))
        w2 = np.zeros((c, cr, 1, 1)) if i in constant_gate else rng.standard_normal((c, cr, 1, 1)) * 2.0
        nodes.append(helper.make_node("Conv", [f"{p}.fc1r", init(f"{p}.fc2.w", w2),
                                               init(f"{p}.fc2.b", rng.standard_normal(c))], [f"{p}.fc2"],
                                      name=f"{p}.se.fc2"))
        nodes.append(helper.make_node("Sigmoid", [f"{p}.fc2"], [f"{p}.gate"], name=f"{p}.se.gate"))
        nodes.append(helper.make_node("Mul", [f"{p}.act", f"{p}.gate"], [f"{p}.out"], name=f"{p}.se.scale"))
        x = f"{p}.out"
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["head.pool"], name="head.pool"))
    nodes.append(helper.make_node("Flatten", ["head.pool"], ["head.flat"], name="head.flatten"))
    nodes.append(helper.make_node("Gemm", ["head.flat", init("fc.w", rng.standard_normal((classes, c))),
                                           init("fc.b", rng.standard_normal(classes) * 0.1)], ["logits"],
                                  name="head.fc", transB=1))
    graph = helper.make_graph(nodes, "se_classifier",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, hw, hw])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def labelled_data(model: onnx.ModelProto, n: int = 64, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and the model's own predictions as labels (so the full model has 100% top-1)."""
    import onnxruntime as ort

    hw = model.graph.input[0].type.tensor_type.shape.dim[2].dim_value
    x = np.random.default_rng(seed).standard_normal((n, 3, hw, hw)).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return x, np.argmax(sess.run(None, {"input": x})[0], axis=1).astype(np.int64)
