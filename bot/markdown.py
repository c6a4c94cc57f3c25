"""One CommonMark parse (markdown-it-py, tables enabled) with source line maps, for every reader of Markdown.

Chunking (`ingest.chunking`), excerpts (`bot.answers.excerpts`) and the Slack rendering
(`bot.slack.mrkdwn`) all read structure from this parser, so a `#` line inside a code block is code
for all three, and a setext underline or an indented code block means the same thing everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from markdown_it import MarkdownIt
from markdown_it.token import Token

BlockKind = Literal["paragraph", "list", "table", "code", "heading", "quote", "other"]

_KINDS: dict[str, BlockKind] = {
    "paragraph_open": "paragraph",
    "bullet_list_open": "list",
    "ordered_list_open": "list",
    "table_open": "table",
    "fence": "code",
    "code_block": "code",
    "heading_open": "heading",
    "blockquote_open": "quote",
}


@dataclass
class Block:
    """A top-level block of Markdown text: its kind and its source lines [start, end).

    `other` is a thematic break or an HTML block. Link reference definitions make no block.
    """

    kind: BlockKind
    start: int
    end: int
    # for lists: each item's [start, end); for tables: the header's and each data row's line
    parts: list[tuple[int, int]] = field(default_factory=list)
    level: int = 0  # a heading's level, 1 to 6
    text: str = ""  # a heading's text (its inline source, closing `#`s and setext underline dropped)
    info: str = ""  # a fenced code block's info string
    fence: str = ""  # a fenced code block's opening marker; "" for an indented code block
    # code blocks and tables inside a list or quote, at any depth
    inner: list[Block] = field(default_factory=list)


@lru_cache(maxsize=1)
def parser() -> MarkdownIt:
    """The CommonMark parser with GitHub tables (HTML blocks allowed, as CommonMark says)."""
    return MarkdownIt("commonmark").enable("table")


def parse_blocks(text: str) -> list[Block]:
    """The top-level blocks of Markdown text with their source line ranges (CommonMark + tables)."""
    tokens = parser().parse(text)
    blocks: list[Block] = []
    current: Block | None = None
    for index, token in enumerate(tokens):
        if token.map is None:
            continue
        if token.level == 0 and token.nesting >= 0:
            current = _block(token, tokens[index + 1] if index + 1 < len(tokens) else None)
            blocks.append(current)
        elif current is not None and _is_part(current, token):
            current.parts.append((token.map[0], token.map[1]))
        elif current is not None and current.kind in ("list", "quote") and token.type in _INNER:
            current.inner.append(_block(token, None))
    return blocks


_INNER = frozenset(("fence", "code_block", "table_open"))


def _block(token: Token, following: Token | None) -> Block:
    if token.map is None:  # markdown-it maps every block-level token it yields at level 0
        raise ValueError(f"markdown-it gave a {token.type} block without its source lines")
    block = Block(_KINDS.get(token.type, "other"), token.map[0], token.map[1])
    if token.type == "heading_open":
        block.level = int(token.tag[1])
        block.text = following.content if following is not None else ""
    elif token.type == "fence":
        block.info, block.fence = token.info.strip(), token.markup
    return block


def _is_part(block: Block, token: Token) -> bool:
    """Whether a token starts one of the block's parts: a top-level list item or a table row."""
    if block.kind == "list":
        return token.type == "list_item_open" and token.level == 1
    return block.kind == "table" and token.type == "tr_open"


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(`\[*_])")
_ABBREVIATION = re.compile(r"\b(?:e\.g|i\.e|etc|vs|cf|approx|incl|no|fig)\.$", re.IGNORECASE)


def split_sentences(text: str) -> list[str]:
    """The sentences of a paragraph's text, each stripped, the whitespace inside them kept; not split
    after `e.g.` and the like. Chunking cuts long paragraphs with it, excerpts pick sentences."""
    sentences: list[str] = []
    start = 0
    for end in _SENTENCE_END.finditer(text):
        if _ABBREVIATION.search(text[start : end.start()]):
            continue
        if sentence := text[start : end.start()].strip():
            sentences.append(sentence)
        start = end.end()
    if rest := text[start:].strip():
        sentences.append(rest)
    return sentences
