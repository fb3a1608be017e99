"""Hostile strings in every user-controlled field reach report.html and report.md as text only."""

import re
from html.parser import HTMLParser

import pytest
from markdown_it import MarkdownIt
from markupsafe import escape

from se_deploy.bench.results import Results
from se_deploy.report.html import render_html
from se_deploy.report.markdown import md_table, render_markdown
from se_deploy.report.merge import render_fleet_html, render_fleet_markdown
from se_deploy.report.plots import render_plots
from se_deploy.report.templating import md_escape, md_line

from tests.report.conftest import build_results


def hostile(tag: str) -> str:
    # A heading marker, tags with a handler, a table pipe, code, emphasis, a link, an image, an entity and a
    # newline with a list marker; under 120 characters, so no table cuts it short.
    s = f"# <script>{tag}</script>|`c` *b* _i_ [l](javascript:x) ![p](http://e/p)<b onclick=y>&amp;\n- x"
    assert len(s) < 120
    return s


# (where in the results dict, the field's name in the hostile string)
FIELDS = ["run.name", "run.backend", "run.settings.<key>", "run.settings.k", "created", "se_deploy_version",
          "environment.cpu.model", "environment.os.system", "environment.<key>", "environment.note",
          "measurements.*.model", "measurements.*.precision", "measurements.*.backend",
          "comparisons.*.se_model", "comparisons.*.plain_model", "comparisons.*.precision", "comparisons.0.tax.method",
          "profiles.0.model", "profiles.0.precision", "profiles.0.by_op.<key>", "accuracy.0.model",
          "accuracy.0.precision", "accuracy.0.reference", "accuracy.0.data", "accuracy.0.metrics.<key>",
          "accuracy.0.metrics.note", "warnings.0", "warnings.1"]


def hostile_results() -> tuple[Results, dict[str, str]]:
    """A results object with a distinct hostile string in every field the reports show."""
    d = build_results().to_dict()
    d["warnings"].append("")
    values = {}
    for field in FIELDS:
        value = values[field] = hostile(field)
        *parents, last = field.split(".")
        targets = [d]
        for k in parents:
            targets = [x for t in targets for x in (t if k == "*" else [t[int(k)] if k.isdigit() else t[k]])]
        for t in targets:
            if last == "<key>":  # the key itself is hostile
                t[value] = {"ms": 0.2} if "by_op" in field else "v"
            else:
                t[int(last) if last.isdigit() else last] = value
    return Results.from_dict(d), values


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(page: str) -> _Tags:
    p = _Tags()
    p.feed(page)
    return p


PAGE_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "div", "p", "small", "em", "table",
             "thead", "tbody", "tr", "th", "td", "img", "ul", "li", "details", "summary"}


def _only_our_markup(page: str) -> _Tags:
    parsed = _parse(page)
    assert {t for t, _ in parsed.tags} <= PAGE_TAGS
    for tag, attrs in parsed.tags:
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        if tag == "img":
            assert set(attrs) == {"alt", "src"} and attrs["src"].startswith("data:image/png;base64,")
    return parsed


def test_html_report_shows_every_hostile_field_as_text():
    r, values = hostile_results()
    page = render_html(r, render_plots(r))
    _only_our_markup(page)
    assert "<script" not in page.lower() and "<b onclick" not in page
    for field, value in values.items():
        assert str(escape(value)) in page, field  # shown, and escaped


def test_fleet_html_shows_hostile_fields_as_text():
    r, values = hostile_results()
    page = render_fleet_html([r, build_results()])
    _only_our_markup(page)
    assert "<script" not in page.lower()
    for field in ("run.name", "comparisons.*.se_model", "measurements.*.precision", "environment.note"):
        assert str(escape(values[field])) in page, field


def _markdown_to_html(md: str) -> str:
    # raw HTML on, as many Markdown renderers have it: escaping is ours to do
    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).render(md)


def _tables_keep_their_columns(md: str) -> int:
    """Every row of every table splits into as many cells as its header; returns the number of tables."""
    tables, width = 0, None
    for line in md.splitlines():
        if not line.startswith("|"):
            width = None
            continue
        cells = len(re.split(r"(?<!\\)\|", line))
        if width is None:
            width, tables = cells, tables + 1
        assert cells == width, line
    return tables


def test_markdown_report_shows_every_hostile_field_as_text():
    r, values = hostile_results()
    md = render_markdown(r, {"Latency vs batch size": "plots/latency_vs_batch.png"})
    assert "<script" not in md and "<b onclick" not in md
    assert _tables_keep_their_columns(md) == 6  # SE tax, latency, accuracy, op profile, run, environment
    html = _markdown_to_html(md)
    parsed = _parse(html)
    tags = [t for t, _ in parsed.tags]
    assert set(tags) <= {"h1", "h2", "h3", "p", "ul", "li", "table", "thead", "tbody", "tr", "th", "td", "img"}
    assert [a["src"] for t, a in parsed.tags if t == "img"] == ["plots/latency_vs_batch.png"]
    # one report heading, the fixed sections, one heading per profile: nothing injected
    assert tags.count("h1") == 1 and tags.count("h2") == 8 and tags.count("h3") == 1
    text = "".join(parsed.text)
    for field, value in values.items():
        if field.startswith(("environment.cpu", "environment.<", "environment.note")):
            continue  # the Markdown report shows the headline environment rows only
        assert " ".join(value.splitlines()) in text, field  # every character survived as text


def test_fleet_markdown_keeps_hostile_strings_as_text():
    r, values = hostile_results()
    md = render_fleet_markdown([r, build_results()])
    assert "<script" not in md and _tables_keep_their_columns(md) == 3
    parsed = _parse(_markdown_to_html(md))
    assert {t for t, _ in parsed.tags} <= {"h1", "h2", "table", "thead", "tbody", "tr", "th", "td"}
    text = "".join(parsed.text)
    for field in ("run.name", "comparisons.*.se_model", "measurements.*.model", "environment.note"):
        assert " ".join(values[field].splitlines()) in text, field


@pytest.mark.parametrize("raw,escaped", [
    ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
    ("a|b", "a\\|b"),
    ("`rm -rf`", "\\`rm -rf\\`"),
    ("a & b", "a &amp; b"),
    ("&lt;", "&amp;lt;"),
    ("back\\slash|pipe", "back\\\\slash\\|pipe"),
    ("two\nlines\r\nhere", "two lines here"),
    ("**bold** *it*", "\\*\\*bold\\*\\* \\*it\\*"),
    ("_it_ and __b__", "\\_it\\_ and \\_\\_b\\_\\_"),
    ("se_resnet_50", "se_resnet_50"),  # intraword '_' is not emphasis; names stay readable
    ("[x](javascript:alert(1))", "\\[x\\](javascript:alert(1))"),
    ("![x](http://e/x.png)", "!\\[x\\](http://e/x.png)"),
    ("[ref]: http://e", "\\[ref\\]: http://e"),
    ("+9.2% [+7.7, +11.0]", "+9.2% [+7.7, +11.0]"),  # our own interval format needs nothing
    ("-", "-"),
])
def test_md_escape(raw, escaped):
    assert md_escape(raw) == escaped


@pytest.mark.parametrize("raw,escaped", [
    ("# heading", "\\# heading"),
    ("  ## indented", "\\## indented"),
    ("- item", "\\- item"),
    ("+ item", "\\+ item"),
    ("* item", "\\* item"),
    ("1. item", "1\\. item"),
    ("2) item", "2\\) item"),
    ("---", "\\---"),
    ("===", "\\==="),
    ("~~~", "\\~~~"),
    ("> quote", "&gt; quote"),
    ("name #", "name \\#"),  # a heading would drop a trailing '#' run
    ("run #2", "run #2"),
])
def test_md_line_escapes_block_markers(raw, escaped):
    assert md_line(raw) == escaped


def test_md_table_escapes_cells_and_says_none():
    assert md_table(["a|b", "c"], [["<x>", "1"]]) == "| a\\|b | c |\n|---|---|\n| &lt;x&gt; | 1 |\n"
    assert md_table(["a"], []) == "_none_\n"
