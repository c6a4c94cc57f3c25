"""What a reader sees of a Markdown file: what its rendering would not show is removed.

Read from the markdown-it-py parse (CommonMark with tables, as `bot.markdown`), not from patterns:
- link reference definitions (`[//]: # (a comment)`, `[label]: url "title"`) never render: they are
  removed, and a link that used one becomes an inline link to the same address;
- link and image titles (tooltips): `[text](url "title")` becomes `[text](url)`;
- a fenced code block's info string past its first word (the language);
- raw HTML, in blocks or inline, is read as a browser reads it, together with the Markdown between
  its tags (`ingest.visible`): comments and hidden elements go with everything inside them, and the
  HTML that stays keeps only the attributes that show something (`href`, `src`, `alt`, ...).
Code spans and code blocks are text: a `<!-- -->` or `display:none` inside them stays.
"""

from __future__ import annotations

import re
import secrets
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import accumulate
from typing import Any

import nh3
from bs4 import BeautifulSoup
from bs4.element import Tag
from markdown_it import MarkdownIt
from markdown_it.rules_inline import StateInline, html_inline, image, link
from markdown_it.token import Token

from ingest.visible import Markers, remove_hidden, to_markdown

# The blocks that hold text; a line inside none of them is a link reference definition.
_TEXT_BLOCKS = frozenset(
    {"paragraph_open", "heading_open", "fence", "code_block", "html_block", "hr", "table_open"}
)
# what stands before a definition inside a quote or a list item: `>`, `-`, `1.` and spaces
_CONTAINER = re.compile(r"(?:[ \t]*(?:>|(?:[-*+]|\d{1,9}[.)])(?=[ \t]|$)))*[ \t]*")
# attributes that ammonia allows but whose value is free text nobody sees
_FREE_TEXT_ATTRIBUTES = frozenset({"summary", "cite", "title"})
_RECORDER = "steward.visible_markdown"

Rule = Callable[[StateInline, bool], bool]


@dataclass
class _Recorder:
    """Where, in one inline text, the raw HTML tags are, and the link destinations to rewrite."""

    tokens: list[Token] = field(default_factory=list)
    html: list[tuple[int, int]] = field(default_factory=list)
    destinations: list[tuple[int, int, str]] = field(default_factory=list)  # [start, end) -> `](href)`


def _recorded(rule: Rule, kind: str) -> Rule:
    """The markdown-it rule, also telling a recorder in the environment where it matched."""

    def record(state: StateInline, silent: bool) -> bool:
        start, count = state.pos, len(state.tokens)
        if not rule(state, silent):
            return False
        recorder = state.env.get(_RECORDER)
        if silent or not isinstance(recorder, _Recorder) or state.tokens is not recorder.tokens:
            return True  # not asked for, or an image's alt text parsed apart
        if kind == "html":
            recorder.html.append((start, state.pos))
            return True
        target = next(token for token in state.tokens[count:] if token.type in ("link_open", "image"))
        if target.meta.get("label") or target.attrGet("title"):
            label_end = state.md.helpers.parseLinkLabel(state, start + (kind == "image"), kind == "link")
            href = str(target.attrGet("href") or target.attrGet("src") or "")
            written = f"<{href}>" if not href or re.search(r"[\s()<>]", href) else href
            recorder.destinations.append((label_end, state.pos, f"]({written})"))
        return True

    return record


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    """`bot.markdown`'s CommonMark with tables, whose links, images and inline HTML can be located."""
    md = MarkdownIt("commonmark", {"store_labels": True}).enable("table")
    md.core.ruler.disable("inline")  # the blocks only: an inline text is read when it may need it
    md.inline.ruler.at("link", _recorded(link, "link"))
    md.inline.ruler.at("image", _recorded(image, "image"))
    md.inline.ruler.at("html_inline", _recorded(html_inline, "html"))
    return md


@dataclass(frozen=True, order=True)
class _Raw:
    """Raw HTML: its place in the file, its text as markdown-it read it, and the quote or list marks
    that begin its lines after the first."""

    start: int
    end: int
    html: str
    prefix: str = ""


class _Source:
    """The Markdown text with its lines, and the changes to make to it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.split("\n")
        self.starts = list(accumulate((len(line) + 1 for line in self.lines[:-1]), initial=0))
        self.edits: list[tuple[int, int, str]] = []  # Markdown [start, end) -> replacement
        self.raw: list[_Raw] = []

    def end_of(self, number: int) -> int:
        return self.starts[number] + len(self.lines[number])

    def edited(self, start: int, end: int) -> str:
        """text[start:end] with the edits inside it made."""
        parts, at = [], start
        for edit_start, edit_end, replacement in sorted(self.edits):
            if start <= edit_start and edit_end <= end:
                parts += [self.text[at:edit_start], replacement]
                at = edit_end
        return "".join([*parts, self.text[at:end]])

    def html_block(self, token: Token) -> None:
        """An HTML block is raw HTML, read as markdown-it gives it: without the quote or list marks
        before its lines, which go back on its lines afterwards."""
        assert token.map is not None
        first, last = token.map[0], token.map[1] - 1
        piece = token.content.split("\n", 1)[0].lstrip(" \t")
        line = self.lines[first]
        at = len(line) - len(piece) if line.endswith(piece) else 0
        html = token.content.removesuffix("\n").lstrip(" \t")
        prefix = ""
        if last > first:
            second, content = self.lines[first + 1], html.split("\n")[1]
            prefix = second[: len(second) - len(content)] if second.endswith(content) and content else ""
        self.raw.append(_Raw(self.starts[first] + at, self.end_of(last), html, prefix))

    def inline(self, token: Token, cursor: dict[int, int], env: dict[str, Any]) -> None:
        """Raw HTML tags and link destinations inside a paragraph, heading or table cell."""
        assert token.map is not None
        recorder = _Recorder()
        md = _parser()
        md.inline.parse(token.content, md, {**env, _RECORDER: recorder}, recorder.tokens)
        where = self._locate(token.content, token.map[0], cursor)
        spans = [(start, end, None) for start, end in recorder.html] + list(recorder.destinations)
        found: list[tuple[int, int, str | None, str]] = []
        for start, end, replacement in spans:
            begin, finish = (where(start), where(end)) if where else (0, 0)
            written = token.content[start:end]
            if where is None or ("\n" not in written and self.text[begin:finish] != written):
                if recorder.html:  # the text is not where its lines are: read the whole block as HTML
                    start, end = self.starts[token.map[0]], self.end_of(token.map[1] - 1)
                    self.raw.append(_Raw(start, end, self.text[start:end]))
                return
            found.append((begin, finish, replacement, written))
        for begin, finish, replacement, written in found:
            if replacement is None:  # a tag across lines is read without the quote marks between
                self.raw.append(_Raw(begin, finish, written))
            else:
                self.edits.append((begin, finish, replacement))

    def _locate(self, content: str, first: int, cursor: dict[int, int]) -> Callable[[int], int] | None:
        """A map from offsets in a block's inline text to offsets in the file; None if a line of the
        text is not found in the file's line (a table cell: after the cells before it)."""
        offsets: list[int] = []
        for index, piece in enumerate(content.split("\n")):
            number = first + index
            core = piece.strip(" \t")
            if number >= len(self.lines):
                return None
            at = self.lines[number].find(core, cursor.get(number, 0)) if core else 0
            if at < 0:
                return None
            cursor[number] = at + len(core)
            offsets.append(self.starts[number] + at - (len(piece) - len(piece.lstrip(" \t"))))
        line_starts = list(accumulate((len(piece) + 1 for piece in content.split("\n")[:-1]), initial=0))

        def where(offset: int) -> int:
            index = bisect_right(line_starts, offset) - 1
            return offsets[index] + offset - line_starts[index]

        return where

    def fence_info(self, token: Token) -> None:
        """```` ```bash anything after the language ```` : the words after the first are not shown."""
        assert token.map is not None
        words = token.info.split(maxsplit=1)
        if len(words) == 2:
            number = token.map[0]
            at = self.lines[number].find(token.info.strip())
            if at >= 0:
                self.edits.append((self.starts[number] + at + len(words[0]), self.end_of(number), ""))

    def definitions(self, covered: set[int]) -> None:
        """Lines in no text block are link reference definitions: emptied, their quote or list marks kept."""
        within = False
        for number, line in enumerate(self.lines):
            prefix = _CONTAINER.match(line)
            mark = prefix.end() if prefix else 0
            if number in covered or not line[mark:].strip():
                within = False
            elif within or line[mark:].startswith("["):
                within = True
                self.edits.append((self.starts[number] + mark, self.end_of(number), ""))


def visible_markdown(text: str) -> tuple[str, Counter[str]]:
    """The Markdown with what its rendering would not show removed; the hidden passages by reason."""
    md = _parser()
    env: dict[str, Any] = {}
    tokens = md.parse(text, env)
    source = _Source(text)
    covered: set[int] = set()
    cursor: dict[int, int] = {}
    for token in tokens:
        if token.map is not None and token.type in _TEXT_BLOCKS:
            covered.update(range(*token.map))
        if token.type == "html_block":
            source.html_block(token)
        elif token.type == "fence":
            source.fence_info(token)
        elif token.type == "inline" and token.map is not None and _may_hide(token.content, env):
            source.inline(token, cursor, env)
    source.definitions(covered)
    if not source.raw:
        return source.edited(0, len(text)), Counter()
    return _read_as_html(source)


def _may_hide(content: str, env: dict[str, Any]) -> bool:
    """Whether an inline text can hold raw HTML, a link through a definition or a link title."""
    return "<" in content or ("[" in content and (bool(env.get("references")) or "](" in content))


def _read_as_html(source: _Source) -> tuple[str, Counter[str]]:
    """Raw HTML with markers for the Markdown between: parsed as a browser does, hidden parts removed."""
    texts: list[str] = []
    parts: list[str] = []
    markers = Markers(f"steward-{secrets.token_hex(6)}-", texts)
    prefixed: list[tuple[int, str]] = []  # (the marker before a block whose lines get marks back, the marks)

    def marker(text: str) -> None:
        parts.append(markers.tag(len(texts)))
        texts.append(text)

    at = 0
    for raw in sorted(source.raw):
        if raw.start < at:
            continue
        if at < raw.start or raw.prefix:
            marker(source.edited(at, raw.start))
        if raw.prefix:
            prefixed.append((len(texts) - 1, raw.prefix))
        parts.append(raw.html)
        if raw.prefix:
            marker("")
        at = raw.end
    marker(source.edited(at, len(source.text)))
    soup = BeautifulSoup("".join(parts), "html5lib")
    removal = remove_hidden(soup, markers)
    if removal.stylesheet:
        rendered = _rendered(source.text)
        if rendered is not None:
            return rendered
    if soup.body is None:  # html5lib always makes one
        return "", removal.reasons
    _keep_what_shows(soup.body, markers)
    body = soup.body.decode_contents()
    for number, prefix in prefixed:
        before, after = body.find(markers.tag(number)), body.find(markers.tag(number + 1))
        if 0 <= before < after:
            body = body[:before] + body[before:after].replace("\n", "\n" + prefix) + body[after:]
    pattern = re.compile(rf"<{re.escape(markers.prefix)}(\d+)></{re.escape(markers.prefix)}\d+>")
    return pattern.sub(lambda match: texts[int(match.group(1))], body), removal.reasons


def _keep_what_shows(body: Tag, markers: Markers) -> None:
    """Elements outside ammonia's (nh3's) list of formatting elements lose their tag, not their text:
    a custom element's name shows nothing. Attributes go, but those that show something or link."""
    for tag in body.find_all(True):
        if markers.is_marker(tag):
            continue
        if tag.name not in nh3.ALLOWED_TAGS:
            tag.unwrap()
            continue
        kept = nh3.ALLOWED_ATTRIBUTES.get(tag.name, set()) - _FREE_TEXT_ATTRIBUTES
        tag.attrs = {name: value for name, value in tag.attrs.items() if name in kept}


def _rendered(text: str) -> tuple[str, Counter[str]] | None:
    """When a `<style>` rule hides something the Markdown renderer makes (`p`, `li`, `code`, ...),
    the text as a browser shows the rendered page (its Markdown formatting is lost); otherwise None."""
    md = MarkdownIt("commonmark").enable("table")
    tokens = md.parse(text)
    mark = f"data-steward-{secrets.token_hex(6)}"
    for token in _all(tokens):
        if token.nesting == 1 or token.type in ("fence", "code_block", "code_inline", "image", "hr"):
            token.attrSet(mark, "")
    soup = BeautifulSoup(md.renderer.render(tokens, md.options, {}), "html5lib")
    removal = remove_hidden(soup, rendered=lambda tag: tag.has_attr(mark))
    return (to_markdown(soup), removal.reasons) if removal.rule_on_rendered else None


def _all(tokens: list[Token]) -> Iterator[Token]:
    for token in tokens:
        yield token
        yield from _all(token.children or [])
