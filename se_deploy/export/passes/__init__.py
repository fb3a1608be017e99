"""SE-aware graph passes with per-pass numerical proof and rollback.

``run_passes(model, ["canonicalize", "hoist-squeeze"])`` applies each named pass in turn.
After each one, onnxruntime runs the model before and after on real inputs (random and
constant, several batch sizes when the batch is dynamic, plus calibration data when given).
An exact pass is kept only when the worst output error, relative to the output's largest
magnitude, is at most ``options.tolerance``; fold-gates has its own tolerance and top-1
bound. A pass that fails its proof, or raises, is rolled back and the reason recorded.
"""

from __future__ import annotations

import time
from typing import Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir

from se_deploy.errors import CalibrationError, GraphPassError, UsageError, first_line

# Importing the rule modules registers them.
from se_deploy.export.passes import ablate as _ablate  # noqa: E402,F401
from se_deploy.export.passes import canonicalize as _canonicalize  # noqa: E402,F401
from se_deploy.export.passes import expand_gate as _expand_gate  # noqa: E402,F401
from se_deploy.export.passes import fold_gates as _fold_gates  # noqa: E402,F401
from se_deploy.export.passes import hoist_squeeze as _hoist  # noqa: E402,F401
from se_deploy.export.passes._registry import (
    GraphPass,
    PassContext,
    PassKind,
    PassOptions,
    get_pass,
    list_passes,
    parse_pass_list,
    register_pass,
)
from se_deploy.export.ir_helpers import strip_rewrite_tags
from se_deploy.export.se_detect import find_se_blocks, to_ir
from se_deploy.numerics import compare_arrays, probe_inputs
from se_deploy.runtime.onnxruntime import OrtConfig, OrtRunner

# The exact passes `se-deploy export` and `se-deploy fuse` apply by default.
DEFAULT_PASSES: tuple[str, ...] = ("canonicalize",)


def verification_feeds(model, options: PassOptions) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Random and constant feeds for every graph input; dynamic batch -> several batch sizes."""
    from onnx import helper

    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if not inputs:
        raise GraphPassError("the model has no inputs to verify the passes with")
    given = dict(options.input_shapes or {})
    plans = []
    dynamic_batch = False
    for inp in inputs:
        tt = inp.type.tensor_type
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type) if tt.elem_type else np.float32
        if not np.issubdtype(dtype, np.floating):
            raise GraphPassError(f"input {inp.name!r} has type {np.dtype(dtype).name}; "
                                 "only floating-point inputs can be probed for verification")
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]
        if inp.name in given:
            dims = list(given[inp.name])
        elif any(d is None for d in dims[1:]):
            raise UsageError(f"input {inp.name!r} has dynamic dimensions {dims}; give its shape to verify the passes "
                             "(e.g. --input-shape 1x3x224x224)")
        if dims and dims[0] is None:
            dynamic_batch = True
        plans.append((inp.name, dims, dtype))
    batches = list(options.batch_sizes) if dynamic_batch else [None]
    feeds: list[tuple[str, dict]] = []
    for k, b in enumerate(batches):
        per_input = {}
        for j, (name, dims, dtype) in enumerate(plans):
            shape = [b if (i == 0 and d is None) else d for i, d in enumerate(dims)]
            if b is not None and dims and dims[0] is None:
                shape[0] = b
            per_input[name] = probe_inputs(shape, seed=options.seed + 17 * k + j, dtype=dtype)
        for idx, kind in enumerate(("random", "constant")):
            feeds.append((f"{kind}(b={b or (dims[0] if dims else 1)})",
                          {name: arrs[idx][1] for name, arrs in per_input.items()}))
    return feeds


def _run(model, feeds: Sequence[tuple[str, Mapping[str, np.ndarray]]]) -> list[list[np.ndarray]]:
    outs = []
    with OrtRunner(model, OrtConfig(threads=0)) as r:
        for _, feed in feeds:
            res = r.infer(feed)
            outs.append(list(res.values()))
    return outs


def _compare(ref: list[list[np.ndarray]], got: list[list[np.ndarray]], labels: list[str]) -> dict:
    worst, top1s, per_input = None, [], []
    for label, r_outs, g_outs in zip(labels, ref, got):
        for a, b in zip(r_outs, g_outs):
            if a.shape != b.shape:
                return {"max_abs": float("inf"), "rel_max_abs": float("inf"), "top1_agreement": 0.0,
                        "inputs": labels, "reason": f"output shape changed on {label}: {a.shape} -> {b.shape}"}
            c = compare_arrays(a, b)
            per_input.append({"input": label, "max_abs": c.max_abs, "rel_max_abs": c.rel_max_abs})
            if c.top1_agreement is not None:
                top1s.append((c.top1_agreement, c.n))
            if worst is None or c.rel_max_abs > worst.rel_max_abs or not np.isfinite(c.rel_max_abs):
                worst = c
    top1 = (sum(t * n for t, n in top1s) / sum(n for _, n in top1s)) if top1s else None
    return {"max_abs": worst.max_abs if worst else 0.0, "rel_max_abs": worst.rel_max_abs if worst else 0.0,
            "cosine": worst.cosine if worst else 1.0, "top1_agreement": top1, "inputs": labels,
            "per_input": per_input}


def _count_blocks(proto) -> int:
    return len(find_se_blocks(proto))


def run_passes(model, names: Sequence[str], *, verify: bool = True, options: PassOptions | None = None,
               calib_feeds: Sequence[Mapping[str, np.ndarray]] = (), on_event=None):
    """Apply the named passes in order; return ``(model, report)``.

    Each pass works on a copy, so a rollback simply keeps the previous model. With
    ``verify=False`` nothing is proved (for tests and the benchmark's ablation only).
    ``on_event(entry)`` is called after each pass with its report entry.
    """
    options = options or PassOptions()
    passes = [get_pass(n) for n in names]
    ctx = PassContext(options=options, calib_feeds=list(calib_feeds))
    report: dict = {"passes": [], "tolerance": options.tolerance, "se_blocks_before": _count_blocks(model),
                    "nodes_before": len(model.graph.node)}
    feeds = verification_feeds(model, options) if verify else []
    ref_outs = _run(model, feeds) if verify else None
    original_outs = ref_outs
    calib = [(f"calib[{i}]", dict(f)) for i, f in enumerate(ctx.calib_feeds)]
    calib_ref = _run(model, calib) if verify and calib else None
    current = model
    for p in passes:
        entry: dict = {"name": p.name, "kind": p.kind.value, "exact": p.exact}
        t0 = time.perf_counter()
        try:
            irm = to_ir(current)
            details = p.fn(irm, ctx)
            strip_rewrite_tags(irm)
            candidate = ir.to_proto(irm)
            onnx.checker.check_model(candidate)
        except (UsageError, CalibrationError):
            raise
        except Exception as e:  # a pass that crashes is rolled back, like one that fails its proof
            entry.update(status="rolled_back", changed=0,
                         reason=f"the pass failed: {type(e).__name__}: {first_line(e)}")
            entry["seconds"] = round(time.perf_counter() - t0, 3)
            report["passes"].append(entry)
            if on_event:
                on_event(entry)
            continue
        entry["changed"] = int(details.get("changed", 0))
        entry["details"] = {k: v for k, v in details.items() if k != "changed"}
        if entry["changed"] == 0:
            entry["status"] = "no-op"
        elif not verify or p.kind is PassKind.ablation:
            # an ablation changes the function by design; its output is the plain twin, not a proof target.
            entry["status"] = "applied"
            entry["verified"] = False
            current = candidate
        else:
            status, reason, verification = _verify(p, candidate, feeds, ref_outs, calib, calib_ref, options)
            entry["verification"] = verification
            entry["status"] = status
            if reason:
                entry["reason"] = reason
            if status == "applied":
                current = candidate
                ref_outs = _run(current, feeds)
                if calib:
                    calib_ref = _run(current, calib)
        entry["seconds"] = round(time.perf_counter() - t0, 3)
        report["passes"].append(entry)
        if on_event:
            on_event(entry)
    report["summary"] = "; ".join(
        f"{e['name']} {e['status']}" + (f" on {e['changed']} blocks" if e.get("changed") else "")
        + (f" (max error {e['verification']['rel_max_abs']:.2g} of output scale)"
           if isinstance(e.get("verification"), dict) and "rel_max_abs" in e["verification"] else "")
        for e in report["passes"]) or "no passes"
    report["se_blocks_after"] = _count_blocks(current)
    report["nodes_after"] = len(current.graph.node)
    if verify and current is not model and original_outs is not None and not any(
            e["kind"] == PassKind.ablation.value and e["status"] == "applied" for e in report["passes"]):
        # ref_outs already holds the outputs of the last kept model
        report["final_vs_original"] = {k: v for k, v in _compare(original_outs, ref_outs,
                                                                [lbl for lbl, _ in feeds]).items() if k != "per_input"}
    return current, report


def _verify(p: GraphPass, candidate, feeds, ref_outs, calib, calib_ref, options: PassOptions):
    labels = [lbl for lbl, _ in feeds]
    try:
        got = _run(candidate, feeds)
    except Exception as e:
        return "rolled_back", f"the rewritten model does not run: {e}", {}
    v = _compare(ref_outs, got, labels)
    if p.exact:
        v["tolerance"] = options.tolerance
        if "reason" in v:
            return "rolled_back", v["reason"], v
        if not v["rel_max_abs"] <= options.tolerance:
            return "rolled_back", (f"output changed by {v['rel_max_abs']:.3g} of the output scale "
                                   f"(max abs {v['max_abs']:.3g}) > tolerance {options.tolerance:g}"), v
        return "applied", None, v
    # approximate pass: judged on the calibration data it was derived from
    if not calib:
        return "rolled_back", "no calibration data to judge an approximate pass", v
    cv = _compare(calib_ref, _run(candidate, calib), [lbl for lbl, _ in calib])
    cv["tolerance"] = options.fold_tolerance
    cv["min_top1"] = options.fold_min_top1
    v = {"calibration": {k: val for k, val in cv.items() if k != "per_input"},
         "probes": {k: val for k, val in v.items() if k != "per_input"}}
    if not cv["rel_max_abs"] <= options.fold_tolerance:
        return "rolled_back", (f"output error {cv['rel_max_abs']:.3g} of the output scale on the calibration data "
                               f"exceeds the tolerance {options.fold_tolerance:g}"), v
    if options.fold_min_top1 is not None and cv["top1_agreement"] is not None and cv["top1_agreement"] < options.fold_min_top1:
        return "rolled_back", (f"top-1 agreement {cv['top1_agreement']:.3f} on the calibration data is below "
                               f"{options.fold_min_top1:g}"), v
    return "applied", None, v


def fuse_default(model, *, options: PassOptions | None = None):
    """The default exact SE passes, each verified; returns ``(model, report)``."""
    return run_passes(model, DEFAULT_PASSES, verify=True, options=options)


def ablate_se(model):
    """The plain twin of ``model``: every SE block removed (scale by 1). Not verified by design."""
    out, _ = run_passes(model, ["ablate-se"], verify=False)
    return out


__all__ = ["DEFAULT_PASSES", "GraphPass", "PassContext", "PassKind", "PassOptions", "ablate_se", "fuse_default", "get_pass",
           "list_passes", "parse_pass_list", "register_pass", "run_passes", "verification_feeds"]
