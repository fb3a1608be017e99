"""Fleet view: several results files (devices, precisions, dates) side by side."""

from __future__ import annotations

from typing import Sequence

from se_deploy.bench.results import Results, device_label
from se_deploy.errors import UsageError
from se_deploy.report import plots, tables
from se_deploy.report.html import b64
from se_deploy.report.templating import html_env, md_env

Table = tables.Table


def run_labels(runs: Sequence[Results]) -> list[str]:
    """Unique column labels: the run label, suffixed #2, #3 ... when two runs share one."""
    seen: dict[str, int] = {}
    out = []
    for r in runs:
        base = r.label
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base} #{seen[base]}")
    return out


def _tax_key(r: Results, c) -> tuple:
    return c.se_model, c.plain_model, c.precision, c.batch, tables.comparison_backend(r, c)


def _latency_key(m) -> tuple:
    return m.model, m.precision, m.batch, tables.measurement_backend(m)


def fleet_tax_table(runs: Sequence[Results], labels: Sequence[str]) -> Table:
    """One row per (SE model, twin, precision, batch, backend): the same model on two backends is two rows."""
    keys = list(dict.fromkeys(_tax_key(r, c) for r in runs for c in r.comparisons))
    rows = []
    for key in keys:
        se, plain, prec, batch, backend = key
        row = [se, plain, prec, str(batch), backend]
        for r in runs:
            c = next((c for c in r.comparisons if _tax_key(r, c) == key), None)
            row.append(tables.fmt_tax(c.tax) if c else "-")
        rows.append(row)
    return ["SE model", "plain twin", "precision", "batch", "backend", *[f"SE tax: {x}" for x in labels]], rows


def fleet_latency_table(runs: Sequence[Results], labels: Sequence[str]) -> Table:
    keys = list(dict.fromkeys(_latency_key(m) for r in runs for m in r.measurements))
    rows = []
    for key in keys:
        model, prec, batch, backend = key
        row = [model, prec, str(batch), backend]
        for r in runs:
            m = next((m for m in r.measurements if _latency_key(m) == key), None)
            row.append(f"{tables.fmt_ms(m.latency_ms['median'])} / {tables.fmt_ms(m.latency_ms['p90'])}"
                       if m else "-")
        rows.append(row)
    return ["model", "precision", "batch", "backend", *[f"median / p90 ms: {x}" for x in labels]], rows


_ENV_KEYS = ("device", "created", "mode", "backend", "se_deploy_version")


def fleet_run_table(runs: Sequence[Results], labels: Sequence[str]) -> Table:
    rows = [["device", *[device_label(r.environment) or "unknown" for r in runs]],
            ["created", *[r.created for r in runs]],
            ["mode", *[str(r.run.get("mode", "-")) for r in runs]],
            ["backend", *[str(r.run.get("backend", "-")) for r in runs]],
            ["se-deploy", *[r.se_deploy_version for r in runs]]]
    env_keys = list(dict.fromkeys(k for r in runs for k, _ in tables.flatten(r.environment)))
    flat = [dict(tables.flatten(r.environment)) for r in runs]
    for k in env_keys:
        vals = [f.get(k, "-") for f in flat]
        if len(set(vals)) > 1:  # only what differs between runs
            rows.append([k, *[v if len(v) < 120 else v[:119] + "…" for v in vals]])
    return ["", *labels], rows


def _fleet(runs: Sequence[Results]) -> dict:
    if len(runs) < 2:
        raise UsageError(f"merge needs at least two results files, got {len(runs)}")
    labels = run_labels(runs)
    return {"labels": labels, "tax": fleet_tax_table(runs, labels), "latency": fleet_latency_table(runs, labels),
            "runs": fleet_run_table(runs, labels)}


def render_fleet_html(runs: Sequence[Results]) -> str:
    ctx = _fleet(runs)
    png = plots.fleet_tax(runs, ctx["labels"])
    page = html_env().get_template("fleet.html.j2")
    return page.render(title="se-deploy fleet report", tax_plot=b64(png) if png else "", **ctx)


def render_fleet_markdown(runs: Sequence[Results]) -> str:
    return md_env().get_template("fleet.md.j2").render(**_fleet(runs)).rstrip() + "\n"
