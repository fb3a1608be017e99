"""The SE-budget sections of the one-run report: a results file whose ``se_budget`` key holds the
se-budget sidecar (the pipeline's ``[se_budget]`` stage puts it there) gets a per-block table, the
Pareto front and the chosen mix."""

from __future__ import annotations

from typing import Any

from se_deploy.bench.results import Results
from se_deploy.budget.plot import front_png
from se_deploy.report.tables import Table, fmt_ms, fmt_tax, finite


def budget_of(r: Results) -> dict | None:
    """The se-budget record of ``r``, when the stage ran."""
    b = r.extra.get("se_budget")
    return b if isinstance(b, dict) and b.get("blocks") else None


def _num(v: Any, spec: str = ".2f") -> str:
    return format(v, spec) if finite(v) else "-"


def block_table(b: dict) -> Table:
    labelled = bool(b.get("labelled"))
    key, what = ("top1", "top-1 %") if labelled else ("agreement", "agreement %")
    headers = ["block", "rank", "cost ms", "saving removed %", "gate mean", "gate std max", "saturated %",
               f"removed {what}", f"folded {what}", "removed SQNR dB", "folded SQNR dB", "fate"]
    rows = []
    for row in b["blocks"]:
        rm, fo = row["remove"]["accuracy"], row["fold"]["accuracy"]
        lat = row["remove"].get("latency")
        saving = (f"{lat['saving_pct']:+.1f} [{lat['saving_pct_lo']:+.1f}, {lat['saving_pct_hi']:+.1f}]"
                  if lat else "- (profile)")
        gate = row["gate"]
        rows.append([str(row["block"]), str(row.get("rank", "-")), fmt_ms(row.get("cost_ms")), saving,
                     _num(gate.get("mean")), _num(gate.get("channel_std_max"), ".3f"),
                     _num(100 * gate["saturated"] if finite(gate.get("saturated")) else None, ".0f"),
                     _num(rm.get(key)), _num(fo.get(key)), _num(rm.get("sqnr_db"), ".1f"),
                     _num(fo.get("sqnr_db"), ".1f"), str(row.get("fate", "-"))])
    return headers, rows


def front_table(b: dict) -> Table:
    rows = [[_num(m["est_tax_pct"], ".1f"), _num(m["est_loss"][0]), str(m["fates"].count("keep")),
             str(m["fates"].count("fold")), str(m["fates"].count("remove"))] for m in b.get("front", [])]
    return ["estimated SE tax %", "estimated disagreement pt", "kept", "folded", "removed"], rows


def summary(b: dict) -> list[str]:
    out = []
    full, plain, ch = b.get("full", {}), b.get("plain", {}), b.get("chosen") or {}
    out.append(f"Budget {b.get('budget_pct')}% SE tax on {b.get('backend')} (batch {b.get('batch')}); full SE model "
               f"{fmt_tax(full.get('tax', {}))}.")
    if ch:
        f = ch.get("fates", [])
        out.append(f"Chosen: {f.count('keep')} kept, {f.count('fold')} folded, {f.count('remove')} removed; measured "
                   f"SE tax {fmt_tax(ch.get('tax', {}))}, loss {_num(ch.get('loss'))} ({b.get('loss_metric')}).")
    if finite(plain.get("loss")):
        out.append(f"Plain twin (every SE block removed): loss {_num(plain['loss'])}.")
    return out


def sections(r: Results) -> dict | None:
    b = budget_of(r)
    if b is None:
        return None
    return {"summary": summary(b), "notes": list(b.get("notes", [])), "synthetic": bool(b.get("synthetic")),
            "blocks": block_table(b), "front": front_table(b)}


def plot(r: Results) -> bytes | None:
    b = budget_of(r)
    return front_png(b) if b is not None else None


__all__ = ["block_table", "budget_of", "front_table", "plot", "sections", "summary"]
