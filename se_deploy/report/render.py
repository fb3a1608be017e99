"""Write the report files for one results object: HTML, Markdown and PNG plots."""

from __future__ import annotations

import os
from pathlib import Path

from se_deploy._util import check_output_path, write_text_atomic
from se_deploy.report.html import render_html
from se_deploy.report.markdown import render_markdown
from se_deploy.report.plots import PLOT_FILES, render_plots, write_plots
from se_deploy.bench.results import Results


def write_report(results: Results, *, html: str | os.PathLike | None = None, md: str | os.PathLike | None = None,
                 png_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Render the requested outputs; return {"html": path, "md": path, "<plot stem>": path}."""
    for p in (html, md):
        if p is not None:
            check_output_path(p)
    plots = render_plots(results)
    written: dict[str, Path] = {}
    links: dict[str, str] = {}
    if png_dir is not None:
        for stem, path in write_plots(plots, png_dir).items():
            written[stem] = path
            base = Path(md).parent if md is not None else Path(".")
            links[PLOT_FILES[stem]] = os.path.relpath(path, base)
    if html is not None:
        written["html"] = write_text_atomic(html, render_html(results, plots))
    if md is not None:
        written["md"] = write_text_atomic(md, render_markdown(results, links))
    return written
