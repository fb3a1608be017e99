"""Report plots as PNG bytes, drawn with matplotlib's Agg canvas (no display, no pyplot state).

Values that were not measured (None, NaN, inf) are left out of a plot rather than handed to
matplotlib, which would warn about them; a plot with nothing left to draw is not made.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

from se_deploy._util import write_bytes_atomic
from se_deploy.bench.results import Results
from se_deploy.report import budget, tables
from se_deploy.report.tables import finite

PLOT_FILES = {
    "latency_vs_batch": "Latency vs batch size",
    "se_vs_plain": "SE tax vs SE share of FLOPs",
    "op_breakdown": "Per-op breakdown",
    "se_budget_front": "SE budget: SE tax vs accuracy",
}


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def _t(s: object, width: int = 40) -> str:
    """A user string as a plot label: one line, at most ``width`` characters (a long model path
    would squeeze the axes to nothing), and no '$', which would switch matplotlib into mathtext."""
    s = " ".join(str(s).split())
    return (s if len(s) <= width else s[: width - 1] + "…").replace("$", r"\$")


def _tax_bar(tax: dict) -> tuple[float, float, float] | None:
    """(tax, lower error, upper error) for a bar with whiskers; no bar without a finite tax."""
    t, lo, hi = tax.get("tax_pct"), tax.get("tax_pct_lo"), tax.get("tax_pct_hi")
    if not finite(t):
        return None
    return t, max(0.0, t - lo) if finite(lo) else 0.0, max(0.0, hi - t) if finite(hi) else 0.0


def latency_vs_batch(r: Results) -> bytes | None:
    """Median latency (p90 as the upper whisker) against batch size; one panel per precision."""
    series: dict[str, dict[str, list[tuple[int, float, float]]]] = {}
    several = len({tables.measurement_backend(m) for m in r.measurements}) > 1
    for m in r.measurements:
        med, p90 = m.latency_ms.get("median"), m.latency_ms.get("p90")
        if finite(med):
            up = max(0.0, p90 - med) if finite(p90) else 0.0
            label = f"{m.model} on {tables.measurement_backend(m)}" if several else m.model
            series.setdefault(m.precision, {}).setdefault(label, []).append((m.batch, med, up))
    if not series:
        return None
    batches = sorted({m.batch for m in r.measurements})
    fig = _figure(4.2 * len(series) + 0.6, 3.4)
    axes = fig.subplots(1, len(series), squeeze=False)[0]
    for ax, (prec, models) in zip(axes, series.items()):
        for model, pts in models.items():
            pts.sort()
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[[0.0] * len(pts), [p[2] for p in pts]],
                        marker="o", capsize=3, label=_t(model))
        ax.set_title(_t(prec))
        ax.set_xlabel("batch size")
        ax.set_ylabel("latency ms (median, whisker p90)")
        if len(batches) > 1:
            ax.set_xscale("log", base=2)
            ax.set_xticks(batches, [str(b) for b in batches])
            ax.minorticks_off()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _png(fig)


def se_vs_plain(r: Results) -> bytes | None:
    """Per (precision, batch): SE tax with its interval next to the SE share of FLOPs."""
    bars = [(c, b) for c in r.comparisons if (b := _tax_bar(c.tax)) is not None]
    if not bars:
        return None
    fig = _figure(max(4.5, 1.3 * len(bars) + 2), 3.6)
    ax = fig.subplots()
    xs = list(range(len(bars)))
    w = 0.38
    flops = [(c.se_share or {}).get("flops_pct") for c, _ in bars]
    ax.bar([x - w / 2 for x in xs], [b[0] for _, b in bars], w, yerr=[[b[1] for _, b in bars], [b[2] for _, b in bars]],
           capsize=4, label="SE tax: extra latency %", color="#c0504d")
    ax.bar([x + w / 2 for x in xs], [f if finite(f) else 0.0 for f in flops], w, label="SE share of FLOPs %",
           color="#4f81bd")
    ax.axhline(0, color="black", lw=0.8)
    several = len({tables.comparison_backend(r, c) for c, _ in bars}) > 1
    ax.set_xticks(xs, [f"{_t(c.precision)}\nb={c.batch}" + (f"\n{_t(tables.comparison_backend(r, c), 16)}" if several
                                                            else "") for c, _ in bars])
    ax.set_ylabel("% of plain twin")
    ax.set_title(f"{_t(bars[0][0].se_model)} vs {_t(bars[0][0].plain_model)}")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def op_breakdown(r: Results, top: int = 10) -> bytes | None:
    """Time per op type for each profile, "SE blocks" highlighted."""
    profiles = [(p, ops) for p in r.profiles if (ops := tables.op_breakdown(p.by_op)[:top][::-1])]
    if not profiles:
        return None
    n = len(profiles)
    fig = _figure(5.0 * min(n, 2), 3.2 * ((n + 1) // 2))
    axes = fig.subplots((n + 1) // 2, min(n, 2), squeeze=False).ravel()
    for ax, (p, ops) in zip(axes, profiles):
        # positions, not category names: two long names cut to the same label stay two bars
        ax.barh(range(len(ops)), [o[1] for o in ops],
                color=["#c0504d" if o[0].lower().startswith("se") else "#4f81bd" for o in ops])
        ax.set_yticks(range(len(ops)), [_t(o[0]) for o in ops])
        ax.set_title(f"{_t(p.model)} {_t(p.precision)} b={p.batch} on {_t(p.source, 24)}", fontsize=9)
        ax.set_xlabel("ms per run")
        ax.tick_params(axis="y", labelsize=7)
    for ax in axes[n:]:
        ax.set_visible(False)
    return _png(fig)


def fleet_tax(runs: Sequence[Results], labels: Sequence[str]) -> bytes | None:
    """SE tax per (model, precision, batch), one bar per run, for the fleet report."""
    def key(r, c):
        return c.se_model, c.precision, c.batch, tables.comparison_backend(r, c)

    keys = list(dict.fromkeys(key(r, c) for r in runs for c in r.comparisons if _tax_bar(c.tax) is not None))
    if not keys:
        return None
    fig = _figure(max(5.0, 1.2 * len(keys) * max(1, len(runs)) ** 0.5 + 2), 3.6)
    ax = fig.subplots()
    w = 0.8 / len(runs)
    for i, (r, lab) in enumerate(zip(runs, labels)):
        xs, bars = [], []
        for j, k in enumerate(keys):
            c = next((c for c in r.comparisons if key(r, c) == k), None)
            bar = _tax_bar(c.tax) if c is not None else None
            if bar is not None:
                xs.append(j - 0.4 + w * (i + 0.5))
                bars.append(bar)
        if bars:
            ax.bar(xs, [b[0] for b in bars], w, yerr=[[b[1] for b in bars], [b[2] for b in bars]], capsize=3,
                   label=_t(lab))
    several = len({k[3] for k in keys}) > 1
    ax.set_xticks(range(len(keys)), [f"{_t(m)}\n{_t(p)} b={b}" + (f"\n{_t(be, 16)}" if several else "")
                                     for m, p, b, be in keys], fontsize=8)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel("SE tax, % extra latency")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def render_plots(r: Results) -> dict[str, bytes]:
    """All plots that have data, keyed by file stem (see PLOT_FILES)."""
    out = {}
    for stem, fn in (("latency_vs_batch", latency_vs_batch), ("se_vs_plain", se_vs_plain),
                     ("op_breakdown", op_breakdown), ("se_budget_front", budget.plot)):
        png = fn(r)
        if png:
            out[stem] = png
    return out


def write_plots(plots: dict[str, bytes], directory: str | os.PathLike) -> dict[str, Path]:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    return {stem: write_bytes_atomic(d / f"{stem}.png", png) for stem, png in plots.items()}
