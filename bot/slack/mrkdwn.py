"""Markdown (as answers are written) to Slack mrkdwn: block structure from the CommonMark parse, then inline.

Blocks (code, headings, rules, quotes, lists, tables) are read from the same markdown-it parse that
chunking reads (`bot.markdown`), with its source lines. Text inside them is converted line by line:
Slack has no escape for `*`, `_` or `~`, only for `&`, `<` and `>`; so text is escaped once, at the end,
and every piece this module builds itself (links, code) is kept out of the emphasis and escaping passes
as a placeholder until the line is assembled.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from urllib.parse import urlsplit

from markdown_it.tree import SyntaxTreeNode

from bot.markdown import parser

_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
# Slack takes the link text up to `>`; a lookalike keeps a `|` in the text from being read as a separator.
_LINK_TEXT_PIPE = "∣"
_URL_QUOTES = str.maketrans({"<": "%3C", ">": "%3E", "|": "%7C", " ": "%20", "`": "%60"})
# Longest link text and URL looked for, so a line full of unmatched `[` or `(` stays linear.
_MAX_LINK_PART = 2000
_BULLETS = ("•", "◦", "▪")
_TASKS = {"[ ]": "☐", "[x]": "☑", "[X]": "☑"}
# A table's delimiter cell by its column's alignment (markdown-it's style attribute), as "{}" widened.
_ALIGNED = {"text-align:left": ":{}-", "text-align:center": ":{}:", "text-align:right": "-{}:"}
_INDENT = "    "

# Markers of converted emphasis, swapped for Slack's characters (or nothing) once the line is assembled.
_BOLD, _ITALIC, _STRIKE = "\x01", "\x02", "\x03"
_ATOM = "\x00"  # _ATOM + index + _ATOM stands for an already rendered piece
_CONTROL = re.compile(r"[\x00-\x08]")

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
        self.lines: list[str] = []

    def refused(self, url: str) -> bool:
        return not self.plain and self.allowed is not None and not self.allowed(url)

    def esc(self, text: str) -> str:
        return text if self.plain else escape(text)

    def convert(self, markdown: str) -> str:
        text = _CONTROL.sub("", markdown.replace("\r\n", "\n").replace("\r", "\n"))
        self.lines = text.split("\n")
        nodes = SyntaxTreeNode(parser().parse(text)).children
        return _tidy(self.blocks(nodes, indent="", depth=0, start=0, end=len(self.lines)))

    def blocks(
        self, nodes: list[SyntaxTreeNode], *, indent: str, depth: int, start: int | None = None, end: int = 0
    ) -> list[str]:
        """The lines of sibling blocks; `indent` starts their text lines, `depth` counts the lists
        around them. Source lines between blocks are kept: a blank one stays one empty line, and a
        link reference definition (which makes no block) stays as text."""
        out: list[str] = []
        read = start
        for node in nodes:
            if read is not None and node.map is not None:
                out.extend(self.between(read, node.map[0], indent))
            out.extend(self.block(node, indent=indent, depth=depth))
            read = _end(node) if node.map is not None else read
        if read is not None:
            out.extend(self.between(read, end, indent))
        return out

    def between(self, start: int, end: int, indent: str) -> list[str]:
        return [self.text(_unquoted(self.lines[line]), indent) for line in range(start, end)]

    def block(self, node: SyntaxTreeNode, *, indent: str, depth: int) -> list[str]:
        if node.type in ("fence", "code_block"):
            return [self.code_block(node.content.split("\n"))]
        if node.type == "table":
            return [self.code_block(_table(node))]
        if node.type == "heading":
            title = self.inline(_inline(node), in_bold=True)
            return [indent + title if self.plain or not title else f"{indent}*{title}*"]
        if node.type == "paragraph":
            return [self.text(line, indent) for line in _inline(node).split("\n")]
        if node.type == "html_block":
            return [self.text(line, indent) for line in node.content.rstrip("\n").split("\n")]
        if node.type == "blockquote":
            return self.quote(node, depth)
        if node.type in ("bullet_list", "ordered_list"):
            return self.blocks(node.children, indent=indent, depth=depth)
        if node.type == "list_item":
            return self.item(node, depth)
        return [""]  # a thematic break

    def text(self, line: str, indent: str) -> str:
        line = line.strip()
        return (indent + self.inline(line)).rstrip() if line else ""

    def quote(self, node: SyntaxTreeNode, depth: int) -> list[str]:
        if node.children:
            inner = self.blocks(node.children, indent="", depth=depth)
        else:  # nested deeper than the parser follows: its lines as text
            inner = self.between(*(node.map or (0, 0)), "")
        if self.plain or _quote_depth(node) > 0:  # Slack shows one level: the outer quote marks the lines
            return inner
        return [f"> {line}".rstrip() for block in inner for line in block.split("\n")]

    def item(self, item: SyntaxTreeNode, depth: int) -> list[str]:
        ordered = item.parent is not None and item.parent.type == "ordered_list"
        marker = _INDENT * depth + (item.info + "." if ordered else _BULLETS[depth % len(_BULLETS)])
        indent = _INDENT * (depth + 1)
        lines = self.blocks(item.children, indent=indent, depth=depth + 1)
        if not item.children or item.children[0].type not in ("paragraph", "heading", "html_block"):
            return [marker, *lines]  # a code block or table starts on its own line
        first = lines[0].removeprefix(indent)
        if (task := _TASKS.get(first[:3])) and first[3:4] == " ":
            first = task + " " + first[3:].lstrip()
        return [(marker + " " + first).rstrip(), *lines[1:]]

    def code_block(self, body: list[str]) -> str:
        while body and not body[-1].strip():
            body = body[:-1]
        code = "\n".join(body)
        if self.plain:
            return code
        return "```\n" + _break_fences(escape(code)) + "\n```" if code.strip() else ""

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


def _end(node: SyntaxTreeNode) -> int:
    """The line after a block's last content line (a list's or quote's map also holds the blank lines
    after it, which must stay between it and the next block)."""
    if node.children and node.type in ("bullet_list", "ordered_list", "list_item", "blockquote"):
        return _end(node.children[-1])
    return node.map[1] if node.map is not None else 0


def _inline(node: SyntaxTreeNode) -> str:
    """The inline source of a paragraph or heading."""
    return node.children[0].content if node.children else ""


def _table(node: SyntaxTreeNode) -> list[str]:
    """A table rebuilt from its cells, its columns padded to line up in Slack's monospace block."""
    rows = [row for part in node.children for row in part.children]  # the parser gives all the same width
    if not rows:
        return []
    cells = [[_inline(cell).strip().replace("|", "\\|") for cell in row.children] for row in rows]
    widths = [max(3, *(len(cell) for cell in column)) for column in zip(*cells, strict=True)]
    lines = [
        "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    rule = [
        _ALIGNED.get(str(cell.attrs.get("style")), "-{}-").format("-" * width)
        for cell, width in zip(rows[0].children, widths, strict=True)
    ]
    return [lines[0], "|" + "|".join(rule) + "|", *lines[1:]]


def _quote_depth(node: SyntaxTreeNode) -> int:
    depth, parent = 0, node.parent
    while parent is not None:
        depth += parent.type == "blockquote"
        parent = parent.parent
    return depth


def _unquoted(line: str) -> str:
    """A source line that no block covers, without the quote markers before it."""
    return line.lstrip(" \t>")


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
