"""Per-op latency breakdown from onnxruntime's profiler, with SE blocks in their own bucket.

onnxruntime records one ``<node>_kernel_time`` event per node per run. Its graph
optimizer renames what it fuses (``a_nchwc`` for a Conv+Relu written to tensor ``a``,
``ReorderOutput_token_10`` for a layout conversion), so the trace names do not match the
model's nodes. No library maps them back, so this module does, from the optimized
graph onnxruntime saves alongside the trace:

1. the trace name is an original node name;
2. the optimized node writes an original tensor (its producer is the original node);
3. the name is an original tensor or node name plus an optimizer suffix
   (``_nchwc``, ``_token_N``);
4. the optimized node reads an original activation (layout reorders into a fused op).

Original nodes that no optimized node names (fused away, e.g. the Conv in Conv+Relu)
go to the optimized node that covers their first consumer. A trace node that none of
these rules explains is reported under ``unattributed``, never guessed.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from se_deploy.errors import BenchmarkError, UsageError

SE_BUCKET = "SE blocks"
_SUFFIXES = re.compile(r"(_nchwc|_token_\d+|_kernel_time)+$")


# --------------------------------------------------------------------------- trace parsing
def parse_trace(events: Iterable[Mapping[str, Any]], *, skip_runs: int = 0) -> tuple[dict, list[float]]:
    """Per-node kernel time from a trace, averaged over runs after the first ``skip_runs``.

    Returns ``({node_name: {"op_type", "provider", "us"}}, [model_run durations in us])``.
    A node event belongs to the run whose ``model_run`` window contains it.
    """
    events = [e for e in events if isinstance(e, Mapping)]
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                  if e.get("cat") == "Session" and e.get("name") == "model_run")
    if len(runs) <= skip_runs:
        raise BenchmarkError(f"the profile has {len(runs)} runs; {skip_runs} warm-up runs leave nothing to measure")
    kept = runs[skip_runs:]
    nodes: dict[str, dict] = {}
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        ts = e.get("ts", 0)
        if not any(lo <= ts <= hi for lo, hi in kept):
            continue
        name = e["name"][: -len("_kernel_time")]
        args = e.get("args", {}) or {}
        rec = nodes.setdefault(name, {"op_type": args.get("op_name", "?"), "provider": args.get("provider", "?"),
                                      "us": 0.0})
        rec["us"] += float(e.get("dur", 0))
    for rec in nodes.values():
        rec["us"] /= len(kept)
    return nodes, [float(hi - lo) for lo, hi in kept]


# --------------------------------------------------------------------------- attribution
def _originals(model) -> tuple[dict, dict, dict]:
    """Original graph: node name -> node, tensor -> producer name, tensor -> consumer names."""
    by_name, producer, consumers = {}, {}, defaultdict(list)
    for i, n in enumerate(model.graph.node):
        name = n.name or f"{n.op_type}_{i}"
        by_name[name] = n
        for o in n.output:
            if o:
                producer[o] = name
        for t in n.input:
            if t:
                consumers[t].append(name)
    return by_name, producer, consumers


_LAYOUT_OPS = ("ReorderInput", "ReorderOutput", "Transpose", "MemcpyToHost", "MemcpyFromHost")


def attribute_nodes(original, optimized, trace_names: Iterable[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Map each trace node name to the original node names it executes (see module docstring).

    ``optimized`` may be None (no saved graph): then only rules 1 and 3 apply.
    Returns ``(mapping, unattributed)``.
    """
    by_name, producer, consumers = _originals(original)
    inits = {t.name for t in original.graph.initializer}
    opt_nodes = {n.name: n for n in optimized.graph.node} if optimized is not None else {}
    direct: dict[str, set[str]] = {}
    # How each trace node was matched: a node keeping an original *node* name heads its fusion
    # (ORT's Conv+activation keeps the Conv's name); one named after an original *tensor* ends it
    # (the NCHWc transformer names the fused conv after the activation's output).
    heads, tails = set(), set()
    for tn in trace_names:
        hit: set[str] = set()
        node = opt_nodes.get(tn)
        if tn in by_name:
            hit.add(tn)
            heads.add(tn)
        if not hit and node is not None:
            hit.update(producer[o] for o in node.output if o in producer)
            if hit:
                tails.add(tn)
        if not hit:
            base = _SUFFIXES.sub("", tn)
            if base in by_name:
                hit.add(base)
                heads.add(tn)
            elif base in producer:
                hit.add(producer[base])
                tails.add(tn)
        if not hit and node is not None:
            hit.update(producer[t] for t in node.input if t in producer and t not in inits)
        direct[tn] = hit

    def op_of(tn: str) -> str:
        n = opt_nodes.get(tn)
        return n.op_type if n is not None else ""

    owner: dict[str, list[str]] = defaultdict(list)
    for tn, hit in direct.items():
        if op_of(tn) in _LAYOUT_OPS:
            continue  # a layout conversion computes nothing of the nodes it touches
        for o in hit:
            owner[o].append(tn)
    outputs_of = {tn: set(n.output) for tn, n in opt_nodes.items()}
    inputs_of = {tn: set(n.input) for tn, n in opt_nodes.items()}

    def absorbed_into(orig: str) -> str | None:
        n = by_name[orig]
        outs = [t for t in n.output if t]
        ins = [t for t in n.input if t and t not in inits]
        # (i) an optimized compute node writes this node's output: the fusion ends here.
        for tn in direct:
            if op_of(tn) not in _LAYOUT_OPS and outputs_of.get(tn, set()) & set(outs):
                return tn
        # (ii) the sole consumer's node was named after its output tensor: it ends a fusion we start.
        for t in outs:
            cs = consumers.get(t, [])
            if len(cs) == 1:
                for tn in owner.get(cs[0], []):
                    if tn in tails:
                        return tn
        # (iii) we are the sole consumer of a node that heads a fusion.
        for t in ins:
            if t in producer and len(consumers.get(t, [])) == 1:
                for tn in owner.get(producer[t], []):
                    if tn in heads:
                        return tn
        # (iv) nearest owned neighbour, downstream first.
        for direction in ("down", "up"):
            seen, frontier = {orig}, [orig]
            while frontier:
                nxt = []
                for o in frontier:
                    if direction == "down":
                        near = [c for t in by_name[o].output for c in consumers.get(t, [])]
                    else:
                        near = [producer[t] for t in by_name[o].input if t in producer]
                    for c in near:
                        if owner.get(c):
                            return owner[c][0]
                        if c not in seen:
                            seen.add(c)
                            nxt.append(c)
                frontier = nxt
        return None

    mapping = {tn: set(hit) for tn, hit in direct.items()}
    for orig in by_name:
        if orig in owner or any(orig in hit for hit in direct.values()):
            continue
        target = absorbed_into(orig)
        if target is not None:
            mapping[target].add(orig)
    unattributed = sorted(tn for tn, hit in direct.items() if not hit)
    return {tn: sorted(v) for tn, v in mapping.items()}, unattributed


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


def aggregate(nodes: Mapping[str, Mapping], mapping: Mapping[str, list[str]], se_node_names: set[str],
              unattributed: list[str], neutral: set[str] = frozenset()) -> dict:
    """Group per-node times by op type, with nodes whose originals are all SE nodes in one bucket.

    ``neutral`` originals (the Q/DQ nodes onnxruntime fuses into a QLinear kernel) do not
    decide membership: a QLinearMul made of an SE scale Mul and its Q/DQ is SE work."""
    total_us = sum(r["us"] for r in nodes.values())
    rows = []
    for name, r in sorted(nodes.items(), key=lambda kv: -kv[1]["us"]):
        orig = mapping.get(name, [])
        deciding = [o for o in orig if o not in neutral] or orig
        in_se = [o in se_node_names for o in deciding]
        se = bool(orig) and all(in_se)
        mixed = any(in_se) and not se
        rows.append({"name": name, "op_type": r["op_type"], "provider": r["provider"], "ms": r["us"] / 1e3,
                     "pct": 100.0 * r["us"] / total_us if total_us > 0 else 0.0, "original": orig,
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
    return {"total_ms": total_us / 1e3, "by_op": by_op, "by_op_type": by_type, "se_blocks": se, "nodes": rows,
            "unattributed": unattributed}


def _load(model_path_or_proto):
    if hasattr(model_path_or_proto, "graph"):
        return model_path_or_proto
    from se_deploy.onnx_io import load_onnx

    return load_onnx(model_path_or_proto, check=False)


_QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def _detect_se_nodes(model, path=None) -> tuple[set[str], str | None]:
    """SE node names of ``model``. Q/DQ nodes hide the SE pattern from detection, so for a
    quantized model the blocks are found in the float model its sidecar names
    (``source_model``); quantization keeps the float node names, so they carry over."""
    try:
        from se_deploy.export.se_detect import find_se_blocks

        names = {n for b in find_se_blocks(model) for n in b.node_names if n}
        has_qdq = any(n.op_type in _QDQ_OPS for n in model.graph.node)
        if names or not has_qdq or path is None:
            return names, None
        from se_deploy._util import read_sidecar

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


def profile_onnx(model_path_or_proto, feed: Mapping[str, np.ndarray], *, iters: int = 20, threads: int = 0,
                 se_node_names: set[str] | None = None, warmup: int = 3,
                 graph_optimization: str = "all") -> dict:
    """Run onnxruntime's profiler on ``feed`` and break the time down by op type.

    ``se_node_names``: original node names that belong to SE blocks; None detects them
    with ``se_deploy.export.se_detect.find_se_blocks``; an empty set disables the bucket.
    Returns a JSON-ready dict: ``by_op`` (op type or "SE blocks" -> {ms, pct, count}, per
    run), ``by_op_type`` (no SE grouping), ``se_blocks``, ``nodes``, ``unattributed``,
    ``total_ms`` (sum of kernel times per run), ``run_ms`` (mean ``model_run``),
    ``overhead_ms`` and the settings used.
    """
    from se_deploy.runtime.onnxruntime import OrtConfig, OrtRunner

    if not isinstance(iters, int) or iters < 1:
        raise UsageError(f"profile iterations must be >= 1, got {iters!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise UsageError(f"profile warm-up runs must be >= 0, got {warmup!r}")
    original = _load(model_path_or_proto)
    notes: list[str] = []
    if se_node_names is None:
        path = None if hasattr(model_path_or_proto, "graph") else model_path_or_proto
        se_node_names, note = _detect_se_nodes(original, path)
        if note:
            notes.append(note)
    with tempfile.TemporaryDirectory(prefix="se-deploy-profile-") as tmp:
        opt_path = os.path.join(tmp, "optimized.onnx")
        cfg = OrtConfig(providers=("CPUExecutionProvider",), threads=threads, graph_optimization=graph_optimization,
                        enable_profiling=True, profile_dir=tmp, optimized_model_path=opt_path)
        src = model_path_or_proto if not hasattr(model_path_or_proto, "graph") else original
        with OrtRunner(src, cfg) as runner:
            for _ in range(warmup + iters):
                runner.infer(feed)
            trace = runner.end_profiling()
            providers = runner.describe()["providers"]
        events = json.loads(Path(trace).read_text())
        optimized = None
        try:
            import onnx

            optimized = onnx.load(opt_path)
        except Exception as e:  # fall back to name rules only
            notes.append(f"optimized graph not readable ({type(e).__name__}); attribution by name only")
    nodes, runs = parse_trace(events, skip_runs=warmup)
    mapping, unattributed = attribute_nodes(original, optimized, nodes)
    qdq = {n.name for n in original.graph.node if n.op_type in _QDQ_OPS}
    result = aggregate(nodes, mapping, set(se_node_names), unattributed, neutral=qdq)
    # Mean, like the per-node times: each run's kernels fit inside its model_run window, so
    # total_ms <= run_ms and the difference is onnxruntime's own per-run overhead.
    run_ms = statistics.fmean(runs) / 1e3
    result.update({"run_ms": run_ms, "run_ms_median": statistics.median(runs) / 1e3,
                   "overhead_ms": max(0.0, run_ms - result["total_ms"]), "iters": iters,
                   "warmup": warmup, "threads": threads, "graph_optimization": graph_optimization,
                   "providers": providers, "notes": notes})
    return result


__all__ = ["SE_BUCKET", "aggregate", "attribute_nodes", "parse_trace", "profile_onnx"]
