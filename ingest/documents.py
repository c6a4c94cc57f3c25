"""Files -> documents: reading Markdown, text and HTML, front matter, and what can be inferred.

Problems with one file never stop an ingest: they come back as `Skipped` (the file is not
ingested) or as warnings (a field was ignored), each naming the file and, where known, the line.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

KINDS = ("runbook", "decision", "guide", "policy", "postmortem")
STATUSES = ("draft", "proposed", "accepted", "deprecated", "superseded")

# Markdown, Markdown with template tags (Middleman's .html.md.erb), plain text, HTML.
MARKDOWN_SUFFIXES = (".md", ".markdown", ".mdown", ".mkd", ".md.erb", ".markdown.erb")
TEXT_SUFFIXES = (".txt", ".text")
HTML_SUFFIXES = (".html", ".htm")
SKIPPED_FOLDERS = frozenset({".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", ".steward"})

_STATUS_WORDS = {
    "draft": "draft",
    "proposed": "proposed",
    "proposal": "proposed",
    "pending": "proposed",
    "open": "proposed",
    "rfc": "proposed",
    "accepted": "accepted",
    "approved": "accepted",
    "agreed": "accepted",
    "adopted": "accepted",
    "decided": "accepted",
    "implemented": "accepted",
    "done": "accepted",
    "deprecated": "deprecated",
    "rejected": "deprecated",
    "withdrawn": "deprecated",
    "retired": "deprecated",
    "obsolete": "deprecated",
    "superseded": "superseded",
    "superceded": "superseded",
    "replaced": "superseded",
}

_KIND_FOLDERS = (
    (re.compile(r"runbook|playbook|alerts?$|on-?call|troubleshoot"), "runbook"),
    (re.compile(r"^adrs?$|decision|architecture-decision"), "decision"),
    (re.compile(r"post-?mortems?|incident-?reviews?|retrospectives?"), "postmortem"),
    (re.compile(r"polic(y|ies)|governance|standards?$"), "policy"),
    (re.compile(r"guides?$|guidance|how-?tos?|manual|tutorials?|docs?$"), "guide"),
)

_FRONT_MATTER_ALIASES = {
    "last_reviewed_on": "last_reviewed",
    "reviewed": "last_reviewed",
    "owner_slack": "owner",
    "owners": "owner",
    "superseded-by": "superseded_by",
    "supersededby": "superseded_by",
    "review-by": "review_by",
    "gap_id": "gap",
}

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})")
_ERB = re.compile(r"<%.*?%>", re.S)
# Zero-width and bidirectional control characters: they hide or reorder text without showing.
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_STATUS_LINE = re.compile(
    r"^[ \t]*(?:[-*][ \t]+)?(?:\*\*|__)?status(?:\*\*|__)?[ \t]*:(?:\*\*|__)?[ \t]*(.+)$", re.I | re.M
)
_STATUS_SECTION = re.compile(r"^#{1,4}[ \t]*status[ \t#]*\n+((?:.*\n?){1,6})", re.I | re.M)
_LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)[^)]*\)")
_DURATION = re.compile(r"^\s*(\d+)\s*(day|week|month|year)s?\s*$", re.I)


@dataclass(frozen=True)
class Skipped:
    """A file that was not ingested, and why."""

    path: str
    reason: str


@dataclass
class SourceDocument:
    """A parsed document, ready to be chunked."""

    path: str
    title: str
    body: str
    kind: str | None = None
    status: str | None = None
    owner: str | None = None
    tags: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    last_reviewed: str | None = None
    review_by: str | None = None
    superseded_by: str | None = None
    url: str | None = None
    gap_id: int | None = None  # the knowledge gap a guidance document answers (`gap:` in front matter)
    awaiting_review: bool = False  # front matter says `status: draft`: not searchable until accepted
    warnings: list[str] = field(default_factory=list)


def format_of(path: Path) -> str | None:
    """'markdown', 'text' or 'html' for files Steward reads; None for anything else."""
    name = path.name.lower()
    if name.endswith(MARKDOWN_SUFFIXES) or name.endswith(".md.erb"):
        return "markdown"
    if name.endswith(TEXT_SUFFIXES):
        return "text"
    if name.endswith(HTML_SUFFIXES):
        return "html"
    return None


def discover(root: Path) -> list[tuple[str, Path]]:
    """(path relative to root, file) for every readable-format file below root, sorted."""
    if root.is_file():
        return [(root.name, root)] if format_of(root) else []
    found: list[tuple[str, Path]] = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part in SKIPPED_FOLDERS or part.startswith(".") for part in relative.parts[:-1]):
            continue
        if path.is_file() and not path.is_symlink() and format_of(path):
            found.append((relative.as_posix(), path))
    return found


def oversize(path: str, size: int, max_bytes: int) -> Skipped:
    """A file over the size limit: skipped, naming its size and the setting that raises the limit."""
    return Skipped(
        path,
        f"oversize: {size:,} bytes > STEWARD_MAX_FILE_BYTES={max_bytes:,} (not read; raise "
        "STEWARD_MAX_FILE_BYTES to ingest it)",
    )


def read_file(path: str, file: Path, max_bytes: int) -> bytes | Skipped:
    """The file's bytes, or why it is skipped; a file over `max_bytes` is never read into memory."""
    try:
        size = file.stat().st_size
        if size > max_bytes:
            return oversize(path, size, max_bytes)
        with file.open("rb") as stream:
            data = stream.read(max_bytes + 1)  # it may have grown since the stat
    except OSError as exc:
        return Skipped(path, f"unreadable: {exc.strerror or exc}")
    if len(data) > max_bytes:
        return oversize(path, max(size, len(data)), max_bytes)
    return data


def decode(path: str, data: bytes, max_bytes: int) -> str | Skipped:
    """The file's text, or why it is skipped (oversize, binary, not UTF-8)."""
    if len(data) > max_bytes:
        return oversize(path, len(data), max_bytes)
    # Anywhere in the file, not only near the start: PostgreSQL's text cannot hold NUL, and no
    # Markdown, text or HTML document a person wrote has one (UTF-16 files do: they are not UTF-8).
    nul = data.find(b"\x00")
    if nul >= 0:
        return Skipped(path, f"binary file (a NUL byte at byte {nul:,}): not indexed")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return Skipped(path, f"not UTF-8 text (byte {exc.start})")


def parse(
    path: str, text: str, fmt: str, known_paths: frozenset[str] = frozenset()
) -> SourceDocument | Skipped:
    """Turn a file's text into a document, inferring what the front matter does not say."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    meta: dict[str, Any] = {}
    meta_lines: dict[str, int] = {}
    body = text
    hidden: Counter[str] = Counter()
    if fmt == "html":
        title, body, hidden = _html_to_markdown(text)
        if title:
            meta["title"] = title
    elif text.startswith("---\n"):
        front = _split_front_matter(path, text)
        if isinstance(front, Skipped):
            return front
        meta, meta_lines, body = front
    # Text a reader does not see is not indexed: it is where injected instructions hide.
    if fmt == "markdown":
        from ingest.visible_markdown import visible_markdown  # bs4 and soupsieve: 0.1 s to import

        body, hidden = visible_markdown(_ERB.sub("", body))
    elif fmt == "html":
        body = _ERB.sub("", body)
    body = _INVISIBLE.sub("", body)

    document = SourceDocument(path=path, title="", body=body)
    for key, value in meta.items():  # YAML's "\0" escape: PostgreSQL's text cannot hold a NUL
        clean = _without_nul(value)
        if clean != value:
            meta[key] = clean
            line = meta_lines.get(key)
            where = f"{path}, line {line}" if line else path
            document.warnings.append(f"{where}: field '{key}' held NUL characters (\\0); they were removed")
    if hidden:
        reasons = ", ".join(f"{reason} ({count})" for reason, count in sorted(hidden.items()))
        document.warnings.append(f"{path}: hidden text not indexed (a reader would not see it): {reasons}")
    _apply_front_matter(document, meta, meta_lines, known_paths)
    if not document.title:
        document.title = _infer_title(path, body, fmt)
    if document.kind is None:
        document.kind = _infer_kind(path, body)
    # Only decision records follow the ADR status formats; a runbook's "Status: open the dashboard"
    # is an instruction, not a lifecycle state.
    if document.kind in ("decision", None) and (document.status is None or document.superseded_by is None):
        _infer_adr_status(document, known_paths)
    return document


def _split_front_matter(path: str, text: str) -> tuple[dict[str, Any], dict[str, int], str] | Skipped:
    """The front matter's fields, the line each key is on, and the body; or why the file is skipped.

    Not python-frontmatter, which is less strict: it takes an unclosed `---` block for body text, drops
    a front matter that is a list or a scalar without a word, knows no `...` end line, reads a file
    opening with `+++` or `{` as TOML or JSON, and gives no line numbers for keys or YAML errors.
    """
    end = re.search(r"^(?:---|\.\.\.)[ \t]*$", text[4:], re.M)
    if end is None:
        return Skipped(path, "front matter opened with '---' on line 1 is never closed (add a '---' line)")
    raw = text[4 : 4 + end.start()]
    body = text[4 + end.end() :].lstrip("\n")
    try:
        loaded = yaml.safe_load(raw) if raw.strip() else {}
    except Exception as exc:  # besides YAMLError, PyYAML raises ValueError for 2026-02-30, KeyError, …
        # The construct's start (an unclosed bracket's line) is where the author must look.
        mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 2}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or next(iter(str(exc).splitlines()), type(exc).__name__)
        return Skipped(path, f"malformed front matter{line}: {problem}")
    if not isinstance(loaded, dict):
        return Skipped(
            path, "front matter, line 2: expected 'key: value' lines, found " + type(loaded).__name__
        )
    lines: dict[str, int] = {}
    for number, line_text in enumerate(raw.splitlines(), start=2):
        key = line_text.split(":", 1)[0].strip()
        if key and not line_text.startswith((" ", "\t", "-")):
            lines.setdefault(key, number)
    return {str(k): v for k, v in loaded.items()}, lines, body


def _without_nul(value: Any) -> Any:
    """A front matter value with the NUL characters removed from every string in it."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {key: _without_nul(item) for key, item in value.items()}
    return value


def _as_date(value: Any) -> str | None:
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip()[:10]).isoformat()
        except ValueError:
            return None
    return None


def _as_list(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, list | tuple) and all(isinstance(item, str | int | float) for item in value):
        return [str(item).strip() for item in value if str(item).strip()]
    return None


def _add_duration(start: str, duration: str) -> str | None:
    match = _DURATION.match(duration)
    if not match:
        return None
    amount, unit = int(match.group(1)), match.group(2).lower()
    day = dt.date.fromisoformat(start)
    try:
        if unit in ("day", "week"):
            return (day + dt.timedelta(days=amount * (7 if unit == "week" else 1))).isoformat()
        months = amount * (12 if unit == "year" else 1)
        year, month = divmod(day.month - 1 + months, 12)
        return dt.date(day.year + year, month + 1, min(day.day, 28)).isoformat()
    except (OverflowError, ValueError):  # past the year 9999
        return None


def _apply_front_matter(
    document: SourceDocument, meta: dict[str, Any], lines: dict[str, int], known_paths: frozenset[str]
) -> None:
    def warn(key: str, message: str) -> None:
        line = lines.get(key)
        where = f"{document.path}, line {line}" if line else document.path
        document.warnings.append(f"{where}: field '{key}' {message}; ignored")

    normalised: dict[str, tuple[str, Any]] = {}
    for key, value in meta.items():
        canonical = _FRONT_MATTER_ALIASES.get(key.lower(), key.lower())
        normalised.setdefault(canonical, (key, value))

    for canonical, (key, value) in normalised.items():
        if value is None:
            continue
        if canonical in ("title", "owner", "url"):
            if isinstance(value, list) and canonical == "owner":
                value = ", ".join(str(item) for item in value)
            if not isinstance(value, str | int | float) or not str(value).strip():
                warn(key, "must be text")
                continue
            setattr(document, canonical, str(value).strip())
        elif canonical in ("kind", "status"):
            allowed = KINDS if canonical == "kind" else STATUSES
            word = str(value).strip().lower()
            if canonical == "status":
                word = _STATUS_WORDS.get(word, word)
            if word not in allowed:
                warn(key, f"is {value!r}, expected one of: {', '.join(allowed)}")
                continue
            setattr(document, canonical, word)
            if canonical == "status":
                document.awaiting_review = word == "draft"
        elif canonical == "gap":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                warn(key, f"is {value!r}, expected the number of a knowledge gap")
                continue
            document.gap_id = value
        elif canonical in ("tags", "services"):
            items = _as_list(value)
            if items is None:
                warn(key, "must be a list of words or a comma-separated string")
                continue
            setattr(document, canonical, items)
        elif canonical in ("last_reviewed", "review_by"):
            day = _as_date(value)
            if day is None:
                warn(key, f"is {value!r}, expected a date like 2026-01-31")
                continue
            setattr(document, canonical, day)
        elif canonical == "superseded_by":
            if not isinstance(value, str) or not value.strip():
                warn(key, "must be the path or URL of the document that replaces this one")
                continue
            document.superseded_by = _resolve_reference(document.path, value.strip(), known_paths)

    review_in = normalised.get("review_in")
    if document.review_by is None and review_in and document.last_reviewed:
        document.review_by = _add_duration(document.last_reviewed, str(review_in[1]))
    if document.superseded_by and document.status is None:
        document.status = "superseded"


def _resolve_reference(path: str, target: str, known_paths: frozenset[str]) -> str:
    """A link from one document to another, as a path relative to the ingested folder when possible."""
    target = target.split("#", 1)[0]
    if "://" in target or not target:
        return target
    candidates = [
        PurePosixPath(target.lstrip("/")).as_posix(),
        _normalise(PurePosixPath(path).parent / target),
    ]
    for candidate in candidates:
        if candidate in known_paths:
            return candidate
    return candidates[1] if not target.startswith("/") else candidates[0]


def _normalise(path: PurePosixPath) -> str:
    parts: list[str] = []
    for part in path.parts:
        if part == "..":
            if parts:
                parts.pop()
        elif part not in (".", ""):
            parts.append(part)
    return "/".join(parts)


def _infer_title(path: str, body: str, fmt: str) -> str:
    in_fence = False
    lines = body.splitlines()
    for index, line in enumerate(lines):
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        match = _HEADING.match(line)
        if match and match.group(2).strip():
            return _plain(match.group(2))
        next_line = lines[index + 1] if index + 1 < len(lines) else ""
        if line.strip() and re.fullmatch(r"=+\s*", next_line):
            return _plain(line)
        if fmt == "text" and line.strip():
            return line.strip()[:120]
    stem = PurePosixPath(path).name.split(".")[0]
    return re.sub(r"[-_]+", " ", stem).strip() or path


def _plain(text: str) -> str:
    text = _LINK.sub(r"\1", text)
    return re.sub(r"[*_`]+", "", text).strip()


def _infer_kind(path: str, body: str) -> str | None:
    folders = [part.lower() for part in PurePosixPath(path).parts[:-1]]
    for folder in reversed(folders):
        for pattern, kind in _KIND_FOLDERS:
            if pattern.search(folder):
                return kind
    name = PurePosixPath(path).name.lower()
    if re.match(r"^(adr[-_]?)?\d{3,4}[-_]", name) and re.search(r"^#+\s*decision", body, re.I | re.M):
        return "decision"
    if "runbook" in name:
        return "runbook"
    return None


def _infer_adr_status(document: SourceDocument, known_paths: frozenset[str]) -> None:
    """Read the status from the common ADR formats: a `Status:` line or a `## Status` section."""
    head = document.body[:4000]
    found: str | None = None
    match = _STATUS_LINE.search(head)
    if match:
        found = match.group(1)
    else:
        section = _STATUS_SECTION.search(head)
        if section:
            found = next((line for line in section.group(1).splitlines() if line.strip()), None)
    if not found:
        return
    cleaned = _plain(found).strip(" .:-*[]").lower()
    first = re.split(r"[^a-z]+", cleaned.strip())[0] if cleaned.strip() else ""
    status = _STATUS_WORDS.get(first)
    if status is None:
        status = next(
            (value for word, value in _STATUS_WORDS.items() if re.search(rf"\b{word}\b", cleaned)), None
        )
    if document.status is None and status is not None:
        document.status = status
    if document.superseded_by is None and (status == "superseded" or "supersed" in cleaned):
        link = _LINK.search(found)
        if link:
            document.superseded_by = _resolve_reference(document.path, link.group(2), known_paths)


def _html_to_markdown(text: str) -> tuple[str | None, str, Counter[str]]:
    """HTML -> (title, Markdown-ish text keeping headings, paragraphs, lists and code, the hidden
    passages removed by reason). Parsed by html5lib, as a browser parses it."""
    from bs4 import BeautifulSoup

    from ingest.visible import remove_hidden, to_markdown

    soup = BeautifulSoup(text, "html5lib")
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    hidden = remove_hidden(soup).reasons
    return title, to_markdown(soup), hidden
