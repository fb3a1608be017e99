import pytest

from se_deploy.errors import UsageError
from se_deploy.report.merge import render_fleet_html, render_fleet_markdown, run_labels

from tests.report.conftest import EVIL, build_results


def test_fleet_puts_runs_side_by_side():
    a = build_results(cpu="Jetson Orin", factor=1.1, seed=1)
    b = build_results(cpu="EPYC", factor=1.4, seed=2, precisions=("fp32",))
    md = render_fleet_markdown([a, b])
    assert "SE tax: Jetson Orin" in md and "SE tax: EPYC" in md
    row = next(line for line in md.splitlines() if line.startswith("| se_net | plain_net | int8 | 1 |"))
    assert row.rstrip().endswith("| - |")  # the second run has no int8 measurement
    fp32 = next(line for line in md.splitlines() if line.startswith("| se_net | plain_net | fp32 | 1 |"))
    assert "%+.1f%%" % a.comparisons[0].tax["tax_pct"] in fp32 and "%+.1f%%" % b.comparisons[0].tax["tax_pct"] in fp32
    html = render_fleet_html([a, b])
    assert html.count("data:image/png;base64,") == 1 and "EPYC" in html


def test_same_device_gets_unique_labels():
    runs = [build_results(cpu="X"), build_results(cpu="X"), build_results(cpu="Y")]
    assert run_labels(runs) == ["X", "X #2", "Y"]


def test_fleet_escapes_and_needs_two_runs():
    page = render_fleet_html([build_results(cpu=EVIL), build_results()])
    assert "<script>" not in page
    with pytest.raises(UsageError):
        render_fleet_html([build_results()])
