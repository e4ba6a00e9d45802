"""The text parts' `wordwrap` filter: Jinja's, with the same lines, at a fraction of its cost."""

from __future__ import annotations

import functools
import re
import textwrap

import jinja2


@jinja2.pass_environment
def wordwrap(
    environment: jinja2.Environment,
    text: str,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: str | None = None,
    break_on_hyphens: bool = True,
) -> str:
    """Jinja's `wordwrap`, with the lines it gives; but a line of words between single spaces, wrapped
    neither inside words nor at hyphens (every line of the text parts), is wrapped without textwrap,
    which took a seventh of a send job's time."""
    if break_long_words or break_on_hyphens:
        return jinja2.filters.do_wordwrap(environment, text, width, break_long_words, wrapstring, break_on_hyphens)
    newline = environment.newline_sequence if wrapstring is None else wrapstring
    return newline.join(_wrap_words(line, width, newline) for line in text.splitlines())


def _wrap_words(line: str, width: int, newline: str) -> str:
    if _SINGLE_SPACED.fullmatch(line):
        # the common case, in C: a line that fits, or one whose every word fits
        if len(line) <= width:
            return line
        if max(map(len, line.split(" "))) <= width:
            return newline.join(_greedy_lines(width).findall(line))
    words = line.split(" ")
    # within a line, a tab is the one other place textwrap splits; it drops words that are only whitespace
    if "\t" in line or not all(word.strip() for word in words):
        return newline.join(
            textwrap.wrap(
                line, width, expand_tabs=False, replace_whitespace=False, break_long_words=False, break_on_hyphens=False
            )
        )
    lines: list[str] = []
    taken: list[str] = []
    length = -1
    for word in words:
        if taken and length + 1 + len(word) > width:
            lines.append(" ".join(taken))
            taken, length = [], -1
        taken.append(word)
        length += 1 + len(word)
    lines.append(" ".join(taken))
    return newline.join(lines)


_SINGLE_SPACED = re.compile(r"\S+(?: \S+)*")
"""Words between single spaces, and nothing else: the lines the text parts are made of."""


@functools.cache
def _greedy_lines(width: int) -> re.Pattern[str]:
    """The longest run of whole words that fits in `width`, from a word's start (every word fits)."""
    return re.compile(rf"\S.{{0,{width - 1}}}(?= |$)")
