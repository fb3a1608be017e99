"""The SE budget's Pareto plot (SE tax against accuracy loss) as PNG bytes, drawn on matplotlib's Agg canvas."""

from __future__ import annotations

import io
import math


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def front_png(result: dict) -> bytes | None:
    """The estimated front, the full SE model, the plain twin and the chosen mix (measured, with its
    interval); None when there is nothing to draw."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    front = [m for m in result.get("front", []) if _finite(m.get("est_tax_pct")) and _finite((m.get("est_loss") or
                                                                                               [None])[0])]
    if not front:
        return None
    metric = result.get("loss_metric", "loss")
    fig = Figure(figsize=(6.0, 4.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    # the summed disagreement bounds the loss and can pass 100 points; no loss can, so the line stops there
    ax.step([m["est_tax_pct"] for m in front], [min(100.0, m["est_loss"][0]) for m in front], where="post",
            color="#4f81bd", marker=".", label="Pareto front (estimated: summed per-block disagreement, <= 100)")
    checked = [c for c in result.get("checked", []) if _finite(c.get("est_tax_pct")) and _finite(c.get("loss"))]
    if checked:
        ax.plot([c["est_tax_pct"] for c in checked], [c["loss"] for c in checked], "o", color="#999999", ms=4,
                label="mixes checked (estimated tax, measured loss)")
    full, plain, chosen = result.get("full", {}), result.get("plain", {}), result.get("chosen") or {}
    if _finite(full.get("tax", {}).get("tax_pct")):
        ax.plot([full["tax"]["tax_pct"]], [0.0], "s", color="#c0504d", ms=8, label="full SE model (measured)")
    if _finite(plain.get("loss")):
        ax.plot([0.0], [plain["loss"]], "D", color="#555555", ms=7, label="plain twin (no SE)")
    tax = chosen.get("tax") or {}
    if _finite(tax.get("tax_pct")) and _finite(chosen.get("loss")):
        t, lo, hi = tax["tax_pct"], tax.get("tax_pct_lo", tax["tax_pct"]), tax.get("tax_pct_hi", tax["tax_pct"])
        ax.errorbar([t], [chosen["loss"]], xerr=[[max(0.0, t - lo)], [max(0.0, hi - t)]], fmt="*", color="#9bbb59",
                    ms=14, capsize=4, label="chosen (measured)")
    if _finite(result.get("budget_pct")):
        ax.axvline(result["budget_pct"], color="#9bbb59", ls="--", lw=1, label=f"budget {result['budget_pct']:g}%")
    ax.set_xlabel("SE tax vs plain twin, % extra latency")
    ax.set_ylabel(f"accuracy loss: {metric}")
    title = "SE budget: SE tax vs accuracy"
    if result.get("synthetic"):
        title += " (SYNTHETIC DATA)"
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


__all__ = ["front_png"]
