"""Masking of secrets and personal data before text is logged, audited, embedded or sent to an LLM.

Each finding is replaced by `[redacted:KIND]`. The patterns cover the common credential formats (Slack,
cloud providers, code hosts, LLM providers, payment keys, JWTs, PEM private keys, passwords in URLs and
in `password=` assignments) and personal data (e-mail addresses, phone numbers). They are deliberately
specific, so that dates, versions, IP addresses and Slack ids are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Token edges: not inside a longer word, but `_` may touch them (Slack's italics: `_AKIA…_`), unlike `\b`.
_START, _END = r"(?<![A-Za-z0-9])", r"(?![A-Za-z0-9])"

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern, flags))
    for kind, pattern, flags in (
        (
            "private-key",
            # the base64 body (real or JSON-escaped line breaks) and the END line when there is one
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:[A-Za-z0-9+/=\s]|\\n)*"
            r"(?:-----END [A-Z0-9 ]*PRIVATE KEY-----)?",
            0,
        ),
        ("jwt", _START + r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}", 0),
        ("slack-token", _START + r"x(?:ox[abprseo]|app)-[A-Za-z0-9-]{10,}", 0),
        ("slack-webhook", r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]+", 0),
        ("aws-access-key", _START + r"(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}" + _END, 0),
        (
            "aws-secret-key",
            r"(?i)(?<=aws_secret_access_key)(\s*[:=]\s*['\"]?)[A-Za-z0-9/+]{40}",
            0,
        ),
        ("gcp-api-key", _START + r"AIza[0-9A-Za-z_-]{35}" + _END, 0),
        ("github-token", _START + r"(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})" + _END, 0),
        ("llm-api-key", _START + r"sk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}", 0),
        ("stripe-key", _START + r"[rsp]k_(?:live|test)_[A-Za-z0-9]{16,}" + _END, 0),
        ("azure-connection-string", r"(?i)AccountKey=[A-Za-z0-9+/=]{20,}", 0),
        ("url-password", r"(?<=://)([^/\s:@]+):[^/\s@]+(?=@)", 0),
        (
            "password",
            # a value with a digit or a symbol: "password: rotate it monthly" is prose, not a password
            r"(?i)\b(password|passwd|secret|api[_-]?key|access[_-]?token|client[_-]?secret)"
            r"([ \t]*[:=][ \t]*)(['\"]?)(?=[^\s'\"]*[\d_/+=$-])[^\s'\"]{4,}",
            0,
        ),
        ("email", r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b", 0),
        (
            "phone",
            r"(?<![\w.+-])(?:\+\d{1,3}[\s.-]?\d{1,4}(?:[\s.-]?\d{2,4}){2,4}"  # +49 30 1234 5678
            r"|\(\d{3}\)\s?\d{3}[\s.-]\d{4}"  # (415) 555-0134
            r"|\d{3}[\s.-]\d{3}[\s.-]\d{4})(?![\w-])",  # 415-555-0134
            0,
        ),
    )
)


def _replacement(kind: str, marker: str) -> Any:
    if kind == "url-password":
        return lambda match: f"{match.group(1)}:{marker}"
    if kind == "password":
        return lambda match: f"{match.group(1)}{match.group(2)}{match.group(3)}{marker}"
    if kind == "aws-secret-key":
        return lambda match: f"{match.group(1)}{marker}"
    return marker


PERSONAL_KINDS = frozenset({"email", "phone"})  # personal data; every other kind is a credential

_MARKED = tuple((pattern, _replacement(kind, f"[redacted:{kind}]")) for kind, pattern in _PATTERNS)
_REMOVED = tuple((pattern, _replacement(kind, " ")) for kind, pattern in _PATTERNS)
_CREDENTIALS = tuple(
    (kind, pattern, _replacement(kind, f"[redacted:{kind}]"))
    for kind, pattern in _PATTERNS
    if kind not in PERSONAL_KINDS
)


def _apply(text: str, table: tuple[tuple[re.Pattern[str], Any], ...]) -> str:
    for pattern, replacement in table:
        text = pattern.sub(replacement, text)
    return text


def redact(text: str) -> str:
    """`text` with every secret and personal datum replaced by `[redacted:KIND]`."""
    return _apply(text, _MARKED) if text else text


def without_secrets(text: str) -> str:
    """`text` with every secret and personal datum removed (for search: a marker would be searched for)."""
    return _apply(text, _REMOVED) if text else text


def findings(text: str) -> list[str]:
    """The kinds found in `text`, in pattern order (for tests and reports)."""
    return [kind for kind, pattern in _PATTERNS for _ in pattern.finditer(text)]


def redact_data(value: Any) -> Any:
    """Every string inside a JSON-like value, redacted (mapping keys are kept)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {key: redact_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(item) for item in value]
    return value


@dataclass(frozen=True)
class Masked:
    """Text with its credentials masked, and the kinds that were (none: the text is unchanged)."""

    text: str
    kinds: tuple[str, ...] = ()


def mask_secrets(text: str) -> Masked:
    """`text` with every credential (not personal data) replaced by `[redacted:KIND]`.

    For what people type that Steward stores or posts again: questions, reasons, replies, action
    parameters. Personal data stays, since the person chose to write it there.
    """
    kinds: list[str] = []
    for kind, pattern, replacement in _CREDENTIALS:
        text, count = pattern.subn(replacement, text)
        if count:
            kinds.append(kind)
    return Masked(text, tuple(kinds))


def masked_notice(
    kinds: Sequence[str], where: str = "your message", exposed: str = "it was sent to Slack"
) -> str:
    """What to tell the person whose text carried a credential: it was masked, and it must be rotated."""
    return (
        f"I masked what looks like a secret ({', '.join(kinds)}) in {where} before storing or posting "
        f"anything. But {exposed}, so treat it as leaked: rotate it."
    )
