import base64
import re

from se_deploy.report.html import render_html
from se_deploy.report.markdown import render_markdown
from se_deploy.report.plots import render_plots
from se_deploy.report.render import write_report

from tests.report.conftest import EVIL

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_plots_are_pngs_for_every_section(results):
    plots = render_plots(results)
    assert set(plots) == {"latency_vs_batch", "se_vs_plain", "op_breakdown"}
    assert all(p.startswith(PNG_MAGIC) for p in plots.values())


def test_html_is_standalone_with_all_sections(results):
    page = render_html(results, render_plots(results))
    for anchor in ("se-tax", "latency", "accuracy", "ops", "environment", "warnings"):
        assert f'id="{anchor}"' in page
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(imgs) == 3 and all(base64.b64decode(x).startswith(PNG_MAGIC) for x in imgs)
    # nothing fetched from elsewhere
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<script" not in page
    # the SE tax of the first comparison and the SE share are shown
    assert "+%.1f%%" % results.comparisons[0].tax["tax_pct"] in page
    assert "0.30%" in page and "SE blocks" in page and "top1_agreement" in page and "Test CPU" in page


def test_user_strings_are_escaped_in_html(evil_results):
    page = render_html(evil_results, render_plots(evil_results))
    assert EVIL not in page
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;|pipe" in page


def test_markdown_escapes_table_breaking_characters(evil_results):
    md = render_markdown(evil_results)
    assert "<script>" not in md
    for line in md.splitlines():
        if line.startswith("| &lt;script&gt;"):
            assert "&amp;\\|pipe" in line
            cells = re.split(r"(?<!\\)\|", line)
            assert len(cells) == 10 + 2  # 10 columns of the SE tax table, no extra split
            break
    else:
        raise AssertionError("SE tax row not found")


def test_markdown_has_sections_and_links_plots(results, tmp_path):
    out = write_report(results, html=tmp_path / "report.html", md=tmp_path / "report.md", png_dir=tmp_path / "plots")
    md = out["md"].read_text()
    for h in ("## SE tax", "## Latency", "## Accuracy per precision", "## Per-op breakdown", "## Environment"):
        assert h in md
    assert "](plots/se_vs_plain.png)" in md
    assert (tmp_path / "plots" / "latency_vs_batch.png").read_bytes().startswith(PNG_MAGIC)
    assert out["html"].read_text().startswith("<!DOCTYPE html>")


def test_report_without_optional_sections_says_so(results):
    results.profiles.clear()
    results.accuracy.clear()
    results.comparisons.clear()
    page = render_html(results, render_plots(results))
    assert "not profiled in this run" in page and "not measured in this run" in page
    assert page.count("data:image/png") == 1
