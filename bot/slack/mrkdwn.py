"""Markdown (as answers are written) to Slack mrkdwn: code fences first, then block structure, then inline.

Slack has no escape for `*`, `_` or `~`, only for `&`, `<` and `>`; so text is escaped once, at the end,
and every piece this module builds itself (links, code) is kept out of the emphasis and escaping passes
as a placeholder until the line is assembled.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from urllib.parse import urlsplit

_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
# Slack takes the link text up to `>`; a lookalike keeps a `|` in the text from being read as a separator.
_LINK_TEXT_PIPE = "∣"
_URL_QUOTES = str.maketrans({"<": "%3C", ">": "%3E", "|": "%7C", " ": "%20", "`": "%60"})
# Longest link text and URL looked for, so a line full of unmatched `[` or `(` stays linear.
_MAX_LINK_PART = 2000
_BULLETS = ("•", "◦", "▪")
_INDENT = "    "

# Markers of converted emphasis, swapped for Slack's characters (or nothing) once the line is assembled.
_BOLD, _ITALIC, _STRIKE = "\x01", "\x02", "\x03"
_ATOM = "\x00"  # _ATOM + index + _ATOM stands for an already rendered piece
_CONTROL = re.compile(r"[\x00-\x08]")

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_RULE = re.compile(r"^ {0,3}(?:(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$")
_QUOTE = re.compile(r"^ {0,3}(?:>[ ]*)+(.*)$")
_ITEM = re.compile(r"^(?P<indent> *)(?P<marker>[-*+]|\d{1,9}[.)])(?:[ ]+(?P<text>.*))?$")
_TASK = re.compile(r"^\[([ xX])\][ ]+")
_TABLE_RULE = re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")

_SCHEME = re.compile(r"(?i)^(?:https?://|mailto:)")
_AUTOLINK = re.compile(r"<((?:https?://|mailto:)[^<>\s]*)>", re.IGNORECASE)
_EMAIL_AUTOLINK = re.compile(r"<([^\s<>@]+@[^\s<>@]+\.[^\s<>@]+)>")
_BARE_URL = re.compile(r"(?<![^\W_])https?://[^\s<>`]+", re.IGNORECASE)
_LINK_TITLE = re.compile(r"\s+(?:\"[^\"]{0,2000}\"|'[^']{0,2000}'|\([^)]{0,2000}\))")
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")

# Emphasis never opens after, or closes before, a letter or digit: `snake_case_name` and `2*3*4` stay.
_EMPHASIS = (
    (re.compile(r"(?<![\w*])\*{3}(?![\s*])(.+?)(?<![\s*])\*{3}(?![\w*])"), _BOLD + _ITALIC, _ITALIC + _BOLD),
    (re.compile(r"(?<![\w*])\*\*(?![\s*])(.+?)(?<!\s)\*\*(?![\w*])"), _BOLD, _BOLD),
    (re.compile(r"(?<![\w_])__(?![\s_])(.+?)(?<!\s)__(?![\w_])"), _BOLD, _BOLD),
    (re.compile(r"(?<![\w*])\*(?![\s*])(.+?)(?<![\s*])\*(?![\w*])"), _ITALIC, _ITALIC),
    (re.compile(r"(?<![\w_])_(?![\s_])(.+?)(?<![\s_])_(?![\w_])"), _ITALIC, _ITALIC),
    (re.compile(r"(?<![\w~])~~(?![\s~])(.+?)(?<![\s~])~~(?![\w~])"), _STRIKE, _STRIKE),
)


def escape(text: str) -> str:
    """Escape `&`, `<` and `>` as Slack requires in all text."""
    return text.translate(_ESCAPES)


def link(url: str, text: str | None = None) -> str:
    """A Slack link `<url|text>` whose text may hold any character (`|`, `>`, `&`) without breaking it."""
    return _link(url, escape(text) if text else None)


def to_mrkdwn(markdown: str, allowed: Callable[[str], bool] | None = None) -> str:
    """Convert Markdown (CommonMark with GitHub tables and strikethrough) to Slack mrkdwn.

    With `allowed`, a link whose URL it refuses keeps its text and says "link to HOST removed".
    """
    return _Converter(plain=False, allowed=allowed).convert(markdown)


def to_plain(markdown: str) -> str:
    """The text of Markdown without its markers (link texts, code contents), unescaped."""
    return _Converter(plain=True).convert(markdown)


def _link(url: str, escaped_text: str | None) -> str:
    target = url.strip().replace("&", "&amp;").translate(_URL_QUOTES)
    if not escaped_text:
        return f"<{target}>"
    return f"<{target}|{escaped_text.replace('|', _LINK_TEXT_PIPE)}>"


def _break_fences(code: str) -> str:
    """Code may itself hold ```, which would end Slack's code block; a zero-width space defuses it."""
    return re.sub(r"``(?=`)", "``\u200b", code)


class _Lists:
    """Indentation of the open list levels, so nesting works with 2- or 4-space indents alike."""

    def __init__(self) -> None:
        self.indents: list[int] = []

    def level(self, indent: int) -> int:
        while self.indents and indent < self.indents[-1]:
            self.indents.pop()
        if not self.indents or indent > self.indents[-1]:
            self.indents.append(indent)
        return len(self.indents) - 1

    def depth(self, indent: int) -> int:
        return sum(1 for open_indent in self.indents if open_indent < indent)


def _removed(url: str) -> str:
    try:
        host = urlsplit(url).hostname or "another site"
    except ValueError:
        host = "another site"
    return f"[link to {host} removed]"


class _Converter:
    def __init__(self, *, plain: bool, allowed: Callable[[str], bool] | None = None) -> None:
        self.plain = plain
        self.allowed = allowed
        self.lists = _Lists()

    def refused(self, url: str) -> bool:
        return not self.plain and self.allowed is not None and not self.allowed(url)

    def esc(self, text: str) -> str:
        return text if self.plain else escape(text)

    def convert(self, markdown: str) -> str:
        lines = _CONTROL.sub("", markdown.replace("\r\n", "\n").replace("\r", "\n")).split("\n")
        out: list[str] = []
        index = 0
        while index < len(lines):
            fence = _FENCE.match(lines[index])
            if fence and not (fence["fence"][0] == "`" and "`" in fence["info"]):
                index, body = _take_fence(lines, index, fence)
                out.append(self.code_block(body))
                self.lists = _Lists()
            elif _is_table(lines, index):
                end = index + 2
                while end < len(lines) and lines[end].strip() and "|" in lines[end]:
                    end += 1
                out.append(self.code_block([line.rstrip() for line in lines[index:end]]))
                self.lists = _Lists()
                index = end
            else:
                out.append(self.block_line(lines[index]))
                index += 1
        return _tidy(out)

    def code_block(self, body: list[str]) -> str:
        while body and not body[-1].strip():
            body = body[:-1]
        code = "\n".join(body)
        if self.plain:
            return code
        return "```\n" + _break_fences(escape(code)) + "\n```" if code.strip() else ""

    def block_line(self, raw: str) -> str:
        line = raw.expandtabs(4).rstrip()
        if not line.strip():
            return ""  # a blank line does not end a list: items may be separated by one
        if _RULE.match(line):
            self.lists = _Lists()
            return ""
        if heading := _HEADING.match(line):
            self.lists = _Lists()
            title = self.inline(heading[2] or "", in_bold=True)
            return title if self.plain or not title else f"*{title}*"
        if quote := _QUOTE.match(line):
            self.lists = _Lists()
            inner = self.block_line(quote[1]) if quote[1].strip() else ""
            self.lists = _Lists()
            return inner if self.plain else f"> {inner}".rstrip()
        indent = len(line) - len(line.lstrip(" "))
        if item := _ITEM.match(line):
            level = self.lists.level(indent)
            marker = item["marker"]
            bullet = _BULLETS[level % len(_BULLETS)] if marker in "-*+" else marker[:-1] + "."
            text = item["text"] or ""
            if task := _TASK.match(text):
                text = ("☐ " if task[1] == " " else "☑ ") + text[task.end() :]
            return (_INDENT * level + bullet + " " + self.inline(text)).rstrip()
        if self.lists.indents and indent > 0:  # a continuation line of a list item
            return _INDENT * self.lists.depth(indent) + self.inline(line.strip())
        self.lists = _Lists()
        return self.inline(line.strip())

    def inline(self, text: str, *, in_bold: bool = False) -> str:
        atoms: list[str] = []

        def atom(rendered: str) -> str:
            atoms.append(rendered)
            return f"{_ATOM}{len(atoms) - 1}{_ATOM}"

        parts: list[str] = []
        i, n = 0, len(text)
        while i < n:
            char = text[i]
            if char == "\\" and i + 1 < n and text[i + 1] in _PUNCTUATION:
                parts.append(atom(self.esc(text[i + 1])))
                i += 2
            elif char == "`":
                run = len(text[i:]) - len(text[i:].lstrip("`"))
                close = _closing_backticks(text, i + run, run)
                if close < 0:
                    parts.append(atom(text[i : i + run]))
                else:
                    parts.append(atom(self.code_span(text[i + run : close])))
                    run = close + run - i
                i += run
            elif char == "<" and (auto := _AUTOLINK.match(text, i) or _EMAIL_AUTOLINK.match(text, i)):
                url = auto[1] if _SCHEME.match(auto[1]) else "mailto:" + auto[1]
                if self.refused(url):
                    parts.append(atom(escape(_removed(url))))
                else:
                    shown = None if url == auto[1] else auto[1]
                    parts.append(atom(auto[1] if self.plain else _link(url, shown)))
                i = auto.end()
            elif char in "[!" and (parsed := _parse_link(text, i + (char == "!"))):
                end, label, url = parsed
                parts.append(atom(self.render_link(label, url, in_bold=in_bold)))
                i = end
            elif char in "hH" and (bare := _BARE_URL.match(text, i)):
                url = _trim_url(bare[0])
                if self.refused(url):
                    parts.append(atom(escape(_removed(url))))
                else:
                    parts.append(atom(self.esc(url) if self.plain else _link(url, None)))
                i += len(url)
            elif char == "&" and (entity := _ENTITY.match(text, i)):
                parts.append(atom(self.esc(html.unescape(entity[0]))))
                i = entity.end()
            else:
                parts.append(char)
                i += 1
        line = "".join(parts)
        for pattern, opening, closing in _EMPHASIS:
            line = pattern.sub(opening + r"\1" + closing, line)
        line = self.esc(line)
        bold = "" if self.plain or in_bold else "*"
        line = line.replace(_BOLD, bold).replace(_ITALIC, "" if self.plain else "_")
        line = line.replace(_STRIKE, "" if self.plain else "~")
        line = re.sub(f"{_ATOM}(\\d+){_ATOM}", lambda m: atoms[int(m[1])], line)
        # Left in (an unmatched run, escaped backticks), ``` would open a code block in Slack.
        return line if self.plain else _break_fences(line)

    def code_span(self, code: str) -> str:
        if len(code) > 2 and code[0] == code[-1] == " " and code.strip():
            code = code[1:-1]
        return code if self.plain else f"`{escape(code)}`"

    def render_link(self, label: str, url: str, *, in_bold: bool) -> str:
        if not _SCHEME.match(url):  # relative or javascript: links keep their text only
            return self.inline(label, in_bold=in_bold)
        text = _Converter(plain=True).inline(label)
        if self.plain:
            return text or url
        if self.refused(url):
            return escape(" ".join(f"{text} {_removed(url)}".split()))
        return _link(url, escape(" ".join(text.split())))


def _take_fence(lines: list[str], start: int, opening: re.Match[str]) -> tuple[int, list[str]]:
    """The lines of a fenced block (dedented like its fence) and the index after its closing fence."""
    fence, indent = opening["fence"], len(opening["indent"].expandtabs(4))
    closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
    body: list[str] = []
    index = start + 1
    while index < len(lines) and not closing.match(lines[index]):
        line = lines[index]
        strip = min(indent, len(line) - len(line.lstrip(" ")))
        body.append(line[strip:])
        index += 1
    return index + 1, body  # an unclosed fence runs to the end, as in CommonMark


def _is_table(lines: list[str], index: int) -> bool:
    if index + 1 >= len(lines) or "|" not in lines[index] or "|" not in lines[index + 1]:
        return False
    return bool(_TABLE_RULE.match(lines[index + 1])) and "-" in lines[index + 1]


def _closing_backticks(text: str, start: int, run: int) -> int:
    """Where the backtick run of exactly `run` that closes a code span starts, or -1."""
    for match in re.finditer(r"`+", text[start:]):
        if len(match[0]) == run:
            return start + match.start()
    return -1


def _parse_link(text: str, start: int) -> tuple[int, str, str] | None:
    """`[label](url "title")` at `start`: (end, label, url), or None when it is not an inline link."""
    if start >= len(text) or text[start] != "[":
        return None
    depth, i, stop = 0, start, min(len(text), start + _MAX_LINK_PART)
    while i < stop:
        if text[i] == "\\":
            i += 1
        elif text[i] == "[":
            depth += 1
        elif text[i] == "]":
            depth -= 1
            if depth == 0:
                break
        i += 1
    if depth or i + 1 >= len(text) or text[i + 1] != "(":
        return None  # citation markers like [1] and [2][3] end up here and stay as written
    label, j = text[start + 1 : i], i + 2
    while j < len(text) and text[j] == " ":
        j += 1
    if j < len(text) and text[j] == "<":
        close = text.find(">", j, j + _MAX_LINK_PART)
        if close < 0:
            return None
        url, j = text[j + 1 : close], close + 1
    else:
        begin, parens, stop = j, 0, min(len(text), j + _MAX_LINK_PART)
        while j < stop and not text[j].isspace() and (text[j] != ")" or parens):
            parens += {"(": 1, ")": -1}.get(text[j], 0)
            j += 1
        url = text[begin:j]
    title = _LINK_TITLE.match(text, j)
    j = title.end() if title else j
    while j < len(text) and text[j] == " ":
        j += 1
    if j >= len(text) or text[j] != ")":
        return None
    return j + 1, label, url


def _trim_url(url: str) -> str:
    """A bare URL without the punctuation that ends the sentence around it."""
    while (url and url[-1] in ".,:;!?*_~'\"") or (url.endswith(")") and url.count(")") > url.count("(")):
        url = url[:-1]
    return url


def _tidy(lines: list[str]) -> str:
    """Join the converted lines, with at most one empty line in a row and none at either end."""
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out)
