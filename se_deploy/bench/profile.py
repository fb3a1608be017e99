"""Per-op latency breakdown from a runner's per-node profile, with SE blocks in their own bucket.

The runner (``Runner.profile``) measures each executed kernel and says which of the
model's original ONNX nodes it covers (for onnxruntime see
:mod:`se_deploy.runtime.ort_profile`). This module finds the SE blocks' nodes in the
model and groups the time: a kernel whose covered nodes are all SE nodes is SE work.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from se_deploy._util import read_sidecar
from se_deploy.errors import InputError
from se_deploy.export.se_detect import find_se_blocks
from se_deploy.onnx_io import load_onnx
from se_deploy.runtime.base import NodeProfile, Runner
from se_deploy.runtime.onnxruntime import OrtConfig, OrtRunner

SE_BUCKET = "SE blocks"


# --------------------------------------------------------------------------- aggregation
def _bucket(rows: Iterable[tuple[str, float]], total_us: float) -> dict[str, dict]:
    acc: dict[str, dict] = {}
    for key, us in rows:
        a = acc.setdefault(key, {"ms": 0.0, "pct": 0.0, "count": 0})
        a["ms"] += us / 1e3
        a["count"] += 1
    for a in acc.values():
        a["pct"] = 100.0 * a["ms"] * 1e3 / total_us if total_us > 0 else 0.0
    return dict(sorted(acc.items(), key=lambda kv: -kv[1]["ms"]))


def aggregate(profile: NodeProfile, se_node_names: set[str], neutral: set[str] = frozenset()) -> dict:
    """Group per-node times by op type, with kernels whose covered nodes are all SE nodes in one bucket.

    ``neutral`` originals (the Q/DQ nodes onnxruntime fuses into a QLinear kernel) do not
    decide membership: a QLinearMul made of an SE scale Mul and its Q/DQ is SE work."""
    total_us = sum(n.time_us for n in profile.nodes)
    rows = []
    for n in sorted(profile.nodes, key=lambda n: -n.time_us):
        orig = list(n.covers)
        deciding = [o for o in orig if o not in neutral] or orig
        in_se = [o in se_node_names for o in deciding]
        se = bool(orig) and all(in_se)
        mixed = any(in_se) and not se
        rows.append({"name": n.name, "op_type": n.op_type, "provider": n.provider, "ms": n.time_us / 1e3,
                     "pct": 100.0 * n.time_us / total_us if total_us > 0 else 0.0, "original": orig,
                     "se": se, "mixed": mixed})
    by_op = _bucket(((SE_BUCKET if r["se"] else r["op_type"], r["ms"] * 1e3) for r in rows), total_us)
    by_type = _bucket(((r["op_type"], r["ms"] * 1e3) for r in rows), total_us)
    se_rows = [r for r in rows if r["se"]]
    se = None
    if se_node_names:
        se = {"ms": sum(r["ms"] for r in se_rows), "count": len(se_rows),
              "pct": sum(r["pct"] for r in se_rows),
              "by_op": _bucket(((r["op_type"], r["ms"] * 1e3) for r in se_rows), total_us),
              "mixed_nodes": [r["name"] for r in rows if r["mixed"]],
              "se_nodes_not_seen": sorted(se_node_names - {o for r in rows for o in r["original"]})}
    unattributed = [r["name"] for r in rows if not r["original"]]
    return {"total_ms": total_us / 1e3, "by_op": by_op, "by_op_type": by_type, "se_blocks": se, "nodes": rows,
            "unattributed": unattributed}


def _load(model_path_or_proto):
    if hasattr(model_path_or_proto, "graph"):
        return model_path_or_proto
    return load_onnx(model_path_or_proto, check=False)


_QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def se_node_names(model, path=None) -> tuple[set[str], str | None]:
    """SE node names of ``model`` and a note on how they were found. Q/DQ nodes hide the SE
    pattern from detection, so for a quantized model the blocks are found in the float model
    its sidecar names (``source_model``); quantization keeps the float node names."""
    try:
        names = {n for b in find_se_blocks(model) for n in b.node_names if n}
        has_qdq = any(n.op_type in _QDQ_OPS for n in model.graph.node)
        if names or not has_qdq or path is None:
            return names, None
        src = (read_sidecar(path) or {}).get("source_model")
        if src and not Path(src).exists():  # the run folder was moved: look beside the quantized model
            src = str(Path(path).parent / Path(src).name)
        if not src or not Path(src).exists():
            return names, "quantized model without a readable source_model in its sidecar: no SE grouping"
        own = {n.name for n in model.graph.node}
        source_names = {n for b in find_se_blocks(_load(src)) for n in b.node_names if n}
        return source_names & own, f"SE blocks located in the float source model {src}"
    except Exception as e:  # grouping is a convenience; the per-op profile stands without it
        return set(), f"SE detection failed ({type(e).__name__}: {e})"


def profile_runner(runner: Runner, feed: Mapping[str, np.ndarray], *, iters: int = 20, warmup: int = 3,
                   model_path=None, se_nodes: set[str] | None = None) -> dict:
    """Profile ``runner`` (not yet activated) on ``feed`` and break the time down by op type.

    ``model_path``: the ONNX the runner runs (a path or ModelProto), where the SE blocks are
    looked up; ``se_nodes`` overrides that (an empty set disables the bucket). Returns a
    JSON-ready dict: ``by_op`` (op type or "SE blocks" -> {ms, pct, count}, per run),
    ``by_op_type`` (no SE grouping), ``se_blocks``, ``nodes``, ``unattributed``,
    ``total_ms`` (sum of kernel times per run), ``run_ms`` (mean wall time per run),
    ``overhead_ms`` and the settings used.
    """
    notes: list[str] = []
    original = _load(model_path) if model_path is not None and (
        hasattr(model_path, "graph") or str(model_path).endswith(".onnx")) else None
    if se_nodes is None:
        se_nodes = set()
        if original is not None:
            path = None if hasattr(model_path, "graph") else model_path
            se_nodes, note = se_node_names(original, path)
            if note:
                notes.append(note)
    prof = runner.profile(feed, iters=iters, warmup=warmup)
    qdq = {n.name for n in original.graph.node if n.op_type in _QDQ_OPS} if original is not None else set()
    result = aggregate(prof, set(se_nodes), neutral=qdq)
    # Mean, like the per-node times: each run's kernels fit inside its run window, so
    # total_ms <= run_ms and the difference is the runtime's own per-run overhead.
    run_ms = statistics.fmean(prof.runs_ms)
    result.update({"run_ms": run_ms, "run_ms_median": statistics.median(prof.runs_ms),
                   "overhead_ms": max(0.0, run_ms - result["total_ms"]), "iters": iters, "warmup": warmup,
                   "backend": runner.backend, "notes": notes + list(prof.notes),
                   **{k: v for k, v in prof.details.items() if k not in ("unattributed", "run_ms_median")}})
    return result


def profile_onnx(model_path_or_proto, feed: Mapping[str, np.ndarray], *, iters: int = 20, threads: int = 0,
                 se_node_names: set[str] | None = None, warmup: int = 3,
                 graph_optimization: str = "all") -> dict:
    """:func:`profile_runner` for an ONNX model on onnxruntime's CPU provider."""
    cfg = OrtConfig(providers=("CPUExecutionProvider",), threads=threads, graph_optimization=graph_optimization)
    src = model_path_or_proto if hasattr(model_path_or_proto, "graph") else str(model_path_or_proto)
    if not hasattr(src, "graph") and not Path(src).is_file():
        raise InputError(f"ONNX file not found: {src}")
    return profile_runner(OrtRunner(src, cfg), feed, iters=iters, warmup=warmup, model_path=src,
                          se_nodes=se_node_names)


__all__ = ["SE_BUCKET", "aggregate", "profile_onnx", "profile_runner", "se_node_names"]
