"""onnxruntime's profiler trace, mapped back to the model's own nodes.

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

import re
from collections import defaultdict
from typing import Any, Iterable, Mapping

from se_deploy.errors import BenchmarkError

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


__all__ = ["attribute_nodes", "parse_trace"]
