"""FP32 vs FP16 vs INT8, side by side, on held-out inputs.

Every candidate runs under onnxruntime on the same samples as the FP32 reference. Against
the reference: top-1 agreement, cosine similarity, SQNR and max abs error of the first
output (the logits). With labels: top-1/top-5 accuracy for each precision and the drop in
points from FP32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from se_deploy.calibration.dataset import CalibrationSet
from se_deploy.errors import CalibrationError, InputError, QuantizationError, UsageError
from se_deploy.numerics import compare_arrays
from se_deploy.onnx_io import onnx_precision
from se_deploy.runtime.onnxruntime import OrtConfig, OrtRunner

MAX_EVAL_BATCH = 64


def _graph_optimization(model) -> str:
    """"disable" for a Q/DQ model with FP16 layers: onnxruntime's CPU graph optimizations fuse FP16 Q/DQ
    patterns with a loss of accuracy of their own, which would be charged to the model; "all" otherwise.
    ``model``: a path, serialized bytes or a ModelProto (what OrtRunner takes)."""
    import onnx

    if isinstance(model, onnx.ModelProto):
        proto = model
    elif isinstance(model, (bytes, bytearray)):
        proto = onnx.load_from_string(bytes(model))
    else:
        try:
            proto = onnx.load(str(model), load_external_data=False)
        except Exception as e:  # protobuf's DecodeError and friends: not an ONNX file
            raise InputError(f"{model} is not a readable ONNX model ({type(e).__name__})") from None
    prec = onnx_precision(proto)
    return "disable" if prec.has_qdq and prec.has_fp16 else "all"


def _name(model) -> str:
    return Path(model).name if isinstance(model, (str, Path)) else "the model"


def run_model(model, data: CalibrationSet, *, threads: int = 0) -> np.ndarray:
    """The first output of ``model`` (a path, bytes or a ModelProto) over every sample of ``data`` (batched
    as the model allows)."""
    config = OrtConfig(threads=threads, graph_optimization=_graph_optimization(model))
    with OrtRunner(model, config) as runner:
        inputs = runner.inputs
        if len(inputs) != 1:
            raise InputError(f"{_name(model)}: accuracy comparison supports single-input models, got {len(inputs)}")
        spec = inputs[0]
        if spec.name != data.input_name:
            raise CalibrationError(f"evaluation data is keyed {data.input_name!r} but {_name(model)} "
                                   f"expects input {spec.name!r}")
        static_b = spec.shape[0] if spec.shape and isinstance(spec.shape[0], int) and spec.shape[0] > 0 else None
        batch = static_b or min(MAX_EVAL_BATCH, len(data))
        outs = []
        out_name = runner.outputs[0].name
        feed_dtype = np.float16 if spec.dtype == "float16" else np.float32
        for feed in data.batches(batch, drop_last=static_b is not None):
            x = feed[data.input_name].astype(feed_dtype, copy=False)
            outs.append(np.asarray(runner.infer({spec.name: x})[out_name], dtype=np.float32))
    return np.concatenate(outs, axis=0)


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Percent of samples whose label is among the ``k`` highest logits."""
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, kth=k - 1, axis=1)[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)) * 100.0)


def evaluate(reference: str | Path, candidates: Mapping[str, str | Path], data: CalibrationSet) -> dict:
    """Compare each candidate with the FP32 ``reference`` on ``data``; return a JSON-ready report."""
    ref = run_model(reference, data)
    n = ref.shape[0]
    labels = data.labels[:n] if data.labels is not None else None
    report: dict = {
        "samples": int(n),
        "data": {"role": data.provenance.get("role", "evaluation"), "source_kind": data.source_kind,
                 "synthetic": data.is_synthetic, "labelled": labels is not None},
        "reference": {"model": str(reference)},
        "candidates": {},
    }
    if ref.ndim != 2:
        ref2 = ref.reshape(n, -1)
    else:
        ref2 = ref
    if labels is not None and ref2.shape[1] > 1:
        _check_label_range(labels, ref2.shape[1], data)
        report["reference"].update(top1=topk_accuracy(ref2, labels, 1), top5=topk_accuracy(ref2, labels, 5))
    for name, path in candidates.items():
        got = run_model(path, data)[:n].reshape(ref2.shape)
        c = compare_arrays(ref2, got)
        entry = {"model": str(path), "top1_agreement": None if c.top1_agreement is None else c.top1_agreement * 100.0,
                 "cosine": c.cosine, "sqnr_db": c.sqnr_db, "max_abs": c.max_abs, "rel_max_abs": c.rel_max_abs}
        if "top1" in report["reference"]:
            entry["top1"] = topk_accuracy(got, labels, 1)
            entry["top5"] = topk_accuracy(got, labels, 5)
            entry["top1_drop"] = report["reference"]["top1"] - entry["top1"]
        report["candidates"][name] = entry
    return report


def _check_label_range(labels: np.ndarray, classes: int, data: CalibrationSet) -> None:
    """Labels the model cannot predict make every top-k figure meaningless (a silent 0%): refuse them."""
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= classes:
        source = data.provenance.get("source", "the evaluation data")
        raise InputError(f"labels in {source} range from {low} to {high}, but the model predicts {classes} classes "
                         f"(0..{classes - 1}): the labels do not belong to this model")


def check_max_drop(report: dict, max_drop: float) -> None:
    """Raise QuantizationError naming the worst candidate whose top-1 dropped more than ``max_drop`` points."""
    if "top1" not in report["reference"]:
        raise UsageError("--max-drop needs labelled data (class-folder layout or an npz 'labels' key)")
    over = {k: v["top1_drop"] for k, v in report["candidates"].items() if v["top1_drop"] > max_drop}
    if over:
        worst = max(over, key=over.get)
        raise QuantizationError(f"{worst} top-1 dropped {over[worst]:.2f} points, over the --max-drop budget of "
                                f"{max_drop:g}")


__all__ = ["check_max_drop", "evaluate", "run_model", "topk_accuracy"]
