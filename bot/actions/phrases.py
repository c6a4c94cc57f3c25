"""Action requests in plain words: "roll back fraud-scorer to version 12 in prod" -> rollback-model.

Deterministic (no LLM): an action verb at the very start names the action, and the action's own
parameter definitions (patterns, enums, types) pick the values out of the rest. Only a person's own
words are ever read; retrieved documents never reach this parser.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from bot.actions.models import ActionSpec, ParamSpec
from bot.actions.policy import ParamError, Policy, parse_key_values

_QUOTES = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'"})  # Slack clients type smart quotes


# An action verb at the very start (after the mention) makes a message a request, and names the action.
_VERBS = tuple(
    (re.compile(rf"^(?:please\s+)?(?:{verbs})(?![\w-])", re.IGNORECASE), action)
    for verbs, action in (
        (r"roll[\s-]?back|revert", "rollback-model"),
        (r"promote", "promote-model"),
        (r"re-?train", "retrain-model"),
        (r"pause(?:\s+(?:the\s+)?agent)?", "pause-agent"),
        (r"scale(?:\s+(?:the\s+)?(?:service|deployment))?", "scale-service"),
        (r"rotate(?:\s+(?:the\s+)?secret)?", "rotate-secret"),
        (
            r"(?:set|toggle|enable|disable|turn\s+on|turn\s+off|switch\s+on|switch\s+off)"
            r"\s+(?:the\s+)?(?:feature[\s-])?flag|toggle",
            "toggle-feature-flag",
        ),
    )
)
_NAMED = re.compile(r"^(?:please\s+)?(?:run\s+)?([a-z][a-z0-9-]*)(?![\w-])", re.IGNORECASE)
_SYNONYMS = {"production": "prod", "prd": "prod", "stage": "staging", "stg": "staging"}
_FILLER = frozenset(
    re.findall(
        r"\S+",
        "the a an to in on at for of from with and back model models agent service deployment secret flag "
        "feature version ver env environment please now replicas replica pods percent traffic it its our "
        "my up down off registry alias",
    )
)
_NUMBER_WORD = re.compile(r"^(?:v|#)?\d+(?:\.\d+)?%?$")
_KEY_VALUE = re.compile(r"(?<!\S)([a-z_][a-z0-9_]*)=(\"[^\"]*\"|'[^']*'|\S+)", re.IGNORECASE)
_REASON = re.compile(r"\s*(?:,\s*)?\b(?:because|reason:|due to)\s+(.+)$", re.IGNORECASE | re.DOTALL)
_STRIP = ".,;:!?()[]{}\"'`"
_ON = r"\bon\b(?!\s+(?:staging|stage|stg|prod|production|prd)\b)"


@dataclass(frozen=True)
class PlainRequest:
    """An action request read from a person's words: the action and the parameters understood."""

    action: str
    raw: dict[str, str]


def read_request(text: str, policy: Policy) -> PlainRequest | None:
    """The request a message starts with, or None when it is not one (then it is a question)."""
    words = " ".join(text.translate(_QUOTES).split())
    for pattern, action in _VERBS:
        match = pattern.match(words)
        if match and action in policy.actions:
            rest = words[match.end() :]
            raw = understand(policy.actions[action], rest, match.group(0))
            break
    else:
        named = _NAMED.match(words)
        if named is None or named.group(1).lower() not in policy.actions:
            return None
        action = named.group(1).lower()
        try:
            raw = parse_key_values(words[named.end() :])
        except ParamError:
            raw = understand(policy.actions[action], words[named.end() :], "")
    if words.endswith("?") and _missing(policy.actions[action], raw):
        return None  # "rollback steps for fraud-scorer?" is a question, not an incomplete request
    return PlainRequest(action, raw)


def understand(spec: ActionSpec, rest: str, verb: str) -> dict[str, str]:
    """Parameters from plain words, guided by the action's parameter types, enums and patterns."""
    raw: dict[str, str] = {}
    names = {param.name for param in spec.params}
    for match in _KEY_VALUE.finditer(rest):
        if match.group(1) in names:
            raw[match.group(1)] = match.group(2).strip("\"'")
    rest = _KEY_VALUE.sub(" ", rest)
    reason = _REASON.search(rest)
    if reason is not None:
        if "reason" in names and "reason" not in raw:
            raw["reason"] = reason.group(1).strip()
        rest = rest[: reason.start()]
    words = [word.strip(_STRIP) for word in rest.split()]
    for param in spec.params:
        if param.name in raw:
            continue
        value = _value(param, words, rest, verb)
        if value is not None:
            raw[param.name] = value
    return raw


def _value(param: ParamSpec, words: list[str], rest: str, verb: str) -> str | None:
    if param.enum:
        return next((_SYNONYMS.get(w.lower(), w.lower()) for w in words if _enum_word(param, w)), None)
    if param.type == "boolean":
        if re.search(r"disable|off\b", verb, re.IGNORECASE) or re.search(r"\boff\b", rest, re.IGNORECASE):
            return "no"
        if re.search(r"enable|\bon\b", verb, re.IGNORECASE) or re.search(_ON, rest, re.IGNORECASE):
            return "yes"
        return None
    if param.type in ("integer", "number"):
        return _number(param.name, rest)
    if param.pattern is None:
        return None  # free text (a reason) is only taken from "because …" or key=value
    for word in words:
        lowered = word.lower()
        if lowered in _FILLER or _NUMBER_WORD.match(lowered) or lowered in _SYNONYMS:
            continue
        if re.fullmatch(param.pattern, lowered):
            return lowered
    return None


def _enum_word(param: ParamSpec, word: str) -> bool:
    return param.enum is not None and _SYNONYMS.get(word.lower(), word.lower()) in param.enum


def _number(name: str, text: str) -> str | None:
    patterns = []
    if "version" in name:
        patterns += [r"\b(?:version|ver|v)\s*#?\s*(\d+)\b", r"\bto\s+(\d+)\b(?!\s*%)"]
    if "replica" in name:
        patterns += [r"\b(\d+)\s*(?:replicas?|pods?|instances?)\b", r"\bto\s+(\d+)\b(?!\s*%)"]
    if "percent" in name or "traffic" in name:
        patterns.append(r"\b(\d+(?:\.\d+)?)\s*(?:%|percent\b|pct\b)")
    patterns.append(rf"\b{re.escape(name)}\s*(?:=|:|of|to|at)?\s*(\d+(?:\.\d+)?)\b")
    for pattern in patterns:
        match = re.search(pattern, text, re.IGNORECASE)
        if match:
            return match.group(1)
    return None


def _missing(spec: ActionSpec, raw: Mapping[str, str]) -> bool:
    return any(p.required and p.default is None and p.name not in raw for p in spec.params)


# ---- the flows


def starts_like_request(text: str) -> bool:
    """Whether the words begin with an action verb (used when the policy cannot be read to tell)."""
    return any(pattern.match(text) for pattern, _action in _VERBS)
