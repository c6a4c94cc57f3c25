"""`steward eval`: retrieval, abstention and what the reader sees, on a labelled question set."""

from __future__ import annotations

import codecs
import json
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.answers.models import Answer
from bot.answers.service import AnswerService
from bot.errors import BadRequest


class EvalFileError(BadRequest):
    """The question file cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class LabelledQuestion:
    """One line of a question set (the format of `dev.jsonl`)."""

    id: str
    question: str
    relevant: tuple[str, ...]
    answer_hint: str
    answerable: bool


@dataclass
class EvalResult:
    """Aggregate figures and the per-question report."""

    questions: int = 0
    answerable: int = 0
    unanswerable: int = 0
    recall_at_5: float = 0.0
    mrr_at_10: float = 0.0
    hint_at_5: float = 0.0
    hint_at_1: float = 0.0
    answer_hint: float = 0.0
    answer_chars_p50: float = 0.0
    answer_chars_p95: float = 0.0
    fragment_lines: int = 0
    abstained_unanswerable: int = 0
    abstained_answerable: int = 0
    latency_p50_ms: float = 0.0
    latency_p95_ms: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def abstention_precision(self) -> float:
        """Of the questions Steward abstained on, the share that were really unanswerable."""
        total = self.abstained_unanswerable + self.abstained_answerable
        return self.abstained_unanswerable / total if total else 0.0

    @property
    def abstention_recall(self) -> float:
        """Of the unanswerable questions, the share Steward abstained on."""
        return self.abstained_unanswerable / self.unanswerable if self.unanswerable else 0.0

    def summary(self) -> dict[str, float | int]:
        """The figures, rounded, for printing and JSON."""
        return {
            "questions": self.questions,
            "recall@5": round(self.recall_at_5, 3),
            "mrr@10": round(self.mrr_at_10, 3),
            "hint@5": round(self.hint_at_5, 3),
            "hint@1": round(self.hint_at_1, 3),
            "answer_hint": round(self.answer_hint, 3),
            "answer_chars_p50": round(self.answer_chars_p50),
            "answer_chars_p95": round(self.answer_chars_p95),
            "fragment_lines": self.fragment_lines,
            "abstention_precision": round(self.abstention_precision, 3),
            "abstention_recall": round(self.abstention_recall, 3),
            "abstained_unanswerable": self.abstained_unanswerable,
            "unanswerable": self.unanswerable,
            "abstained_answerable": self.abstained_answerable,
            "answerable": self.answerable,
            "latency_p50_ms": round(self.latency_p50_ms, 1),
            "latency_p95_ms": round(self.latency_p95_ms, 1),
        }


def read_questions(path: Path) -> list[LabelledQuestion]:
    """Parse a question file, naming the line of any bad entry."""
    if not path.is_file():
        raise EvalFileError(f"{path}: no such file")
    questions: list[LabelledQuestion] = []
    for number, line in enumerate(_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalFileError(f"{path}, line {number}: not JSON ({exc.msg})") from None
        if not isinstance(item, dict):
            raise EvalFileError(f"{path}, line {number}: expected a JSON object")
        question = item.get("question")
        if not isinstance(question, str) or not question.strip():
            raise EvalFileError(f"{path}, line {number}: field 'question' must be non-empty text")
        relevant = item.get("relevant", [])
        if not isinstance(relevant, list) or not all(isinstance(r, str) for r in relevant):
            raise EvalFileError(f"{path}, line {number}: field 'relevant' must be a list of paths")
        kind = item.get("kind", "answerable" if relevant else "unanswerable")
        if kind not in ("answerable", "unanswerable"):
            raise EvalFileError(f"{path}, line {number}: field 'kind' must be 'answerable' or 'unanswerable'")
        questions.append(
            LabelledQuestion(
                id=str(item.get("id", f"line-{number}")),
                question=question,
                relevant=tuple(relevant),
                answer_hint=str(item.get("answer_hint") or ""),
                answerable=kind == "answerable",
            )
        )
    if not questions:
        raise EvalFileError(f"{path}: no questions in the file")
    return questions


def _text(path: Path) -> str:
    """The question file's text; a file that cannot be read or is not UTF-8 is an EvalFileError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EvalFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        at = bom + exc.start  # the offset in the file, as a hex viewer shows it
        line = data[:at].count(b"\n") + 1
        raise EvalFileError(
            f"{path}, line {line}: not UTF-8 text (byte {at} is 0x{data[at]:02x}); "
            "save the question file as UTF-8"
        ) from None


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


_MARKUP = re.compile(r"[*_`]")
_CITED_AT_END = re.compile(r"(?:\s*\[\d{1,3}\])+\s*$")
# bullets, numbers and letters ("a." as in "a. Check the storage class")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)]|[a-z][.)])\s")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$")


def reads_the_hint(answer_text: str, hint: str) -> bool:
    """Whether the answer a person reads states the hint (Markdown `*`, `_` and backticks ignored)."""
    if not hint.strip():
        return False
    return _normalise(_MARKUP.sub("", hint)) in _normalise(_MARKUP.sub("", answer_text))


_LABEL = re.compile(r"^[_*][^_*].*[_*]\s*(?:\[\d{1,3}\])+\s*$")


def fragment_lines(answer_text: str) -> list[str]:
    """Lines a reader cannot use: a lead-in ending in `:` or `,` with nothing of its own after it
    (the answer or the excerpt ends there), a table header or separator row without a data row, and
    a line that starts mid-sentence (in lower case or with punctuation, where a block starts)."""
    lines = answer_text.splitlines()
    fragments: list[str] = []
    in_code = False
    for number, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            in_code = not in_code
            continue
        if in_code or not stripped or _LABEL.match(stripped):
            continue
        text = _CITED_AT_END.sub("", stripped)
        if not text:
            continue
        nxt = next((row.strip() for row in lines[number + 1 :] if row.strip()), "")
        ends_excerpt = bool(_CITED_AT_END.search(stripped)) or not nxt or bool(_LABEL.match(nxt))
        previous = lines[number - 1].strip() if number > 0 else ""
        # an indented line continues a list item the excerpt holds whole (a formula, a link under a
        # step): only a line at the left margin starts a block that a cut could have split
        starts_block = not line.startswith("  ") and (
            not previous or bool(_LABEL.match(previous)) or bool(_CITED_AT_END.search(previous))
        )
        if text.endswith((":", ",")) and ends_excerpt:
            fragments.append(line)
        elif text.startswith("|"):
            following = lines[number + 1].strip() if number + 1 < len(lines) else ""
            header = _TABLE_SEPARATOR.match(following) is not None
            if (header or _TABLE_SEPARATOR.match(text)) and not _has_data_after(lines, number):
                fragments.append(line)  # a header or separator row with no row of data under it
        elif starts_block and not _LIST_ITEM.match(line) and (text[0].islower() or text[0] in ",;:)]}"):
            fragments.append(line)
    return fragments


def _has_data_after(lines: Sequence[str], number: int) -> bool:
    """Whether a table row at `number` is followed by a data row (a row that is not a separator)."""
    for row in lines[number + 1 :]:
        text = _CITED_AT_END.sub("", row.strip())
        if not text.startswith("|"):
            return False
        if _TABLE_SEPARATOR.match(text):
            continue
        return True
    return False


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def evaluate(
    service: AnswerService,
    questions: Sequence[LabelledQuestion],
    clock: Callable[[], float] = time.perf_counter,
    warmup: bool = True,
) -> EvalResult:
    """Ask every question; score retrieval on answerable ones and abstention on all."""
    if warmup:
        service.ask(questions[0].question)  # load the model and the lexical index outside the timings
    result = EvalResult(questions=len(questions))
    latencies: list[float] = []
    lengths: list[float] = []
    recall = mrr = hint = hint_top = read = 0.0
    for labelled in questions:
        started = clock()
        answer = service.ask(labelled.question)
        latency = (clock() - started) * 1000
        latencies.append(latency)
        ranked_paths = list(dict.fromkeys(p.path for p in answer.retrieved))
        if labelled.answerable:
            result.answerable += 1
            relevant = set(labelled.relevant)
            recall += 1.0 if relevant & set(ranked_paths[:5]) else 0.0
            rank = next((i for i, p in enumerate(ranked_paths[:10], start=1) if p in relevant), None)
            mrr += 1.0 / rank if rank else 0.0
            hint += 1.0 if _hint_found(answer, labelled.answer_hint) else 0.0
            hint_top += 1.0 if _hint_found(answer, labelled.answer_hint, top=1) else 0.0
            read += (
                1.0 if not answer.abstained and reads_the_hint(answer.answer, labelled.answer_hint) else 0.0
            )
            result.abstained_answerable += int(answer.abstained)
        else:
            result.unanswerable += 1
            result.abstained_unanswerable += int(answer.abstained)
        if not answer.abstained:
            lengths.append(len(answer.answer))
            result.fragment_lines += len(fragment_lines(answer.answer))
        result.rows.append(_row(labelled, answer, latency))
    if result.answerable:
        result.recall_at_5 = recall / result.answerable
        result.mrr_at_10 = mrr / result.answerable
        result.hint_at_5 = hint / result.answerable
        result.hint_at_1 = hint_top / result.answerable
        result.answer_hint = read / result.answerable
    result.answer_chars_p50 = statistics.median(lengths) if lengths else 0.0
    result.answer_chars_p95 = percentile(lengths, 95)
    result.latency_p50_ms = statistics.median(latencies)
    result.latency_p95_ms = percentile(latencies, 95)
    return result


def _hint_found(answer: Answer, hint: str, top: int = 5) -> bool:
    if not hint:
        return False
    wanted = _normalise(hint)
    # Passages are one per document, so the top five passages are the top five documents' passages.
    return any(wanted in _normalise(p.text) for p in answer.retrieved[:top])


def _row(labelled: LabelledQuestion, answer: Answer, latency: float) -> dict[str, Any]:
    return {
        "id": labelled.id,
        "question": labelled.question,
        "abstained": answer.abstained,
        "confidence": round(answer.confidence, 3),
        "answer": answer.answer,
        "answer_hint": labelled.answer_hint,
        "reads_the_hint": reads_the_hint(answer.answer, labelled.answer_hint) and not answer.abstained,
        "fragment_lines": fragment_lines(answer.answer) if not answer.abstained else [],
        "citations": [c.path for c in answer.citations],
        "retrieved": [
            {"path": p.path, "section": p.section, "text": p.text, "score": round(p.score, 5)}
            for p in answer.retrieved[:10]
        ],
        "latency_ms": round(latency, 2),
    }
