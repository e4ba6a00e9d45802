"""The email templates' loader: each HTML template's CSS inlined once, when it is loaded, not at every send."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import css_inline
import jinja2

_STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.DOTALL | re.IGNORECASE)
_SCAN = re.compile(r"(\{%.*?%\}|\{\{.*?\}\}|\{#.*?#\})|(<[A-Za-z/!])|(>)", re.DOTALL)
_PLACEHOLDER = re.compile(r"<!--jinja:(\d+)-->|\ue000(\d+)\ue001")
_DYNAMIC_CLASS = re.compile(r"""\sclass=("[^"]*\ue000|'[^']*\ue000)""")
_DOCUMENT = re.compile(r"^\s*(\{%.*?%\}\s*)*<!doctype", re.IGNORECASE | re.DOTALL)


class InliningLoader(jinja2.FileSystemLoader):
    """Hands Jinja each HTML template with the layout's CSS already inlined."""

    def __init__(self, searchpath: Path) -> None:
        super().__init__(searchpath)
        self._inliner = css_inline.CSSInliner(load_remote_stylesheets=False)
        self._css: str | None = None

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        if template.endswith(".html"):
            source = self._inline(source, template, environment)
        return source, filename, uptodate

    def _inline(self, source: str, name: str, environment: jinja2.Environment) -> str:
        protected, originals = _protect(source)
        if _DOCUMENT.match(source):
            inlined = self._inliner.inline(protected)
        else:
            inlined = self._inliner.inline_fragment(protected, self._layout_css(environment))
        if inlined.count("<tbody") != protected.count("<tbody"):
            raise jinja2.TemplateError(f"{name}: write <tbody> in every table, the HTML parser adds it otherwise")
        if _DYNAMIC_CLASS.search(protected):
            raise jinja2.TemplateError(f"{name}: class attributes must be static for the CSS to be inlined")
        return _restore(inlined, originals, name)

    def _layout_css(self, environment: jinja2.Environment) -> str:
        if self._css is None:
            layout, _, _ = super().get_source(environment, "base.html")
            self._css = "\n".join(_STYLE.findall(layout))
        return self._css


def _protect(source: str) -> tuple[str, list[str]]:
    originals: list[str] = []
    pieces: list[str] = []
    position = 0
    in_tag = False
    for match in _SCAN.finditer(source):
        jinja, tag_open, tag_close = match.groups()
        if tag_open:
            in_tag = True
        elif tag_close:
            in_tag = False
        else:
            pieces.append(source[position : match.start()])
            number = len(originals)
            originals.append(jinja)
            statement = not jinja.startswith("{{")
            pieces.append(f"<!--jinja:{number}-->" if statement and not in_tag else f"\ue000{number}\ue001")
            position = match.end()
    pieces.append(source[position:])
    return "".join(pieces), originals


def _restore(inlined: str, originals: list[str], name: str) -> str:
    seen: list[int] = []

    def original(match: re.Match[str]) -> str:
        number = int(match.group(1) or match.group(2))
        seen.append(number)
        return originals[number]

    restored = _PLACEHOLDER.sub(original, inlined)
    if seen != list(range(len(originals))):
        raise jinja2.TemplateError(
            f"{name}: the HTML parser moved or dropped Jinja syntax while inlining CSS; "
            "keep statements between whole elements and expressions inside elements or attribute values"
        )
    return restored
