"""Documents -> chunks by Markdown structure, each within the embedding model's window.

Structure comes from the CommonMark parse in `bot.markdown` (the one the Slack rendering and the
excerpts read), so a `#` line in a code block is code and a setext underline makes a heading.
A chunk carries its heading path ("Doc title > Section > Subsection"). Sections are packed whole
where they fit; code blocks and tables are kept whole where they fit and otherwise split on line
boundaries (a table's header row is repeated, a code block's fences are re-opened).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.markdown import Block, parse_blocks, split_sentences
from ingest.documents import SourceDocument

CountPieces = Callable[[Sequence[str]], list[int]]

# Room left for [CLS], [SEP] and the joins between blocks that the per-block count does not see.
_MARGIN = 6
# A chunk smaller than this is continued by the next section when that fits in the window:
# short sections (an ADR's "Status", a one-line "Impact") are read together with their neighbours.
_SMALL_SECTION = 48
# Lines of a code block that the embedding model sees (the chunk keeps them all).
_EMBED_CODE_LINES = 8

_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_REF_LINK = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
_URL = re.compile(r"https?://\S+")
_TAG = re.compile(r"</?[A-Za-z][^>]*>")
_TABLE_RULE = re.compile(r"^\s*\|?[\s:|\-]+\|?\s*$")
_MARKUP = re.compile(r"[*_`#>|]+|~~")
_SPACES = re.compile(r"[ \t]+")


@dataclass(frozen=True)
class Chunk:
    """A passage of a document: what users read (`text`) and what the model embeds."""

    ord: int
    section: str
    text: str
    embed_text: str
    pieces: int


@dataclass
class _Block:
    text: str
    kind: str  # "text", "code", "table", "heading"
    pieces: int = 0
    fence: str = ""  # a fenced code block's opening marker; "" for an indented one


@dataclass
class _Section:
    path: list[str]
    blocks: list[_Block]


def clean_for_embedding(text: str) -> str:
    """The words of a Markdown passage without link targets, tags and markup characters."""
    text = _LINK.sub(r"\1", text)
    text = _REF_LINK.sub(r"\1", text)
    text = _URL.sub("", text)
    text = _TAG.sub(" ", text)
    lines = [line for line in text.splitlines() if not (line.strip() and _TABLE_RULE.match(line))]
    text = _MARKUP.sub(" ", "\n".join(lines))
    text = _SPACES.sub(" ", text)
    return re.sub(r"\n\s*\n+", "\n", text).strip()


def _same_heading(a: str, b: str) -> bool:
    def norm(value: str) -> str:
        return re.sub(r"[^a-z0-9]+", "", value.lower())

    return norm(a) == norm(b)


def _plain_heading(text: str) -> str:
    return re.sub(r"[*_`]+", "", _LINK.sub(r"\1", text)).strip()


def _sections(document: SourceDocument) -> list[_Section]:
    """The document's blocks under their heading paths, read from the CommonMark parse."""
    sections: list[_Section] = [_Section([document.title], [])]
    stack: list[tuple[int, str]] = []
    title_seen = False
    lines = document.body.split("\n")
    text_end = -1  # where the last text block ends, while it is the section's last block

    def add(kind: str, start: int, end: int, fence: str = "") -> None:
        nonlocal text_end
        while start < end and not lines[start].strip():
            start += 1
        while end > start and not lines[end - 1].strip():
            end -= 1
        if start == end:
            return
        text = "\n".join(lines[start:end])
        blocks = sections[-1].blocks
        if kind == "text" and start == text_end:  # no blank line between: one run of text, as written
            blocks[-1].text += "\n" + text
        else:
            blocks.append(_Block(text, kind, fence=fence))
        text_end = end if kind == "text" else -1

    read = 0
    for block in parse_blocks(document.body):
        add("text", read, block.start)  # link reference definitions make no block; keep their URLs
        read = block.end
        if block.kind != "heading":
            for kind, start, end, fence in _pieces(block, lines):
                add(kind, start, end, fence)
            continue
        name = _plain_heading(" ".join(block.text.split()))
        if not name:
            continue
        text_end = -1
        # The document's own title heading (often the H1, sometimes a first H2) is already the
        # head of every path; repeating it costs word pieces in every chunk.
        if not title_seen and not stack and _same_heading(name, document.title):
            title_seen = True
            continue
        while stack and stack[-1][0] >= block.level:
            stack.pop()
        stack.append((block.level, name))
        sections.append(_Section([document.title, *(n for _, n in stack)], []))
    add("text", read, len(lines))
    return [s for s in sections if s.blocks]


def _pieces(block: Block, lines: Sequence[str]) -> list[tuple[str, int, int, str]]:
    """(kind, start, end, fence) of a parsed block: a code block or a table whole; a list item by
    item, cut around the code blocks and tables inside it (kept whole, like those at the top level);
    the rest as text. Pieces with no blank line between are read as one run of text."""
    if block.kind in ("code", "table"):
        return [(block.kind, block.start, block.end, block.fence)]
    if block.kind == "paragraph" and all(
        line.lstrip().startswith("|") for line in lines[block.start : block.end]
    ):
        # Rows whose cells do not match the header's make no GFM table, but the author wrote one:
        # it is cut as a table, under its header.
        return [("table", block.start, block.end, "")]
    if block.kind != "list":
        return [("text", block.start, block.end, "")]
    cuts = sorted(
        {block.start, block.end}
        | {start for start, _ in block.parts}
        | {line for inner in block.inner for line in (inner.start, inner.end)}
    )
    inner = {piece.start: piece for piece in block.inner}
    pieces: list[tuple[str, int, int, str]] = []
    for start, end in itertools.pairwise(cuts):
        pieces.append(_pieces(inner[start], lines)[0] if start in inner else ("text", start, end, ""))
    return pieces


def _split_block(block: _Block, budget: int, count: CountPieces) -> list[_Block]:
    """Cut a block that alone exceeds the budget on line or sentence boundaries."""
    if block.kind == "code" and block.fence:
        lines = block.text.splitlines()
        opener, body = lines[0], lines[1:]
        closer = body.pop() if body and _closes(body[-1], block.fence) else block.fence
        units, wrap = body, (opener, closer)
    elif block.kind == "table":
        lines = block.text.splitlines()
        # a parsed table's header and delimiter rows come first; rows written with pipes but no
        # delimiter row (no GFM table) have no header to repeat
        header = lines[:2] if len(lines) > 2 and _TABLE_RULE.match(lines[1]) else []
        units, wrap = lines[len(header) :], ("\n".join(header), "")
    elif block.kind == "code":  # an indented code block: lines, nothing to re-open
        units, wrap = block.text.splitlines(), ("", "")
    else:
        units = split_sentences(block.text)
        if len(units) <= 1:
            units = block.text.split()
        wrap = ("", "")
    overhead = count(["\n".join(w for w in wrap if w)])[0] - 2 if any(wrap) else 0
    unit_pieces = [max(0, n - 2) for n in count([clean_for_embedding(u) for u in units])]
    pieces: list[_Block] = []
    current: list[str] = []
    size = overhead
    joiner = " " if block.kind == "text" and len(units) > 1 and "\n" not in block.text else "\n"

    def emit() -> None:
        if not current:
            return
        inner = joiner.join(current)
        text = "\n".join(part for part in (wrap[0], inner, wrap[1]) if part)
        pieces.append(_Block(text, block.kind, size))

    for unit, n in zip(units, unit_pieces, strict=True):
        if n + overhead > budget:
            # A single word, line or sentence longer than the window: hard cut by characters.
            emit()
            current, size = [], overhead
            step = max(20, int(len(unit) * budget / max(n + overhead, 1)) - 10)
            for start in range(0, len(unit), step):
                current, size = [unit[start : start + step]], budget
                emit()
            current, size = [], overhead
            continue
        if current and size + n + 1 > budget:
            emit()
            current, size = [], overhead
        current.append(unit)
        size += n + 1
    emit()
    return pieces


def _closes(line: str, fence: str) -> bool:
    """Whether `line` closes a code block opened with `fence` (the same character, as many or more)."""
    marker = line.strip()
    return marker.startswith(fence) and marker.strip(fence[0]) == ""


def chunk_document(document: SourceDocument, count: CountPieces, window: int = 256) -> list[Chunk]:
    """Cut a document into chunks of at most `window` word pieces, heading path included."""
    sections = _sections(document)
    if not sections:
        return []
    all_blocks = [block for section in sections for block in section.blocks]
    counted = count([clean_for_embedding(block.text) for block in all_blocks])
    for block, n in zip(all_blocks, counted, strict=True):
        block.pieces = max(0, n - 2)
    path_pieces = count([" > ".join(section.path) for section in sections])

    chunks: list[tuple[list[str], list[_Block], int]] = []
    for section, heading_pieces in zip(sections, path_pieces, strict=True):
        budget = window - heading_pieces - _MARGIN
        blocks: list[_Block] = []
        for block in section.blocks:
            if block.pieces > budget:
                blocks.extend(_split_block(block, budget, count))
            else:
                blocks.append(block)
        current: list[_Block] = []
        size = 0
        previous = chunks[-1] if chunks else None
        # A small previous section is continued by this one, under their common heading path.
        if previous is not None and previous[2] < _SMALL_SECTION:
            common = _common_prefix(previous[0], section.path)
            heading = _Block("#" * min(6, len(section.path)) + " " + section.path[-1], "heading")
            heading.pieces = max(0, count([section.path[-1]])[0] - 2)
            first = blocks[0].pieces if blocks else 0
            if previous[2] + heading.pieces + first <= window - heading_pieces - _MARGIN:
                chunks.pop()
                section_path = common
                current, size = [*previous[1], heading], previous[2] + heading.pieces
            else:
                section_path = section.path
        else:
            section_path = section.path
        for block in blocks:
            if current and size + block.pieces > budget:
                chunks.append((section_path, current, size))
                current, size, section_path = [], 0, section.path
            current.append(block)
            size += block.pieces
        if current:
            chunks.append((section_path, current, size))

    out: list[Chunk] = []
    names = [" > ".join(path) for path, _, _ in chunks]
    texts = ["\n\n".join(block.text for block in blocks) for _, blocks, _ in chunks]
    sizes = count([name + "\n" + clean_for_embedding(text) for name, text in zip(names, texts, strict=True)])
    for (_, blocks, _), section_name, text, size in zip(chunks, names, texts, sizes, strict=True):
        fitted = [(text, size)] if size <= window else _fit(section_name, text, count, window)
        for part, pieces in fitted:
            shown = _shorten_code(blocks) if part == text else part
            embed_text = section_name + "\n" + clean_for_embedding(shown)
            out.append(Chunk(len(out), section_name, part, embed_text, pieces))
    return out


def _fit(section: str, text: str, count: CountPieces, window: int) -> list[tuple[str, int]]:
    """The chunk, counted exactly; halved (by lines, then words, then characters) while too long.

    Packing works from per-block counts, which a line of link fragments or query text can fool;
    this check makes the window a guarantee rather than an estimate.
    """
    pieces = count([section + "\n" + clean_for_embedding(text)])[0]
    if pieces <= window:
        return [(text, pieces)]
    for separator in ("\n", " "):
        parts = text.split(separator)
        if len(parts) > 1:
            middle = len(parts) // 2
            halves = [separator.join(parts[:middle]), separator.join(parts[middle:])]
            break
    else:
        halves = [text[: len(text) // 2], text[len(text) // 2 :]]
    return [fitted for half in halves if half.strip() for fitted in _fit(section, half, count, window)]


def _shorten_code(blocks: Sequence[_Block]) -> str:
    """The chunk's text with long code blocks cut to their first lines, for the embedding only.

    A sentence model learns little from the 40th line of a YAML file, and every word piece costs
    ingest time; BM25 and the reader still get the whole block.
    """
    parts = []
    for block in blocks:
        if block.kind == "code":
            lines = block.text.splitlines()
            if len(lines) > _EMBED_CODE_LINES + 2:
                parts.append("\n".join(lines[: _EMBED_CODE_LINES + 1]))
                continue
        parts.append(block.text)
    return "\n\n".join(parts)


def _common_prefix(a: list[str], b: list[str]) -> list[str]:
    common: list[str] = []
    for left, right in zip(a, b, strict=False):
        if left != right:
            break
        common.append(left)
    return common or a[:1]
