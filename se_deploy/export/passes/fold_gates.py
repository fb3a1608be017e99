"""fold-gates: replace SE blocks whose gates barely vary by a constant per-channel scale.

Data-driven and approximate. The model runs on the calibration feeds with every gate
exposed as an output. For each block we record, per channel, the mean and standard
deviation of the gate over all samples. A block whose largest per-channel standard
deviation is at most ``gate_std_threshold`` is replaced by its mean gate: folded into the
producing Conv's (or BatchNormalization's) weights when the SE input feeds nothing else,
otherwise applied as a constant Mul. The SE paper observed that late-stage gates saturate,
which is where this pays. ``run_passes`` then measures the output error and top-1
agreement on the same data and refuses the result above the user's tolerance.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir

from se_deploy.errors import CalibrationError
from se_deploy.export.ir_helpers import add_initializer, cleanup, const_array, name_outputs, replace_output
from se_deploy.export.passes import _ir
from se_deploy.export.passes._registry import PassContext, PassKind, register_pass
from se_deploy.export.se_detect import Match, find_matches
from se_deploy.runtime.onnxruntime import OrtConfig, OrtRunner


def gate_statistics(model, matches, feeds) -> dict[str, np.ndarray]:
    """Gate values per block over all calibration samples: scale node name -> array (samples, C)."""
    proto = ir.to_proto(model)
    names = [m.gate_value.name for m in matches]  # scale node -> gate values, below
    existing = {o.name for o in proto.graph.output}
    for n in names:
        if n not in existing:
            proto.graph.output.append(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
    per: dict[str, list] = {n: [] for n in names}
    with OrtRunner(proto, OrtConfig(graph_optimization="basic")) as r:
        for feed in feeds:
            out = r.infer(feed)
            for n in names:
                g = np.asarray(out[n])
                per[n].append(g.reshape(g.shape[0], -1))
    return {m.scale.name: np.concatenate(per[m.gate_value.name], axis=0) for m in matches}


def _only_feeds_block(m: Match) -> bool:
    inside = set(m.nodes) | {m.scale}
    return all(c in inside or c.op_type == "Shape" for c in m.x.consumers()) and m.x not in m.x.graph.outputs


def _fold_into_producer(model, m: Match, s: np.ndarray) -> str | None:
    """Scale the producer's per-output-channel parameters by ``s``; return what was folded into."""
    p = m.x.producer()
    if p is None or not _only_feeds_block(m):
        return None
    graph = model.graph
    if p.op_type == "Conv":
        w = const_array(p.inputs[1])
        if w is None or w.shape[0] != s.size:
            return None
        p.replace_input_with(1, add_initializer(graph, f"{p.name}.weight_folded",
                                                    (w * s.reshape(-1, *([1] * (w.ndim - 1)))).astype(w.dtype)))
        if len(p.inputs) > 2 and p.inputs[2] is not None:
            b = const_array(p.inputs[2])
            if b is None:
                return None
            p.replace_input_with(2, add_initializer(graph, f"{p.name}.bias_folded", (b * s).astype(b.dtype)))
        return "conv"
    if p.op_type == "BatchNormalization" and len(p.outputs) == 1:
        gamma, beta = const_array(p.inputs[1]), const_array(p.inputs[2])
        if gamma is None or beta is None:
            return None
        p.replace_input_with(1, add_initializer(graph, f"{p.name}.scale_folded", (gamma * s).astype(gamma.dtype)))
        p.replace_input_with(2, add_initializer(graph, f"{p.name}.bias_folded", (beta * s).astype(beta.dtype)))
        return "batchnorm"
    return None


def fold_block(model, m: Match, s: np.ndarray) -> str:
    """Replace SE block ``m`` by the constant per-channel scale ``s``; return where it went."""
    into = _fold_into_producer(model, m, s)
    if into is not None:
        replace_output(model.graph, m.scale.outputs[0], m.x, fresh=False)
        _ir.remove_block(model.graph, m)
        return into
    const = add_initializer(model.graph, f"{_ir.base_name(m)}.folded_gate", s.reshape(1, -1, 1, 1))
    mul = ir.node("Mul", [m.x, const], name=f"{_ir.base_name(m)}/folded_scale")
    name_outputs([mul])
    model.graph.insert_before(m.scale, mul)
    replace_output(model.graph, m.scale.outputs[0], mul.outputs[0], fresh=True)
    _ir.remove_block(model.graph, m)
    return "constant Mul"


@register_pass("fold-gates", kind=PassKind.approximate, needs_calibration=True,
               summary="replace SE blocks whose gates are near-constant on calibration data by a folded per-channel scale")
def fold_gates(model, ctx: PassContext) -> dict:
    if not ctx.calib_feeds:
        raise CalibrationError("fold-gates needs calibration data (give --calib-data FILE.npz)")
    thr = ctx.options.gate_std_threshold
    matches, _ = find_matches(model)
    if not matches:
        return {"changed": 0, "blocks": [], "threshold": thr}
    stats = gate_statistics(model, matches, ctx.calib_feeds)
    blocks, changed = [], 0
    for m in _ir.each_match(model):
        g = stats[m.scale.name]
        std = g.std(axis=0)
        entry = {"scale_node": m.scale.name, "channels": int(g.shape[1]), "samples": int(g.shape[0]),
                 "gate_std_max": float(std.max()), "gate_std_mean": float(std.mean()),
                 "gate_mean": float(g.mean()), "folded": False, "into": None}
        if std.max() <= thr:
            into = fold_block(model, m, g.mean(axis=0).astype(m.fc1.weight.dtype))
            entry.update(folded=True, into=into)
            changed += 1
        blocks.append(entry)
    cleanup(model)
    return {"changed": changed, "threshold": thr, "blocks": blocks}
