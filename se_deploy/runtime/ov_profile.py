"""OpenVINO's performance counters, mapped back to the model's own ONNX nodes.

With ``PERF_COUNT`` on, an infer request reports one row per node of the graph the
plugin executes (after its fusions): ``node_name``, ``node_type``, ``exec_type`` (the
kernel, e.g. ``brgconv_avx512_amx_1x1_bf16``), ``status`` and ``real_time``, for the
last inference only. Fused nodes stay in the list as ``NOT_RUN`` with no time. The
names do not always match the model's: the ONNX frontend splits a Conv with a bias into
``<name>/WithoutBiases`` and an Add ``<name>``, and a DequantizeLinear into
``Convert_N``/``Subtract_N``; a Snippets ``Subgraph`` takes the name of the last node it
fuses; the plugin inserts ``Reorder`` nodes for layout and precision conversions.

The executed graph (``compiled.get_runtime_model()``) says exactly what each row ran:
its ``originalLayersNames`` lists the friendly names of the nodes fused into it, and the
ONNX frontend keeps ONNX node names as friendly names. No library maps the rows back,
so this module does, in that order:

1. the runtime node's ``originalLayersNames`` that are ONNX node names;
2. else its own name, or that name without the frontend's ``/WithoutBiases`` suffix;
3. else (a plugin-made Reorder or Convert, or the input's layout change) what the node
   whose output it converts covers, following chains of such nodes upstream (as
   :mod:`se_deploy.runtime.ort_profile` charges onnxruntime's layout reorders to the
   producer of the activation they read); at the graph input, what its consumers cover.

A row that none of these explains is reported as unattributed, never guessed.

The functions below take plain data (rows as dicts, the runtime graph as
:class:`RuntimeOp`), so recorded rows can be parsed without OpenVINO;
:func:`runtime_ops` and :func:`counter_rows` read the OpenVINO objects.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from se_deploy.errors import BenchmarkError

EXECUTED = "EXECUTED"
_FRONTEND_SUFFIXES = ("/WithoutBiases",)
# exec_type ends in the precision of the node's input: "_I8" is u8 (printed as an int8 placeholder),
# "_i8" s8, then "_bf16", "_f16", "_f32".
_INT8_KERNEL = re.compile(r"_i8$", re.IGNORECASE)


@dataclass(frozen=True)
class RuntimeOp:
    """One node of the executed graph: its plugin layer type, the friendly names of the nodes
    fused into it, and the names of the runtime nodes that feed it."""

    name: str
    layer_type: str
    originals: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"name": self.name, "layer_type": self.layer_type, "originals": list(self.originals),
                "inputs": list(self.inputs)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RuntimeOp":
        return cls(str(d["name"]), str(d.get("layer_type", "")), tuple(d.get("originals", ())),
                   tuple(d.get("inputs", ())))


# --------------------------------------------------------------------------- reading OpenVINO objects
def _rt_str(info: Any, key: str) -> str:
    if key not in info:
        return ""
    value = info[key]
    return value.astype(str) if hasattr(value, "astype") else str(value)


def runtime_ops(compiled) -> dict[str, RuntimeOp]:
    """The executed graph of an ``ov.CompiledModel`` as :class:`RuntimeOp` by friendly name."""
    ops = {}
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        names = _rt_str(info, "originalLayersNames")
        ops[op.get_friendly_name()] = RuntimeOp(
            op.get_friendly_name(), _rt_str(info, "layerType"), tuple(s for s in names.split(",") if s),
            tuple(op.input_value(i).get_node().get_friendly_name() for i in range(op.get_input_size())))
    return ops


def counter_rows(request) -> list[dict]:
    """The last inference's performance counters of an ``ov.InferRequest`` as plain dicts (time in us)."""
    return [{"node_name": p.node_name, "node_type": p.node_type, "exec_type": p.exec_type,
             "status": p.status.name, "real_us": p.real_time.total_seconds() * 1e6}
            for p in request.get_profiling_info()]


# --------------------------------------------------------------------------- parsing
def mean_times(runs: Sequence[Sequence[Mapping[str, Any]]]) -> dict[str, dict]:
    """Per executed node: ``{"node_type", "exec_type", "us"}``, ``us`` averaged over ``runs``
    (one list of rows per inference, as :func:`counter_rows` gives them)."""
    if not runs:
        raise BenchmarkError("no profiled runs to average")
    nodes: dict[str, dict] = {}
    for rows in runs:
        for r in rows:
            if r.get("status") != EXECUTED:
                continue
            rec = nodes.setdefault(r["node_name"], {"node_type": r.get("node_type", "?"),
                                                    "exec_type": r.get("exec_type", "?"), "us": 0.0})
            rec["us"] += float(r.get("real_us", 0.0))
    for rec in nodes.values():
        rec["us"] /= len(runs)
    return nodes


def attribute(names: Iterable[str], ops: Mapping[str, RuntimeOp],
              onnx_nodes: set[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Map each executed node name to the ONNX node names it runs (see the module docstring).

    Returns ``(mapping, unattributed)``; every name is in ``mapping``, with an empty list
    when nothing explains it.
    """
    consumers: dict[str, list[str]] = defaultdict(list)
    for op in ops.values():
        for src in op.inputs:
            consumers[src].append(op.name)

    def own(name: str) -> list[str]:
        op = ops.get(name)
        hits = [o for o in op.originals if o in onnx_nodes] if op is not None else []
        if hits:
            return list(dict.fromkeys(hits))
        for cand in (name, *(name[: -len(s)] for s in _FRONTEND_SUFFIXES if name.endswith(s))):
            if cand in onnx_nodes:
                return [cand]
        return []

    def walk(start: str, step) -> list[str]:
        seen, frontier = {start}, [start]
        while frontier:
            nxt = []
            for name in frontier:
                for near in step(name):
                    if near in seen:
                        continue
                    seen.add(near)
                    hits = own(near)
                    if hits:
                        return hits
                    nxt.append(near)
            frontier = nxt
        return []

    mapping, unattributed = {}, []
    for name in names:
        hits = own(name)
        if not hits and name in ops:
            hits = walk(name, lambda n: ops[n].inputs if n in ops else ()) or walk(name, lambda n: consumers.get(n, ()))
        mapping[name] = hits
        if not hits:
            unattributed.append(name)
    return mapping, sorted(unattributed)


def kernel_summary(times: Mapping[str, Mapping[str, Any]]) -> dict:
    """What the kernels ran: executed nodes per exec-type precision suffix, and whether INT8 and AMX kernels ran."""
    by_suffix: dict[str, int] = defaultdict(int)
    int8 = amx = 0
    for rec in times.values():
        exec_type = str(rec.get("exec_type", ""))
        by_suffix[exec_type.rsplit("_", 1)[-1] if "_" in exec_type else exec_type] += 1
        int8 += bool(_INT8_KERNEL.search(exec_type))
        amx += "amx" in exec_type
    return {"kernels_by_input_precision": dict(sorted(by_suffix.items())), "int8_kernels": int8, "amx_kernels": amx}


__all__ = ["EXECUTED", "RuntimeOp", "attribute", "counter_rows", "kernel_summary", "mean_times", "runtime_ops"]
