"""Fleet view: several results files (devices, precisions, dates) side by side."""

from __future__ import annotations

from typing import Sequence

from se_deploy.errors import UsageError
from se_deploy.report import tables
from se_deploy.report.html import esc, html_table, img, page
from se_deploy.report.markdown import md_table
from se_deploy.report.plots import _figure, _png, _t
from se_deploy.bench.results import Results, device_label

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


def fleet_tax_table(runs: Sequence[Results], labels: Sequence[str]) -> Table:
    keys = list(dict.fromkeys((c.se_model, c.plain_model, c.precision, c.batch) for r in runs for c in r.comparisons))
    rows = []
    for se, plain, prec, batch in keys:
        row = [se, plain, prec, str(batch)]
        for r in runs:
            c = next((c for c in r.comparisons if (c.se_model, c.plain_model, c.precision, c.batch)
                      == (se, plain, prec, batch)), None)
            row.append(tables.fmt_tax(c.tax) if c else "-")
        rows.append(row)
    return ["SE model", "plain twin", "precision", "batch", *[f"SE tax: {x}" for x in labels]], rows


def fleet_latency_table(runs: Sequence[Results], labels: Sequence[str]) -> Table:
    keys = list(dict.fromkeys((m.model, m.precision, m.batch) for r in runs for m in r.measurements))
    rows = []
    for model, prec, batch in keys:
        row = [model, prec, str(batch)]
        for r in runs:
            m = next((m for m in r.measurements if (m.model, m.precision, m.batch) == (model, prec, batch)), None)
            row.append(f"{tables.fmt_ms(m.latency_ms['median'])} / {tables.fmt_ms(m.latency_ms['p90'])}"
                       if m else "-")
        rows.append(row)
    return ["model", "precision", "batch", *[f"median / p90 ms: {x}" for x in labels]], rows


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


def fleet_tax_plot(runs: Sequence[Results], labels: Sequence[str]) -> bytes | None:
    keys = list(dict.fromkeys((c.se_model, c.precision, c.batch) for r in runs for c in r.comparisons))
    if not keys:
        return None
    fig = _figure(max(5.0, 1.2 * len(keys) * max(1, len(runs)) ** 0.5 + 2), 3.6)
    ax = fig.subplots()
    w = 0.8 / len(runs)
    for i, (r, lab) in enumerate(zip(runs, labels)):
        xs, ys, lo, hi = [], [], [], []
        for j, key in enumerate(keys):
            c = next((c for c in r.comparisons if (c.se_model, c.precision, c.batch) == key), None)
            if c is None:
                continue
            xs.append(j - 0.4 + w * (i + 0.5))
            ys.append(c.tax["tax_pct"])
            lo.append(max(0.0, c.tax["tax_pct"] - c.tax["tax_pct_lo"]))
            hi.append(max(0.0, c.tax["tax_pct_hi"] - c.tax["tax_pct"]))
        ax.bar(xs, ys, w, yerr=[lo, hi], capsize=3, label=_t(lab))
    ax.set_xticks(range(len(keys)), [_t(f"{m}\n{p} b={b}") for m, p, b in keys], fontsize=8)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel("SE tax, % extra latency")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def _check(runs: Sequence[Results]) -> None:
    if len(runs) < 2:
        raise UsageError(f"merge needs at least two results files, got {len(runs)}")


def render_fleet_html(runs: Sequence[Results]) -> str:
    _check(runs)
    labels = run_labels(runs)
    b = [f"<h1>se-deploy fleet report: {len(runs)} runs</h1>",
         "<p>" + ", ".join(esc(x) for x in labels) + "</p>",
         "<h2>SE tax by run</h2>", html_table(*fleet_tax_table(runs, labels))]
    png = fleet_tax_plot(runs, labels)
    if png:
        b.append(img(png, "SE tax by run"))
    b += ["<h2>Latency by run</h2>", html_table(*fleet_latency_table(runs, labels)),
          "<h2>Runs and what differs between them</h2>", html_table(*fleet_run_table(runs, labels))]
    return page("se-deploy fleet report", "\n".join(b))


def render_fleet_markdown(runs: Sequence[Results]) -> str:
    _check(runs)
    labels = run_labels(runs)
    return "\n".join([f"# se-deploy fleet report: {len(runs)} runs\n", "## SE tax by run\n",
                      md_table(*fleet_tax_table(runs, labels)), "## Latency by run\n",
                      md_table(*fleet_latency_table(runs, labels)), "## Runs and what differs between them\n",
                      md_table(*fleet_run_table(runs, labels))])
