import math
import warnings

from se_deploy.bench.results import Results
from se_deploy.report import plots
from se_deploy.report.html import render_html
from se_deploy.report.markdown import render_markdown
from se_deploy.report.merge import render_fleet_html, render_fleet_markdown

from tests.report.conftest import build_results

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAN = float("nan")


def results_with_gaps() -> Results:
    """Values a run could not measure, as null in the file and as NaN/inf from another tool."""
    d = build_results().to_dict()
    d["measurements"][0]["latency_ms"].update(median=NAN, p90=None, cv=None)
    d["measurements"][1]["latency_ms"].update(p90=NAN, p99=math.inf)
    d["measurements"][1]["throughput"] = NAN
    d["measurements"][2]["latency_ms"]["median"] = None
    d["comparisons"][0]["tax"].update(tax_pct=NAN, tax_pct_lo=None)
    d["comparisons"][1]["tax"].update(tax_pct_lo=None, tax_pct_hi=NAN, confidence=None)
    d["comparisons"][2]["se_share"] = {"flops_pct": NAN, "params_pct": None}
    d["profiles"][0]["by_op"]["Conv"]["ms"] = NAN
    d["profiles"][0]["by_op"]["Relu"] = {"ms": 0.1, "pct": NAN, "count": NAN}
    d["profiles"][0]["by_op"]["Add"] = None
    d["accuracy"][0]["metrics"]["top1_agreement"] = NAN
    return Results.from_dict(d)


def test_nan_and_none_values_render_without_any_warning():
    r = results_with_gaps()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pngs = plots.render_plots(r)
        page = render_html(r, pngs)
        md = render_markdown(r)
        fleet = render_fleet_html([r, build_results(cpu="EPYC")]) + render_fleet_markdown([r, build_results()])
    assert [str(w.message) for w in caught] == []
    assert set(pngs) == {"latency_vs_batch", "se_vs_plain", "op_breakdown"}
    assert all(p.startswith(PNG_MAGIC) for p in pngs.values())
    assert page.count("data:image/png") == 3 and fleet.count("data:image/png") == 1
    # the gaps read as gaps in the tables
    row = next(line for line in md.splitlines() if line.startswith("| se_net | plain_net | fp32 | 1 |"))
    assert "| - [?, " in row
    lat = next(line for line in md.splitlines() if line.startswith("| plain_net | fp32 | 1 |"))
    assert "| - |" in lat  # throughput NaN
    # Conv (NaN time) and Add (no time) are not ops to show; Relu's NaN share is taken from the times
    assert "| Relu | 0.100 | 20.0% | - |" in md and "| Conv |" not in md and "| Add |" not in md


def test_plots_with_nothing_finite_are_left_out():
    r = results_with_gaps()
    for c in r.comparisons:
        c.tax["tax_pct"] = None
    for m in r.measurements:
        m.latency_ms["median"] = NAN
    r.profiles[0].by_op.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert plots.render_plots(r) == {}
        assert plots.fleet_tax([r, r], ["a", "b"]) is None
        page = render_html(r, {})
    assert [str(w.message) for w in caught] == []
    assert "data:image/png" not in page and "not profiled" not in page  # profiled, but nothing to show


def test_plot_labels_are_one_short_line_without_mathtext():
    assert plots._t("a $x$ model") == r"a \$x\$ model"
    assert plots._t("two\nlines") == "two lines"
    long = plots._t("/very/long/path/to/a/model/checkpoint/se_resnet50_final.onnx")
    assert len(long) == 40 and long.endswith("…")


def test_fleet_plot_has_one_bar_group_per_comparison():
    a, b = build_results(cpu="Orin"), build_results(cpu="EPYC", precisions=("fp32",))
    png = plots.fleet_tax([a, b], ["Orin", "EPYC"])
    assert png is not None and png.startswith(PNG_MAGIC)
