"""``report.md``: the same sections as the HTML report, as GitHub-flavoured Markdown.

Rendered from ``templates/report.md.j2``; the Markdown environment escapes every value
(see :mod:`se_deploy.report.templating`), so user strings cannot inject markup or break a table.
"""

from __future__ import annotations

from typing import Mapping

from se_deploy.bench.results import Results
from se_deploy.report import budget, tables
from se_deploy.report.templating import md_env


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    """One escaped GitHub-flavoured Markdown table ("_none_" when there are no rows)."""
    return md_env().get_template("_macros.md.j2").module.table((headers, rows))


def render_markdown(r: Results, plots: Mapping[str, str] | None = None) -> str:
    """Render ``r``; ``plots`` maps plot title to a relative PNG path to link."""
    text = md_env().get_template("report.md.j2").render(title=f"se-deploy report: {r.label}", plots=plots or {},
                                                        se_budget=budget.sections(r), **tables.report_tables(r))
    return text.rstrip() + "\n"
