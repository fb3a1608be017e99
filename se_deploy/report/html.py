"""Standalone ``report.html``: one file, no external assets, plots embedded as base64 PNG.

Every string that can come from a user (model names, paths, run names, environment
values, warnings) passes through :func:`esc` before it reaches the page.
"""

from __future__ import annotations

import base64
import html
from typing import Mapping

from se_deploy.report import tables
from se_deploy.report.markdown import headline
from se_deploy.report.plots import PLOT_FILES
from se_deploy.bench.results import Results

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222;
padding:0 1em}
table{border-collapse:collapse;margin:.6em 0 1.4em;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f2f2f2} td.num{text-align:right;font-variant-numeric:tabular-nums}
h1{font-size:1.6em} h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}
.headline{background:#fff7e6;border-left:4px solid #e69500;padding:.5em 1em}
.warn{color:#8a4b00} img{max-width:100%} small{color:#666}
"""


def esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def _num(s: str) -> bool:
    return bool(s) and (s[0].isdigit() or s[0] in "+-.") and s != "-"


def html_table(headers: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="num">{esc(c)}</td>' if _num(str(c)) else f"<td>{esc(c)}</td>"
                                    for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")


def render_html(r: Results, plots: Mapping[str, bytes] | None = None) -> str:
    """Render ``r``; ``plots`` maps a PLOT_FILES stem to PNG bytes to embed."""
    plots = plots or {}
    b = [f"<h1>se-deploy report: {esc(r.label)}</h1>"]
    lines = headline(r)
    if lines:
        b.append('<div class="headline">' + "".join(f"<p>{esc(x)}</p>" for x in lines) + "</div>")
    b.append('<h2 id="se-tax">SE tax: SE model vs plain twin</h2>')
    b.append(html_table(*tables.se_tax_table(r)))
    if r.comparisons:
        b.append(f"<p><small>Interval: {esc(r.comparisons[0].tax.get('method', 'bootstrap'))}.</small></p>")
    if "se_vs_plain" in plots:
        b.append(img(plots["se_vs_plain"], PLOT_FILES["se_vs_plain"]))
    b.append('<h2 id="latency">Latency</h2>')
    if "latency_vs_batch" in plots:
        b.append(img(plots["latency_vs_batch"], PLOT_FILES["latency_vs_batch"]))
    b.append(html_table(*tables.latency_table(r)))
    split = tables.split_table(r)
    if split:
        b.append("<h3>Host-to-device, compute, device-to-host</h3>" + html_table(*split))
    b.append('<h2 id="accuracy">Accuracy per precision</h2>')
    acc = tables.accuracy_table(r)
    b.append(html_table(*acc) if acc else "<p><em>not measured in this run</em></p>")
    b.append('<h2 id="ops">Per-op breakdown</h2>')
    op = tables.op_tables(r)
    if not op:
        b.append("<p><em>not profiled in this run (use --profile)</em></p>")
    if "op_breakdown" in plots:
        b.append(img(plots["op_breakdown"], PLOT_FILES["op_breakdown"]))
    for title, t in op:
        b.append(f"<h3>{esc(title)}</h3>" + html_table(*t))
    if r.warnings:
        b.append('<h2 id="warnings">Warnings</h2><ul class="warn">' +
                 "".join(f"<li>{esc(w)}</li>" for w in r.warnings) + "</ul>")
    b.append('<h2 id="run">Run</h2>' + html_table(*tables.run_table(r)))
    b.append('<h2 id="environment">Environment</h2>' + html_table(*tables.environment_table(r)))
    b.append("<details><summary>full environment record</summary>" + html_table(*tables.environment_full(r))
             + "</details>")
    return page(f"se-deploy report: {r.label}", "\n".join(b))
