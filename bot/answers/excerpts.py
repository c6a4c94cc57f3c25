"""Readable excerpts: the span of a passage that answers the question, cut where a reader can follow it.

A passage is parsed with a CommonMark parser (markdown-it-py) into blocks with their source lines:
paragraphs, lists and their items, tables and their rows, code blocks, headings. Each sentence, list
item, table row and code block is a *unit*, scored against the question. The best unit becomes an
excerpt by growing it to something that stands on its own:
- a sentence grows to its paragraph (or to the sentences around it, when the paragraph is long);
- a paragraph that ends in `:` keeps the list, table or code block it introduces;
- a list item keeps the lead-in that introduces its list, and the items around it;
- a table row is shown under the table's header row;
- a code block is shown whole, or cut on a line boundary with its fence closed.
Excerpts keep the document's own Markdown, so tables stay tables and code stays code.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from bot.index.lexical import terms
from bot.markdown import Block, parse_blocks, split_sentences

UnitKind = Literal["sentence", "item", "row", "code", "heading"]
_LEAD_IN = re.compile(r"[:：]\s*$")
_SEPARATOR_ROW = re.compile(r"^\s*\|?\s*:?-")


@dataclass(frozen=True)
class Unit:
    """A piece that can answer: a sentence, a list item, a table row or a code block."""

    kind: UnitKind
    block: int
    text: str
    line: int  # first source line
    part: int = 0  # the item's or row's number in its block, the sentence's number in its paragraph


@dataclass(frozen=True)
class Parsed:
    """A passage's lines, blocks and units."""

    lines: tuple[str, ...]
    blocks: tuple[Block, ...]
    units: tuple[Unit, ...]
    sentences: dict[int, list[str]] = field(default_factory=dict)  # of each paragraph or quote


_ENDS_SENTENCE = re.compile(r"""[.!?:;)"'`*_]\s*$""")


def _whole_sentences(source: str, last: bool) -> list[str]:
    """A paragraph's sentences without the pieces a cut left: a first sentence that starts in lower
    case (the rest of one before the chunk, or before a code block), a last one that does not end."""
    sentences = split_sentences(" ".join(source.split()))
    if sentences and sentences[0][:1].islower():  # the rest of a sentence begun before a chunk or block
        sentences = sentences[1:]
    if last and sentences and not _ENDS_SENTENCE.search(sentences[-1]):
        sentences = sentences[:-1]
    return sentences


def parse(text: str) -> Parsed:
    """Split a passage into blocks and scoreable units."""
    lines = tuple(text.splitlines())
    blocks = parse_blocks(text)
    units: list[Unit] = []
    sentences: dict[int, list[str]] = {}
    for number, block in enumerate(blocks):
        source = "\n".join(lines[block.start : block.end])
        if block.kind in ("paragraph", "quote"):
            if block.kind == "quote":
                source = "\n".join(line.lstrip("> ") for line in source.splitlines())
            sentences[number] = _whole_sentences(source, number == len(blocks) - 1)
            for order, sentence in enumerate(sentences[number]):
                units.append(Unit("sentence", number, sentence, block.start, order))
        elif block.kind == "list":
            for order, (start, end) in enumerate(block.parts):
                units.append(Unit("item", number, "\n".join(lines[start:end]), start, order))
        elif block.kind == "table":
            for order, (start, _end) in enumerate(block.parts[1:], start=1):
                header = lines[block.parts[0][0]]
                units.append(Unit("row", number, f"{header}\n{lines[start]}", start, order))
        elif block.kind == "code":
            units.append(Unit("code", number, source, block.start))
        elif block.kind == "heading":
            units.append(Unit("heading", number, source.lstrip("# ").strip(), block.start))
    return Parsed(lines, tuple(blocks), tuple(units), sentences)


@dataclass(frozen=True)
class Excerpt:
    """A readable span of one passage."""

    text: str
    score: float
    chunk_rank: int
    first_line: int


def _block_text(parsed: Parsed, block: Block) -> str:
    return "\n".join(parsed.lines[block.start : block.end]).strip("\n")


def _introduces(parsed: Parsed, index: int) -> bool:
    """Whether block `index` is a paragraph ending in `:` (a lead-in for what follows)."""
    block = parsed.blocks[index]
    return block.kind == "paragraph" and bool(_LEAD_IN.search(_block_text(parsed, block)))


def _fit_list(parsed: Parsed, block: Block, anchor: int, budget: int) -> str:
    """The list's items around `anchor` that fit `budget` characters (all of them when they fit)."""
    items = ["\n".join(parsed.lines[start:end]).rstrip() for start, end in block.parts]
    return "\n".join(items[i] for i in _window([len(item) for item in items], anchor, budget))


def _window(lengths: Sequence[int], anchor: int, budget: int) -> list[int]:
    """The pieces (sentences, list items) around `anchor` whose lengths, one separator each, fit
    `budget`: all of them when they fit; else the anchor, those after it (steps and explanations read
    forward), then those before. In order."""
    if sum(length + 1 for length in lengths) <= budget:
        return list(range(len(lengths)))
    chosen = [anchor]
    used = lengths[anchor] + 1
    after, before = anchor + 1, anchor - 1
    while after < len(lengths) or before >= 0:
        step = after if after < len(lengths) else before
        if used + lengths[step] + 1 > budget:
            break
        chosen.append(step)
        used += lengths[step] + 1
        if step == after:
            after += 1
        else:
            before -= 1
    return sorted(chosen)


def _fit_table(parsed: Parsed, block: Block, rows: Sequence[int], budget: int) -> str:
    """The header row, its separator and the given data rows (as many as fit)."""
    header_line = block.parts[0][0]
    separator = next(
        (line for line in parsed.lines[header_line + 1 : block.end] if _SEPARATOR_ROW.match(line)),
        None,
    )
    out = [parsed.lines[header_line]] + ([separator] if separator else [])
    used = sum(len(line) + 1 for line in out)
    for row in rows:
        line = parsed.lines[block.parts[row][0]]
        if used + len(line) + 1 > budget and len(out) > 2:
            break
        out.append(line)
        used += len(line) + 1
    return "\n".join(out)


def _fit_code(parsed: Parsed, block: Block, budget: int) -> str:
    """The code block whole, or its first lines with the fence closed."""
    lines = list(parsed.lines[block.start : block.end])
    text = "\n".join(lines)
    if len(text) <= budget:
        return text
    fence = lines[0].strip() if lines and lines[0].lstrip().startswith(("```", "~~~")) else ""
    closing = fence[:3] if fence else ""
    out: list[str] = []
    used = len(closing) + 1
    for line in lines[:-1] if fence else lines:
        if used + len(line) + 1 > budget and len(out) > 1:
            break
        out.append(line)
        used += len(line) + 1
    return "\n".join([*out, closing] if closing else out)


def _fit_sentences(parsed: Parsed, unit: Unit, budget: int) -> str:
    """The whole paragraph when it fits; else the anchor sentence and those after it (then before)."""
    sentences = parsed.sentences.get(unit.block, [])
    # a paragraph is joined with spaces: n sentences take n - 1 separators, so it may use budget + 1
    picked = " ".join(sentences[i] for i in _window([len(s) for s in sentences], unit.part, budget + 1))
    if len(picked) > budget:  # one very long sentence: cut on a word boundary
        picked = picked[:budget].rsplit(" ", 1)[0] + " …"
    return picked


def grow(parsed: Parsed, unit: Unit, budget: int, matching_rows: Sequence[int] = ()) -> str:
    """The excerpt around `unit`: whole enough to read on its own, at most about `budget` characters."""
    block = parsed.blocks[unit.block]
    lead = ""
    if unit.kind in ("item", "row", "code") and unit.block > 0 and _introduces(parsed, unit.block - 1):
        # the lead-in's last sentence is the one that introduces the list, table or code
        sentences = parsed.sentences.get(unit.block - 1, [])
        lead = sentences[-1] if sentences else ""
        if len(lead) > budget // 2:
            lead = ""
    room = max(budget - len(lead) - 1, budget // 2)
    if unit.kind == "item":
        body = _fit_list(parsed, block, unit.part, room)
    elif unit.kind == "row":
        rows = [unit.part, *[row for row in matching_rows if row != unit.part]]
        body = _fit_table(parsed, block, rows, room)
    elif unit.kind == "code":
        body = _fit_code(parsed, block, room)
    elif unit.kind == "heading":
        following = unit.block + 1
        if following < len(parsed.blocks):
            first = next((u for u in parsed.units if u.block == following), None)
            rest = (
                grow(parsed, first, room)
                if first is not None
                else _block_text(parsed, parsed.blocks[following])
            )
            body = unit.text + "\n" + rest
        else:
            body = unit.text
    else:
        body = _fit_sentences(parsed, unit, room)
        following = unit.block + 1
        if (
            _LEAD_IN.search(body)
            and following < len(parsed.blocks)
            and parsed.blocks[following].kind in ("list", "table", "code")
        ):
            # a lead-in keeps what it introduces
            nxt = parsed.blocks[following]
            left = max(budget - len(body) - 1, 120)
            if nxt.kind == "list":
                tail = _fit_list(parsed, nxt, 0, left)
            elif nxt.kind == "table":
                tail = _fit_table(parsed, nxt, list(range(1, len(nxt.parts))), left)
            else:
                tail = _fit_code(parsed, nxt, left)
            body = body + "\n" + tail
    return tidy(f"{lead}\n{body}" if lead else body)


def read_on(parsed: Parsed, unit: Unit, excerpt: str, budget: int) -> str:
    """The excerpt followed by the blocks after it, each whole (or cut where a reader can follow),
    while `budget` characters last: what answers often follows the sentence that matched."""
    block = unit.block + 1
    out = excerpt
    while block < len(parsed.blocks):
        first = next((u for u in parsed.units if u.block == block), None)
        if first is not None and _normalised(first.text[:60]) in _normalised(out):
            block += 1  # already in the excerpt (a lead-in took it along)
            continue
        left = budget - len(out) - 1
        if left < 80:
            break
        if first is None:
            block += 1
            continue
        more = grow(parsed, first, left)
        if len(more) > left or leads_in(more):
            break  # too long, or a lead-in whose list, table or code did not fit: stop before it
        out = f"{out}\n{more}"
        block += 1
    return tidy(out)


def leads_in(text: str) -> bool:
    """Whether text ends in a line that only leads in (`:` or `,`) outside a code block."""
    lines = text.strip("\n").splitlines()
    fenced = sum(1 for line in lines if line.strip().startswith(("```", "~~~"))) % 2 == 1
    return bool(lines) and not fenced and lines[-1].strip().endswith((":", ","))


def _normalised(text: str) -> str:
    return " ".join(text.lower().split())


_LIST_MARK = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s")


def tidy(excerpt: str) -> str:
    """Cut what a reader cannot use at an excerpt's edges: a last line that only leads in (ends in `:`
    or `,`) to something not shown, and a first line that starts mid-sentence."""
    lines = excerpt.strip("\n").splitlines()
    while len(lines) > 1 and leads_in("\n".join(lines)):
        lines.pop()
    while len(lines) > 1 and _starts_mid_sentence(lines[0]):
        lines.pop(0)
    return "\n".join(lines)


def _starts_mid_sentence(line: str) -> bool:
    text = line.strip()
    return bool(text) and not _LIST_MARK.match(line) and (text[0].islower() or text[0] in ",;:)]}")


Scorer = Callable[[Sequence[Unit]], Sequence[float]]


def unit_key(text: str) -> str:
    """The key a unit's vector is stored under at ingest: a digest of the text the model reads."""
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16]


def model_texts(passage: str, characters: int) -> list[str]:
    """What the model reads of each unit of a passage (its first `characters`), each text once."""
    return list(dict.fromkeys(unit.text[:characters] for unit in parse(passage).units))


def unit_terms(unit: Unit) -> set[str]:
    """The index terms of a unit."""
    return set(terms(unit.text))
