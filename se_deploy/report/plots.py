"""Report plots as PNG bytes, drawn with matplotlib's Agg canvas (no display, no pyplot state)."""

from __future__ import annotations

import io
import os
from pathlib import Path

from se_deploy._util import write_bytes_atomic
from se_deploy.report import tables
from se_deploy.bench.results import Results

PLOT_FILES = {
    "latency_vs_batch": "Latency vs batch size",
    "se_vs_plain": "SE tax vs SE share of FLOPs",
    "op_breakdown": "Per-op breakdown",
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


def _t(s: object) -> str:
    # '$' would switch matplotlib into mathtext for user-supplied model names.
    return str(s).replace("$", r"\$")


def latency_vs_batch(r: Results) -> bytes | None:
    """Median latency (p90 as the upper whisker) against batch size; one panel per precision."""
    precs = r.precisions()
    if not r.measurements:
        return None
    fig = _figure(4.2 * len(precs) + 0.6, 3.4)
    axes = fig.subplots(1, len(precs), squeeze=False)[0]
    for ax, prec in zip(axes, precs):
        for model in dict.fromkeys(m.model for m in r.measurements if m.precision == prec):
            pts = sorted((m.batch, m.latency_ms["median"], m.latency_ms["p90"]) for m in r.measurements
                         if m.precision == prec and m.model == model)
            xs = [p[0] for p in pts]
            med = [p[1] for p in pts]
            up = [p[2] - p[1] for p in pts]
            ax.errorbar(xs, med, yerr=[[0] * len(pts), up], marker="o", capsize=3, label=_t(model))
        ax.set_title(_t(prec))
        ax.set_xlabel("batch size")
        ax.set_ylabel("latency ms (median, whisker p90)")
        batches = sorted({m.batch for m in r.measurements})
        if len(batches) > 1:
            ax.set_xscale("log", base=2)
            ax.set_xticks(batches, [str(b) for b in batches])
            ax.minorticks_off()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _png(fig)


def se_vs_plain(r: Results) -> bytes | None:
    """Per (precision, batch): SE tax with its interval next to the SE share of FLOPs."""
    if not r.comparisons:
        return None
    fig = _figure(max(4.5, 1.3 * len(r.comparisons) + 2), 3.6)
    ax = fig.subplots()
    labels, taxes, lo, hi, flops = [], [], [], [], []
    for c in r.comparisons:
        labels.append(_t(f"{c.precision}\nb={c.batch}"))
        t = c.tax
        taxes.append(t["tax_pct"])
        lo.append(max(0.0, t["tax_pct"] - t["tax_pct_lo"]))
        hi.append(max(0.0, t["tax_pct_hi"] - t["tax_pct"]))
        f = (c.se_share or {}).get("flops_pct")
        flops.append(f if isinstance(f, (int, float)) else 0.0)
    xs = list(range(len(labels)))
    w = 0.38
    ax.bar([x - w / 2 for x in xs], taxes, w, yerr=[lo, hi], capsize=4, label="SE tax: extra latency %",
           color="#c0504d")
    ax.bar([x + w / 2 for x in xs], flops, w, label="SE share of FLOPs %", color="#4f81bd")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(xs, labels)
    ax.set_ylabel("% of plain twin")
    ax.set_title(_t(f"{r.comparisons[0].se_model} vs {r.comparisons[0].plain_model}"))
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def op_breakdown(r: Results, top: int = 10) -> bytes | None:
    """Time per op type for each profile, "SE blocks" highlighted."""
    if not r.profiles:
        return None
    n = len(r.profiles)
    fig = _figure(5.0 * min(n, 2), 3.2 * ((n + 1) // 2))
    axes = fig.subplots((n + 1) // 2, min(n, 2), squeeze=False).ravel()
    for ax, p in zip(axes, r.profiles):
        ops = tables.op_breakdown(p.by_op)[:top][::-1]
        ax.barh([_t(o[0]) for o in ops], [o[1] for o in ops],
                color=["#c0504d" if o[0].lower().startswith("se") else "#4f81bd" for o in ops])
        ax.set_title(_t(f"{p.model} {p.precision} b={p.batch}"), fontsize=9)
        ax.set_xlabel("ms per run")
        ax.tick_params(axis="y", labelsize=7)
    for ax in axes[n:]:
        ax.set_visible(False)
    return _png(fig)


def render_plots(r: Results) -> dict[str, bytes]:
    """All plots that have data, keyed by file stem (see PLOT_FILES)."""
    out = {}
    for stem, fn in (("latency_vs_batch", latency_vs_batch), ("se_vs_plain", se_vs_plain),
                     ("op_breakdown", op_breakdown)):
        png = fn(r)
        if png:
            out[stem] = png
    return out


def write_plots(plots: dict[str, bytes], directory: str | os.PathLike) -> dict[str, Path]:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    return {stem: write_bytes_atomic(d / f"{stem}.png", png) for stem, png in plots.items()}
