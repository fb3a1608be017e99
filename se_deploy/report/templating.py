"""The Jinja2 environments behind the reports (templates live in ``report/templates``).

HTML templates (``*.html.j2``) autoescape every value. Markdown has no autoescape, so the
Markdown environment escapes every value on output (``finalize``) with :func:`md_escape`:
model names, run names, environment values and warnings are user strings, and a
``<script>`` or a ``|`` in one must reach report.md as text, not as markup or a broken table.
A value already marked safe (the ``safe``, ``md``, ``md_line`` and ``md_url`` filters return
markupsafe's ``Markup``) is written as is; forgetting ``|safe`` on trusted output, such as a
macro's, can only escape it twice, never let markup through.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

_TEMPLATES = ("se_deploy.report", "templates")


def is_numeric(s: object) -> bool:
    """Cells that read as numbers ("12.3", "+4.1% [...]", "-0.2") are right-aligned in HTML."""
    s = str(s)
    return bool(s) and (s[0].isdigit() or s[0] in "+-.") and s != "-"


@functools.lru_cache(maxsize=None)
def html_env() -> Environment:
    env = Environment(loader=PackageLoader(*_TEMPLATES), undefined=StrictUndefined,
                      autoescape=select_autoescape(enabled_extensions=("html.j2",), default=True),
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.tests["numeric"] = is_numeric
    return env


_MD_CHARS = {"\\": "\\\\", "`": "\\`", "*": "\\*", "|": "\\|", "&": "&amp;", "<": "&lt;", ">": "&gt;"}
_MD_CHAR_RE = re.compile("[" + re.escape("".join(_MD_CHARS)) + "]")
# '_' opens or closes emphasis only at a word edge, so se_resnet50 stays as it is.
_EDGE_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
# '[x](url)', '[x][ref]' and '[ref]: url' make links (or remote images with '!'); a bare '[...]' does not.
_LINK = re.compile(r"\][(\[:]")


def md_escape(value: object) -> str:
    """``value`` as inline Markdown text: safe inside a table cell or a sentence."""
    s = " ".join(str(value).splitlines())  # a newline would end the table row or the list item
    s = _MD_CHAR_RE.sub(lambda m: _MD_CHARS[m.group()], s)
    s = _EDGE_UNDERSCORE.sub(r"\\_", s)
    if _LINK.search(s):
        s = s.replace("[", "\\[").replace("]", "\\]")
    return s


def md_line(value: object) -> Markup:
    """``value`` where it starts a line or fills a heading: inline escapes plus the block markers
    (``# h``, ``- item``, ``+ item``, ``1. item``, ``===``, ``~~~``) a leading character would start,
    and a trailing ``#`` run that a heading would drop."""
    s = md_escape(value).strip()
    s = re.sub(r"^([#+=~-])", r"\\\1", s)
    s = re.sub(r"^(\d+)([.)])", r"\1\\\2", s)
    s = re.sub(r"(\s)(#+)$", r"\1\\\2", s)
    return Markup(s)


def md_url(path: object) -> Markup:
    """A relative path as a link destination: percent-encoded, so spaces and ')' cannot end it."""
    return Markup(quote(str(path).replace("\\", "/")))


def _md_finalize(value: object) -> object:
    return value if isinstance(value, Markup) else md_escape(value)


@functools.lru_cache(maxsize=None)
def md_env() -> Environment:
    env = Environment(loader=PackageLoader(*_TEMPLATES), undefined=StrictUndefined, autoescape=False,
                      finalize=_md_finalize, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(md=lambda v: Markup(md_escape(v)), md_line=md_line, md_url=md_url)
    return env


__all__ = ["html_env", "is_numeric", "md_env", "md_escape", "md_line", "md_url"]
