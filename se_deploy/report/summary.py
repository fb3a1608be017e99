"""The terminal summary of a run: compact latency, SE-tax and per-op tables (the report has every column)."""

from __future__ import annotations

from typing import Sequence

from se_deploy.bench.results import Results
from se_deploy.report import tables


def print_summary(results: Results, console) -> None:
    """Print to a rich ``console``. Cells are Text, not markup: a model named ``[red]x`` prints as such."""
    from rich.table import Table
    from rich.text import Text

    def show(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]], keep: Sequence[str]) -> None:
        t = Table(title=Text(title), title_justify="left")
        idx = [headers.index(h) for h in keep]
        for i in idx:
            t.add_column(Text(headers[i]), overflow="fold")
        for r in rows:
            t.add_row(*[Text(r[i]) for i in idx])
        console.print(t)

    show("Latency", *tables.latency_table(results), keep=["model", "precision", "batch", "backend", "median ms",
                                                          "p90 ms", "CV", "items/s"])
    if results.comparisons:
        h, rows = tables.se_tax_table(results)
        tax = next(x for x in h if x.startswith("SE tax"))
        show("SE tax (interleaved)", h, rows, keep=["SE model", "precision", "batch", "backend", tax,
                                                    "SE share of params", "SE share of FLOPs"])
    for title, (h, rows) in tables.op_tables(results, top=6):
        show(f"Per-op: {title}", h, rows, keep=h)
    for w in results.warnings:
        console.print(f"warning: {w}", markup=False, style="yellow")


__all__ = ["print_summary"]
