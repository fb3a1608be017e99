"""Report tables as plain (headers, rows) of strings, shared by the Markdown and HTML renderers."""

from __future__ import annotations

import math
from typing import Any

from se_deploy.bench.results import Results
from se_deploy.envinfo import environment_rows

Table = tuple[list[str], list[list[str]]]

_OP_TIME_KEYS = ("ms", "total_ms", "time_ms", "mean_ms", "us", "total_us")
_OP_PCT_KEYS = ("pct", "percent", "share_pct", "share")
_OP_COUNT_KEYS = ("count", "calls", "nodes", "n")


def finite(v: Any) -> bool:
    """A number worth showing or plotting: not None, NaN, inf or a bool."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def fmt_ms(v: Any) -> str:
    if not finite(v):
        return "-"
    return f"{v:.3f}" if v < 10 else f"{v:.2f}" if v < 100 else f"{v:.1f}"


def fmt_pct(v: Any, signed: bool = False) -> str:
    if not finite(v):
        return "-"
    if signed:
        return f"{v:+.1f}%"
    return f"{v:.2f}%" if abs(v) < 1 else f"{v:.1f}%"


def _fmt_bound(v: Any) -> str:
    return f"{v:+.1f}" if finite(v) else "?"


def fmt_tax(tax: dict) -> str:
    """``+11.2% [+8.1, +14.0]`` (point and interval; "-" and "?" where a value is missing)."""
    lo, hi = _fmt_bound(tax.get("tax_pct_lo")), _fmt_bound(tax.get("tax_pct_hi"))
    return f"{fmt_pct(tax.get('tax_pct'), True)} [{lo}, {hi}]"


def backend_label(backend: Any, inference_precision: Any = None) -> str:
    """``openvino (bf16)``: the backend, and the precision it computed in where the runtime recorded it."""
    name = str(backend) if backend else "-"
    return f"{name} ({inference_precision})" if inference_precision else name


def measurement_backend(m: Any) -> str:
    return backend_label(m.backend, (m.runtime or {}).get("inference_precision"))


def comparison_backend(r: Results, c: Any) -> str:
    """A comparison's backend; files from before side-by-side backends name it only in ``run.backend``."""
    return backend_label(c.backend or r.run.get("backend"), c.inference_precision)


def headline(r: Results) -> list[str]:
    """One sentence per comparison: "SE costs 0.3% of FLOPs and 11% of latency"."""
    out = []
    for c in r.comparisons:
        share = c.se_share or {}
        flops = share.get("flops_pct")
        params = share.get("params_pct")
        cost = []
        if finite(params):
            cost.append(f"{params:.1f}% of params")
        if finite(flops):
            cost.append(f"{flops:.2f}% of FLOPs")
        lead = f"SE blocks are {' and '.join(cost)} of {c.se_model}, but" if cost else f"{c.se_model}:"
        out.append(f"{lead} {fmt_tax(c.tax)} latency vs {c.plain_model} ({c.precision}, batch {c.batch}, "
                   f"{comparison_backend(r, c)}).")
    return out


def se_tax_table(r: Results) -> Table:
    conf = next((c.tax.get("confidence") for c in r.comparisons), 0.95)
    conf = conf if finite(conf) else 0.95
    headers = ["SE model", "plain twin", "precision", "batch", "backend", "SE median ms", "plain median ms",
               f"SE tax ({conf:.0%} CI)", "SE share of params", "SE share of FLOPs"]
    rows = []
    for c in r.comparisons:
        share = c.se_share or {}
        rows.append([c.se_model, c.plain_model, c.precision, str(c.batch), comparison_backend(r, c),
                     fmt_ms(c.tax.get("se_median_ms")),
                     fmt_ms(c.tax.get("plain_median_ms")), fmt_tax(c.tax), fmt_pct(share.get("params_pct")),
                     fmt_pct(share.get("flops_pct"))])
    return headers, rows


def latency_table(r: Results) -> Table:
    headers = ["model", "precision", "batch", "backend", "median ms", "p90 ms", "p99 ms", "min ms", "CV",
               "items/s", "n"]
    rows = []
    for m in r.measurements:
        s = m.latency_ms
        cv = s.get("cv")
        rows.append([m.model, m.precision, str(m.batch), measurement_backend(m), fmt_ms(s.get("median")),
                     fmt_ms(s.get("p90")),
                     fmt_ms(s.get("p99")), fmt_ms(s.get("min")), fmt_pct(100 * cv if finite(cv) else None),
                     f"{m.throughput:.1f}" if finite(m.throughput) else "-", str(s.get("n", "-"))])
    return headers, rows


def split_table(r: Results) -> Table | None:
    """H2D / compute / D2H medians, only when some engine separated them."""
    rows = []
    for m in r.measurements:
        if m.compute_ms is None:
            continue
        rows.append([m.model, m.precision, str(m.batch), measurement_backend(m), fmt_ms((m.h2d_ms or {}).get("median")),
                     fmt_ms(m.compute_ms.get("median")), fmt_ms((m.d2h_ms or {}).get("median"))])
    if not rows:
        return None
    return ["model", "precision", "batch", "backend", "H2D median ms", "compute median ms", "D2H median ms"], rows


def _pick(d: dict, keys: tuple[str, ...]) -> float | None:
    for k in keys:
        v = d.get(k)
        if finite(v):
            return float(v) / (1000.0 if k.endswith("_us") or k == "us" else 1.0)
    return None


def op_breakdown(by_op: dict) -> list[tuple[str, float, float | None, int | None]]:
    """Normalise a profile's ``by_op`` into (op, ms, pct, count), largest first."""
    items = by_op.get("by_op", by_op) if isinstance(by_op, dict) else {}
    items = items if isinstance(items, dict) else {}
    out = []
    for op, v in items.items():
        if isinstance(v, dict):
            ms = _pick(v, _OP_TIME_KEYS)
            pct = _pick(v, _OP_PCT_KEYS)
            cnt = _pick(v, _OP_COUNT_KEYS)
        else:
            ms, pct, cnt = (float(v) if finite(v) else None), None, None
        if ms is None:  # no time, or NaN: nothing to show or plot
            continue
        out.append((str(op), ms, pct, int(cnt) if cnt is not None else None))
    total = sum(x[1] for x in out)
    if total > 0:  # shares the profile did not give are taken from the times
        out = [(op, ms, pct if pct is not None else 100.0 * ms / total, cnt) for op, ms, pct, cnt in out]
    return sorted(out, key=lambda x: -x[1])


def op_tables(r: Results, top: int = 12) -> list[tuple[str, Table]]:
    tables = []
    for p in r.profiles:
        rows = [[op, fmt_ms(ms), fmt_pct(pct), "-" if cnt is None else str(cnt)]
                for op, ms, pct, cnt in op_breakdown(p.by_op)[:top]]
        details = p.extra.get("extra") if isinstance(p.extra.get("extra"), dict) else {}  # bench keeps them here
        on = backend_label(p.source, details.get("inference_precision"))
        tables.append((f"{p.model} {p.precision} batch {p.batch} on {on}", (["op type", "ms", "share", "count"], rows)))
    return tables


def accuracy_table(r: Results) -> Table | None:
    if not r.accuracy:
        return None
    keys = list(dict.fromkeys(k for a in r.accuracy for k, v in a.metrics.items()
                              if isinstance(v, (int, float, str)) and not isinstance(v, bool)))
    rows = []
    for a in r.accuracy:
        cells = []
        for k in keys:
            v = a.metrics.get(k)
            cells.append(f"{v:.4g}" if isinstance(v, float) else "-" if v is None else str(v))
        rows.append([a.model, a.precision, a.reference, a.data, *cells])
    return ["model", "precision", "reference", "data", *keys], rows


def flatten(d: Any, prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if isinstance(d, dict):
        for k, v in d.items():
            out += flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(d, list) and d and all(isinstance(x, dict) for x in d):
        for i, x in enumerate(d):
            out += flatten(x, f"{prefix}[{i}]")
    elif isinstance(d, list):
        out.append((prefix, ", ".join(str(x) for x in d) if d else "-"))
    else:
        out.append((prefix, "unknown" if d is None else str(d)))
    return out


def environment_table(r: Results, max_len: int = 200) -> Table:
    """Headline facts (CPU, cores, RAM, OS, versions, GPU, Jetson power) when recorded by envinfo."""
    env = r.environment
    rows: list[list[str]] = []
    if isinstance(env, dict) and "cpu" in env:
        rows = [[str(k), str(v)] for k, v in environment_rows(env)]
    if not rows:
        rows = [[k, v] for k, v in flatten(env)]
    rows = [[k, v if len(v) <= max_len else v[: max_len - 1] + "…"] for k, v in rows]
    return ["key", "value"], rows


def environment_full(r: Results) -> Table:
    return ["key", "value"], [[k, v] for k, v in flatten(r.environment)]


def run_table(r: Results) -> Table:
    s = r.run.get("settings", {})
    rows = [["run", r.label], ["created", r.created], ["se-deploy", r.se_deploy_version],
            ["mode", str(r.run.get("mode", "-"))], ["backend", str(r.run.get("backend", "-"))]]
    rows += [[k, str(v)] for k, v in s.items()] if isinstance(s, dict) else []
    return ["setting", "value"], rows


def report_tables(r: Results) -> dict[str, Any]:
    """Everything the one-run report templates show, as plain strings and tables."""
    return {
        "headline": headline(r),
        "se_tax": se_tax_table(r),
        "interval_method": str(r.comparisons[0].tax.get("method", "bootstrap")) if r.comparisons else "",
        "latency": latency_table(r),
        "split": split_table(r),
        "accuracy": accuracy_table(r),
        "ops": op_tables(r),
        "warnings": list(r.warnings),
        "run": run_table(r),
        "environment": environment_table(r),
        "environment_full": environment_full(r),
    }
