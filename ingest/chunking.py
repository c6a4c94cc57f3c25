"""Documents -> chunks by Markdown structure, each within the embedding model's window.

A chunk carries its heading path ("Doc title > Section > Subsection"). Sections are packed whole
where they fit; code blocks and tables are kept whole where they fit and otherwise split on line
boundaries (a table's header row is repeated, a code block's fences are re-opened).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ingest.documents import SourceDocument

CountPieces = Callable[[Sequence[str]], list[int]]

# Room left for [CLS], [SEP] and the joins between blocks that the per-block count does not see.
_MARGIN = 6
# A chunk smaller than this is continued by the next section when that fits in the window:
# short sections (an ADR's "Status", a one-line "Impact") are read together with their neighbours.
_SMALL_SECTION = 48
# Lines of a code block that the embedding model sees (the chunk keeps them all).
_EMBED_CODE_LINES = 8

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_REF_LINK = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
_URL = re.compile(r"https?://\S+")
_TAG = re.compile(r"</?[A-Za-z][^>]*>")
_TABLE_RULE = re.compile(r"^\s*\|?[\s:|\-]+\|?\s*$")
_MARKUP = re.compile(r"[*_`#>|]+|~~")
_SPACES = re.compile(r"[ \t]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")


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
    sections: list[_Section] = [_Section([document.title], [])]
    stack: list[tuple[int, str]] = []
    paragraph: list[str] = []
    table: list[str] = []
    fence: list[str] = []
    fence_marker = ""
    title_seen = False

    def flush() -> None:
        if paragraph:
            sections[-1].blocks.append(_Block("\n".join(paragraph).strip("\n"), "text"))
            paragraph.clear()
        if table:
            sections[-1].blocks.append(_Block("\n".join(table), "table"))
            table.clear()

    lines = document.body.splitlines()
    for index, line in enumerate(lines):
        if fence:
            fence.append(line)
            if line.strip().startswith(fence_marker) and line.strip().strip(fence_marker[0]) == "":
                sections[-1].blocks.append(_Block("\n".join(fence), "code"))
                fence = []
            continue
        fence_match = _FENCE.match(line)
        if fence_match:
            flush()
            fence = [line]
            fence_marker = fence_match.group(1)
            continue
        heading = _HEADING.match(line)
        setext = (
            index + 1 < len(lines)
            and line.strip()
            and not paragraph
            and re.fullmatch(r"(=+|-{3,})\s*", lines[index + 1] or "x")
        )
        if heading or setext:
            flush()
            if heading:
                level, name = len(heading.group(1)), _plain_heading(heading.group(2))
            else:
                level, name = (1 if lines[index + 1].startswith("=") else 2), _plain_heading(line)
            # The document's own title heading (often the H1, sometimes a first H2) is already the
            # head of every path; repeating it costs word pieces in every chunk.
            if not title_seen and not stack and _same_heading(name, document.title):
                title_seen = True
                continue
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, name))
            sections.append(_Section([document.title, *(n for _, n in stack)], []))
            continue
        if re.fullmatch(r"(=+|-{3,})\s*", line) and index > 0 and _HEADING.match(lines[index - 1]) is None:
            # The underline of a setext heading handled on the previous line.
            prev = lines[index - 1]
            if prev.strip() and sections[-1].path[-1] == _plain_heading(prev):
                continue
        if line.lstrip().startswith("|"):
            if paragraph:
                sections[-1].blocks.append(_Block("\n".join(paragraph), "text"))
                paragraph.clear()
            table.append(line)
            continue
        if table:
            sections[-1].blocks.append(_Block("\n".join(table), "table"))
            table.clear()
        if not line.strip():
            flush()
            continue
        paragraph.append(line)
    if fence:  # an unclosed fence: keep its text rather than lose it
        sections[-1].blocks.append(_Block("\n".join(fence), "code"))
    flush()
    return [s for s in sections if s.blocks]


def _split_block(block: _Block, budget: int, count: CountPieces) -> list[_Block]:
    """Cut a block that alone exceeds the budget on line or sentence boundaries."""
    if block.kind == "code":
        lines = block.text.splitlines()
        opener, body = lines[0], lines[1:]
        closer = body.pop() if body and _FENCE.match(body[-1]) else opener.strip()[:3]
        units, wrap = body, (opener, closer)
    elif block.kind == "table":
        lines = block.text.splitlines()
        header = lines[:2] if len(lines) > 2 and _TABLE_RULE.match(lines[1]) else []
        units, wrap = lines[len(header) :], ("\n".join(header), "")
    else:
        units = [u for u in _SENTENCE.split(block.text) if u.strip()]
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
