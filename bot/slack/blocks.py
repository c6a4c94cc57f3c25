"""Block Kit for Steward's answers, within Slack's limits: long answers become several messages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.answers.models import Answer, Citation
from bot.slack.mrkdwn import escape, link, to_mrkdwn, to_plain
from bot.slack.payloads import (
    ACTION_ASK_EXPERT,
    ACTION_HELPFUL,
    ACTION_NOT_HELPFUL,
    BLOCK_FEEDBACK,
    ExpertValue,
    FeedbackValue,
)

# Slack's documented limits.
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_CONTEXT_ELEMENTS = 10

FALLBACK_CHARS = 200
SHORTENED = "_…answer shortened to fit Slack. Run `steward ask` for the full text._"
ABSTAINED_FALLBACK = "Steward does not know this one"
FENCE = "```"
# One section per source reads best, up to this many.
_MAX_SOURCE_SECTIONS = 20
# A paragraph break is preferred over a line break only if it leaves a piece at least this full.
_MIN_PARAGRAPH_FILL = 0.5

Block = dict[str, Any]


@dataclass(frozen=True)
class RenderedMessage:
    """One Slack message: notification fallback text and its blocks."""

    text: str  # plain fallback text for notifications (<= 300 chars)
    blocks: list[dict[str, Any]]


def answer_messages(
    answer: Answer,
    *,
    answer_id: int | None,
    gap_id: int | None,
    source_url: Callable[[Citation], str | None],
    max_messages: int = 3,
    allowed: Callable[[str], bool] | None = None,
) -> list[RenderedMessage]:
    """The messages that post `answer`: the text, warnings, sources, confidence and buttons.

    With `allowed`, links to other hosts are shown as text, and the answer's sections are `verbatim`,
    so that Slack does not link a bare URL by itself.
    """
    text = to_mrkdwn(answer.answer, allowed)
    body = [_section(piece, verbatim=allowed is not None) for piece in split_mrkdwn(text) if piece.strip()]
    warnings = _warnings(answer.warnings)
    if answer.abstained:
        if not body:
            body = [_section(escape(ABSTAINED_FALLBACK) + ".")]
        tail = warnings + _abstention_tail(answer, gap_id)
        fallback = ABSTAINED_FALLBACK
    else:
        tail = warnings + _sources(answer.citations, source_url) + [_confidence(answer)]
        if answer_id is not None:
            tail.append(_feedback(answer_id))
        fallback = _fallback_text(answer.answer)
    pages = _paginate(body, tail, max(1, max_messages))
    return [
        RenderedMessage(
            text=fallback if i == 0 else f"Steward's answer, continued ({i + 1}/{len(pages)})", blocks=page
        )
        for i, page in enumerate(pages)
    ]


def confidence_label(confidence: float) -> str:
    """`high` (>= 0.8), `medium` (>= 0.65) or `low`."""
    if confidence >= 0.8:
        return "high"
    if confidence >= 0.65:
        return "medium"
    return "low"


def split_mrkdwn(text: str, limit: int = MAX_SECTION_TEXT) -> list[str]:
    """Pieces of at most `limit` characters cut at paragraphs, then lines, then spaces; code blocks reopen."""
    if len(text) <= limit:
        return [text]
    # Room for the fence that closes a cut code block and the one that reopens it.
    width = max(1, limit - 2 * (len(FENCE) + 1))
    pieces: list[str] = []
    lines: list[str] = []
    opened = False  # the current piece continues a code block cut at the end of the previous one
    for line in (short for long in text.split("\n") for short in _wrap(long, width)):
        while lines and len(_render([*lines, line], opened)) > limit:
            head, tail = _cut(lines, opened, limit)
            pieces.append(_render(head, opened))
            opened = _in_code(head, opened)
            lines = tail
        lines.append(line)
    if lines:
        pieces.append(_render(lines, opened))
    # Blank lines at either end of a piece are outside code (inside, the fences come first and last).
    return [piece.strip("\n") for piece in pieces if piece.strip()]


def _render(lines: list[str], opened: bool) -> str:
    """The piece's text: reopened and closed with a fence when it starts or ends inside a code block."""
    text = "\n".join(lines)
    if opened:
        text = f"{FENCE}\n{text}"
    if _in_code(lines, opened):
        text = f"{text}\n{FENCE}"
    return text


def _in_code(lines: list[str], opened: bool) -> bool:
    return opened ^ (sum(line.count(FENCE) for line in lines) % 2 == 1)


def _cut(lines: list[str], opened: bool, limit: int) -> tuple[list[str], list[str]]:
    """Where a full piece ends: the last paragraph break outside code if late enough, else all lines."""
    state = opened
    best = -1
    for index, line in enumerate(lines):
        if not line.strip() and not state and index > 0:
            best = index
        state = _in_code([line], state)
    if best > 0 and len(_render(lines[:best], opened)) >= limit * _MIN_PARAGRAPH_FILL:
        head, tail = lines[:best], lines[best + 1 :]
    else:
        head, tail = lines, []
    # A fence that opens a block as the piece's last line would leave an empty code block behind.
    opens_code = not _in_code(head[:-1], opened) and _in_code(head, opened)
    if len(head) > 1 and opens_code and head[-1].strip().startswith(FENCE):
        head, tail = head[:-1], [head[-1], *tail]
    while tail and not tail[0].strip() and not _in_code(head, opened):
        tail = tail[1:]
    return head, tail


def _wrap(line: str, width: int) -> list[str]:
    """A line longer than `width` cut at spaces, or (a word longer than that) anywhere it does no harm."""
    out: list[str] = []
    while len(line) > width:
        cut = line.rfind(" ", 0, width + 1)
        if cut <= 0:
            cut = _hard_cut(line, width)
        out.append(line[:cut].rstrip())
        line = line[cut:].lstrip(" ")
    out.append(line)
    return out


def _hard_cut(word: str, width: int) -> int:
    """Where to cut a word longer than `width`: not inside an entity like `&amp;`, nor a run of backticks."""
    cut = width
    amp = word.rfind("&", max(0, width - 6), width)
    if amp > 0 and ";" not in word[amp:width]:
        cut = amp
    while cut > 1 and word[cut - 1] == "`" == word[cut]:
        cut -= 1
    return cut if word[cut - 1 : cut + 1] != "``" else width


def _paginate(body: list[Block], tail: list[Block], max_messages: int) -> list[list[Block]]:
    """Body blocks filled into messages of at most 50, the tail whole in the last; shortened if need be."""
    if len(tail) >= MAX_BLOCKS:  # only with hundreds of warnings; confidence and buttons still come last
        tail = [*tail[: MAX_BLOCKS - 3], *tail[-2:]]
    room = MAX_BLOCKS * max_messages - len(tail)
    if len(body) > room:
        body = [*body[: room - 1], _section(SHORTENED)]
    pages: list[list[Block]] = []
    while len(body) + len(tail) > MAX_BLOCKS:
        pages.append(body[:MAX_BLOCKS])
        body = body[MAX_BLOCKS:]
    pages.append(body + tail)
    return pages


def _sources(citations: list[Citation], source_url: Callable[[Citation], str | None]) -> list[Block]:
    if not citations:
        return []
    lines = [
        _source_line(number, citation, source_url(citation)) for number, citation in enumerate(citations, 1)
    ]
    # Past _MAX_SOURCE_SECTIONS they share sections, so the tail still fits one message.
    sections = lines if len(lines) <= _MAX_SOURCE_SECTIONS else split_mrkdwn("\n".join(lines))
    return [{"type": "divider"}, _section("*Sources*"), *(_section(text) for text in sections)]


def _source_line(number: int, citation: Citation, url: str | None) -> str:
    """`*[1]* <url|Title>` and, on the next line, section · owner · status (· superseded by …)."""
    title = _clip(citation.title.strip() or citation.path, 200)
    parts = [escape(_clip(citation.section, 200))] if citation.section else []
    parts += [_owner(_clip(citation.owner, 200))] if citation.owner else []
    parts += [escape(_clip(citation.status, 200))] if citation.status else []
    if citation.source:  # two documents with the same path are told apart by their source
        trust = " :warning: untrusted" if citation.untrusted else ""
        parts.append(f"source `{escape(_clip(citation.source, 200))}`{trust}")
    if citation.superseded_by:
        parts.append(f"superseded by {escape(_clip(citation.superseded_by, 200))}")
    details = " · ".join(parts)
    name = link(url, title) if url else escape(title)
    if len(name) + len(details) > MAX_SECTION_TEXT - 20:
        name = escape(title)  # a URL this long would not fit the section; the title still names the source
    return f"*[{number}]* {name}\n{details}" if details else f"*[{number}]* {name}"


def _warnings(warnings: list[str]) -> list[Block]:
    """A context block per warning; past ten they share blocks (ten elements each) to save block count."""
    texts = [":warning: " + escape(warning) for warning in warnings]
    if len(texts) <= MAX_CONTEXT_ELEMENTS:
        return [_context(text) for text in texts]
    return [
        {
            "type": "context",
            "elements": [_mrkdwn(text) for text in texts[start : start + MAX_CONTEXT_ELEMENTS]],
        }
        for start in range(0, len(texts), MAX_CONTEXT_ELEMENTS)
    ]


def _confidence(answer: Answer) -> Block:
    label = confidence_label(answer.confidence)
    written = f"written by {escape(answer.written_by)}"
    if answer.fallback_reason:  # the extractive answer stands in for the LLM's: say why, as the CLI does
        written += f" because {escape(answer.fallback_reason)}"
    return _context(f"Confidence: {label} ({answer.confidence:.2f}) · {written}")


def _feedback(answer_id: int) -> Block:
    return {
        "type": "actions",
        "block_id": BLOCK_FEEDBACK,
        "elements": [
            button(":+1: Helpful", ACTION_HELPFUL, FeedbackValue(answer_id=answer_id, helpful=True).encode()),
            button(
                ":-1: Not helpful",
                ACTION_NOT_HELPFUL,
                FeedbackValue(answer_id=answer_id, helpful=False).encode(),
            ),
        ],
    }


def _abstention_tail(answer: Answer, gap_id: int | None) -> list[Block]:
    blocks: list[Block] = []
    if answer.owners:
        blocks.append(_context("Who might know: " + ", ".join(_owner(owner) for owner in answer.owners)))
    if gap_id is not None:
        expert = button(
            ":raising_hand: Ask an expert", ACTION_ASK_EXPERT, ExpertValue(gap_id=gap_id).encode()
        )
        blocks.append({"type": "actions", "elements": [{**expert, "style": "primary"}]})
    return blocks


def _owner(owner: str) -> str:
    """An owner as text; a Slack mention (`<@U123>`, as draft guidance records it) stays a mention."""
    if owner.startswith(("<@U", "<@W")) and owner.endswith(">") and owner[2:-1].isalnum():
        return owner
    return escape(owner)


def button(text: str, action_id: str, value: str) -> Block:
    """A Block Kit button; a value longer than Slack allows is a bug, so it raises."""
    if len(value) > MAX_BUTTON_VALUE:
        raise ValueError(f"button value of {len(value)} characters exceeds Slack's {MAX_BUTTON_VALUE}")
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": _clip(text, MAX_BUTTON_TEXT), "emoji": True},
        "action_id": action_id,
        "value": value,
    }


def _mrkdwn(text: str) -> Block:
    return {"type": "mrkdwn", "text": _clip(text, MAX_SECTION_TEXT)}


def _section(text: str, verbatim: bool = False) -> Block:
    return {"type": "section", "text": {**_mrkdwn(text), "verbatim": True} if verbatim else _mrkdwn(text)}


def _context(text: str) -> Block:
    return {"type": "context", "elements": [_mrkdwn(text)]}


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending with "…" when cut (clip before escaping)."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


_clip = clip


def _fallback_text(markdown: str, limit: int = FALLBACK_CHARS) -> str:
    """The answer's first words as plain, escaped text for notifications."""
    plain = " ".join(to_plain(markdown).split())
    out: list[str] = []
    size = 0
    for char in plain:
        escaped = escape(char)
        if size + len(escaped) > limit:
            text = "".join(out)
            space = text.rfind(" ")
            return (text[:space] if space > limit // 2 else text).rstrip() + "…"
        out.append(escaped)
        size += len(escaped)
    return "".join(out) or "Steward answered"
