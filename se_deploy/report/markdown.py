"""``report.md``: the same sections as the HTML report, as GitHub-flavoured Markdown."""

from __future__ import annotations

from typing import Mapping

from se_deploy.report import tables
from se_deploy.bench.results import Results


def _cell(s: str) -> str:
    # A pipe would split the cell and a newline would end the table row.
    return str(s).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "_none_\n"
    lines = ["| " + " | ".join(_cell(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def headline(r: Results) -> list[str]:
    """One sentence per comparison: "SE costs 0.3% of FLOPs and 11% of latency"."""
    out = []
    for c in r.comparisons:
        share = c.se_share or {}
        flops = share.get("flops_pct")
        params = share.get("params_pct")
        cost = []
        if isinstance(params, (int, float)):
            cost.append(f"{params:.1f}% of params")
        if isinstance(flops, (int, float)):
            cost.append(f"{flops:.2f}% of FLOPs")
        lead = f"SE blocks are {' and '.join(cost)} of {c.se_model}, but" if cost else f"{c.se_model}:"
        out.append(f"{lead} {tables.fmt_tax(c.tax)} latency vs {c.plain_model} "
                   f"({c.precision}, batch {c.batch}).")
    return out


def render_markdown(r: Results, plots: Mapping[str, str] | None = None) -> str:
    """Render ``r``; ``plots`` maps plot title to a relative PNG path to link."""
    parts = [f"# se-deploy report: {_cell(r.label)}\n"]
    for line in headline(r):
        parts.append(f"- {_cell(line)}")
    parts.append("")
    parts.append("## SE tax (SE model vs plain twin, interleaved)\n")
    parts.append(md_table(*tables.se_tax_table(r)))
    if r.comparisons:
        parts.append(f"Interval: {r.comparisons[0].tax.get('method', 'bootstrap')}.\n")
    parts.append("## Latency\n")
    parts.append(md_table(*tables.latency_table(r)))
    split = tables.split_table(r)
    if split:
        parts.append("### Host-to-device, compute, device-to-host\n")
        parts.append(md_table(*split))
    acc = tables.accuracy_table(r)
    parts.append("## Accuracy per precision\n")
    parts.append(md_table(*acc) if acc else "_not measured in this run_\n")
    parts.append("## Per-op breakdown\n")
    op = tables.op_tables(r)
    if not op:
        parts.append("_not profiled in this run (use --profile)_\n")
    for title, t in op:
        parts.append(f"### {_cell(title)}\n")
        parts.append(md_table(*t))
    if plots:
        parts.append("## Plots\n")
        for title, path in plots.items():
            parts.append(f"![{_cell(title)}]({path})\n")
    if r.warnings:
        parts.append("## Warnings\n")
        parts += [f"- {_cell(w)}" for w in r.warnings]
        parts.append("")
    parts.append("## Run\n")
    parts.append(md_table(*tables.run_table(r)))
    parts.append("## Environment\n")
    parts.append(md_table(*tables.environment_table(r)))
    return "\n".join(parts).rstrip() + "\n"
