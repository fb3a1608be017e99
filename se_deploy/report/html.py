"""Standalone ``report.html``: one file, no external assets, plots embedded as base64 PNG.

Rendered from ``templates/report.html.j2`` with Jinja2 autoescape on, so every string that
can come from a user (model names, paths, run names, environment values, warnings) reaches
the page as text.
"""

from __future__ import annotations

import base64
from typing import Mapping

from se_deploy.bench.results import Results
from se_deploy.report import budget, tables
from se_deploy.report.plots import PLOT_FILES
from se_deploy.report.templating import html_env


def b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")


def render_html(r: Results, plots: Mapping[str, bytes] | None = None) -> str:
    """Render ``r``; ``plots`` maps a PLOT_FILES stem to PNG bytes to embed."""
    return html_env().get_template("report.html.j2").render(
        title=f"se-deploy report: {r.label}", plots={k: b64(v) for k, v in (plots or {}).items()},
        plot_titles=PLOT_FILES, se_budget=budget.sections(r), **tables.report_tables(r))
