import io

from rich.console import Console

from se_deploy.report.summary import print_summary

from tests.report.conftest import build_results


def _printed(results) -> str:
    console = Console(file=io.StringIO(), width=220, color_system=None)
    print_summary(results, console)
    return console.file.getvalue()


def test_summary_has_latency_tax_and_op_tables():
    r = build_results()
    out = _printed(r)
    assert "Latency" in out and "SE tax (interleaved)" in out and "Per-op: se_net fp32 batch 1" in out
    assert "%+.1f%%" % r.comparisons[0].tax["tax_pct"] in out and "SE blocks" in out
    assert "warning: noisy run: example" in out


def test_summary_prints_markup_in_names_as_text():
    # rich would read '[/bold]' as a closing tag and raise; '[red]' would vanish into colour
    name = "[/bold]se[red]net"
    r = build_results(se_name=name)
    r.warnings.append("[/x] odd warning")
    out = _printed(r)
    assert name in out and "Per-op: [/bold]se[red]net fp32" in out and "[/x] odd warning" in out


def test_summary_without_comparisons_or_profiles():
    r = build_results()
    r.comparisons.clear()
    r.profiles.clear()
    out = _printed(r)
    assert "Latency" in out and "SE tax" not in out and "Per-op" not in out
