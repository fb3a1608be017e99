"""The one place commands write to the terminal.

``console`` is stdout (results, tables, the trtexec line), ``err_console`` is stderr (progress,
notes, warnings, errors). Library code never prints: it takes callbacks (``log``,
``on_progress``), and the commands pass the functions below.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def line(text: str, *, style: str | None = None) -> None:
    """One plain line on stdout (user strings are never read as markup)."""
    console.print(text, style=style, markup=False, soft_wrap=True)


def raw(text: str) -> None:
    """Text for other programs (a trtexec line, JSON): stdout, unwrapped and unstyled."""
    console.file.write(text if text.endswith("\n") else text + "\n")
    console.file.flush()


def note(text: str) -> None:
    """A dim progress or status line on stderr."""
    err_console.print(text, style="dim", markup=False, soft_wrap=True)


def warn(text: str) -> None:
    err_console.print(f"warning: {text}", style="yellow", markup=False, soft_wrap=True)


def warn_all(messages: Iterable[str]) -> None:
    for m in dict.fromkeys(messages):
        warn(m)


def error(text: str) -> None:
    err_console.print(f"error: {text}", markup=False, soft_wrap=True)


@contextlib.contextmanager
def status(text: str) -> Iterator[None]:
    """A spinner on stderr while a library call runs."""
    with err_console.status(text):
        yield


@contextlib.contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """A ``(done, total)`` callback drawing a transient progress bar on stderr."""
    columns = (TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def table(title: str | None, headers: list[str], rows: Iterable[list[str]], *, caption: str | None = None) -> Table:
    t = Table(title=title, caption=caption, title_justify="left")
    for i, h in enumerate(headers):
        t.add_column(h, justify="left" if i == 0 else "right", overflow="fold")
    for r in rows:
        t.add_row(*[str(c) for c in r])
    return t


def accuracy_table(report: dict, title: str = "accuracy vs FP32") -> Table:
    """An accuracy report (``se_deploy.calibration.accuracy.evaluate``) as a terminal table."""
    d = report["data"]
    caption = f"{report['samples']} {d['role']} samples ({d['source_kind']}{', SYNTHETIC' if d['synthetic'] else ''})"
    labelled = "top1" in report["reference"]
    headers = ["model", "top-1 agree %", "cosine", "SQNR dB", "max abs"] + (["top-1 %", "top-5 %", "drop pt"]
                                                                            if labelled else [])
    ref = report["reference"]
    rows = [["fp32 (reference)", "100.00", "1.000000", "inf", "0"]
            + ([f"{ref['top1']:.2f}", f"{ref['top5']:.2f}", "-"] if labelled else [])]
    for name, e in report["candidates"].items():
        agree = "-" if e["top1_agreement"] is None else f"{e['top1_agreement']:.2f}"
        row = [name, agree, f"{e['cosine']:.6f}", f"{e['sqnr_db']:.1f}", f"{e['max_abs']:.3g}"]
        if labelled:
            row += [f"{e['top1']:.2f}", f"{e['top5']:.2f}", f"{e['top1_drop']:+.2f}"]
        rows.append(row)
    return table(title, headers, rows, caption=caption)
