"""Action requests in plain words: "roll back fraud-scorer to version 12 in prod" -> rollback-model.

Deterministic (no LLM): an action verb at the very start names the action, and the action's own
parameter definitions (patterns, enums, types) pick the values out of the rest. Only a person's own
words are ever read; retrieved documents never reach this parser.

Every value the words give a parameter is read, not just the first: "roll back fraud-scorer staging
to version 2 in prod" names env twice, differently, and is refused with that reading (`conflicts`)
instead of running either one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from bot.actions.models import ActionSpec, ParamSpec
from bot.actions.policy.engine import ParamError, Policy, parse_key_values

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
_IDENTIFIER = re.compile(r"[-_/.:\d]")  # fraud-scorer, llm-gateway/openai-api-key: a name, not a word
_YES, _NO = ("yes", "true"), ("no", "false")


@dataclass(frozen=True)
class PlainRequest:
    """An action request read from a person's words: the action and the parameters understood.

    `conflicts` holds each parameter the words gave two or more different values ("staging … in prod"):
    such a request is refused with the reading shown, never run with one of them. `invisible` names the
    invisible characters (zero-width space, word joiner, soft hyphen …) in the words: what a person sees
    (`version 1<U+200B>2` looks like 12) is not what the parsers would read, so no value is read at all.
    """

    action: str
    raw: dict[str, str]
    conflicts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    invisible: tuple[str, ...] = ()  # code points (`U+200B`) that no reader sees: nothing is read then


def read_request(text: str, policy: Policy) -> PlainRequest | None:
    """The request a message starts with, or None when it is not one (then it is a question)."""
    # NFKC: a full-width `ｐｒｏｄ` or `ｅｎｖ＝ｐｒｏｄ` is the word it looks like, not a word to skip.
    words = " ".join(unicodedata.normalize("NFKC", text).translate(_QUOTES).split())
    for pattern, action in _VERBS:
        match = pattern.match(words)
        if match and action in policy.actions:
            values = read_values(policy.actions[action], words[match.end() :], match.group(0))
            break
    else:
        named = _NAMED.match(words)
        if named is None or named.group(1).lower() not in policy.actions:
            return None
        action = named.group(1).lower()
        try:
            values = {key: [value] for key, value in parse_key_values(words[named.end() :]).items()}
        except ParamError:  # words, or a name given twice: read them as words (conflicts included)
            values = read_values(policy.actions[action], words[named.end() :], "")
    raw = {name: found[0] for name, found in values.items()}
    if words.endswith("?") and _missing(policy.actions[action], raw):
        return None  # "rollback steps for fraud-scorer?" is a question, not an incomplete request
    invisible = invisible_characters(text)
    if invisible:
        return PlainRequest(action, {}, {}, invisible)
    conflicts = {name: tuple(found) for name, found in values.items() if len(found) > 1}
    return PlainRequest(action, raw, conflicts)


def invisible_characters(text: str) -> tuple[str, ...]:
    """The invisible format characters in a text (Unicode category Cf), as `U+200B`, sorted."""
    return tuple(sorted({f"U+{ord(c):04X}" for c in text if unicodedata.category(c) == "Cf"}))


def stated_conflicts(spec: ActionSpec, text: str) -> dict[str, tuple[str, ...]]:
    """Enum and number parameters the words of free phrasing give two different values.

    For a request an LLM proposed: its reading is one value each, but the person's words may name two
    ("back on v12 in staging, I mean prod"). Only the readers that do not guess are used here; in free
    phrasing any word could look like a name.
    """
    words = " ".join(unicodedata.normalize("NFKC", text).translate(_QUOTES).split())
    reliable = {p.name for p in spec.params if p.enum or p.type in ("integer", "number")}
    values = read_values(spec, words, "")
    return {name: tuple(found) for name, found in values.items() if name in reliable and len(found) > 1}


def read_values(spec: ActionSpec, rest: str, verb: str) -> dict[str, list[str]]:
    """Every different value the words give each parameter, in the order written (`key=value` first).

    Two values of one parameter are the same when they mean the same: `prod` and `production`,
    `PROD` and `prod`, `12` and `012`, `yes` and `true`.
    """
    params = {param.name: param for param in spec.params}
    found: dict[str, list[str]] = {}
    seen: dict[str, set[str]] = {}

    def add(param: ParamSpec, value: str) -> None:
        key = _meaning(param, value)
        if key not in seen.setdefault(param.name, set()):
            seen[param.name].add(key)
            found.setdefault(param.name, []).append(value)

    for match in _KEY_VALUE.finditer(rest):
        if (param := params.get(match.group(1))) is not None:
            add(param, _enum_value(param, match.group(2).strip("\"'")))
    rest = _KEY_VALUE.sub(" ", rest)
    reason = _REASON.search(rest)
    if reason is not None:
        if "reason" in params:
            add(params["reason"], reason.group(1).strip())
        rest = rest[: reason.start()]
    words = [word.strip(_STRIP) for word in rest.split()]
    taken = {w.lower() for w in words for p in spec.params if _enum_word(p, w)}  # env words are not names
    for param in spec.params:
        for value in _values(param, words, rest, verb, taken, given=param.name in found):
            add(param, value)
    return {param.name: found[param.name] for param in spec.params if param.name in found}


def _values(
    param: ParamSpec, words: list[str], rest: str, verb: str, taken: set[str], given: bool
) -> list[str]:
    """The values the words give one parameter, in order (repeats and synonyms included)."""
    if param.enum:
        return [_enum_value(param, w) for w in words if _enum_word(param, w)]
    if param.type == "boolean":
        values = []
        if re.search(r"disable|off\b", verb, re.IGNORECASE):
            values.append("no")
        elif re.search(r"enable|\bon\b", verb, re.IGNORECASE):
            values.append("yes")
        for match in re.finditer(rf"\boff\b|{_ON}", rest, re.IGNORECASE):
            values.append("no" if match.group(0).lower() == "off" else "yes")
        return values
    if param.type in ("integer", "number"):
        return _numbers(param.name, rest)
    if param.pattern is None:
        return []  # free text (a reason) is only taken from "because …" or key=value
    names = []
    for word in words:
        lowered = word.lower()
        if lowered in _FILLER or _NUMBER_WORD.match(lowered) or lowered in _SYNONYMS or lowered in taken:
            continue
        if re.fullmatch(param.pattern, lowered):
            names.append(lowered)
    # The first fitting word is the name ("roll back fraud-scorer quickly"); a later word counts as a
    # second name only when it looks like one (fraud-scorer churn-model), and after key=value, only then.
    first = [] if given or not names else names[:1]
    return first + [name for name in names[len(first) :] if _IDENTIFIER.search(name)]


def _meaning(param: ParamSpec, value: str) -> str:
    """What a value means, to tell a repeat from a conflict."""
    lowered = value.strip().lower()
    if param.type == "boolean" and lowered in _YES + _NO:
        return "yes" if lowered in _YES else "no"
    if param.type in ("integer", "number"):
        try:
            return str(Decimal(lowered).normalize())
        except InvalidOperation:
            return value
    return lowered if param.enum or param.pattern else value


def _enum_word(param: ParamSpec, word: str) -> bool:
    return param.enum is not None and _SYNONYMS.get(word.lower(), word.lower()) in param.enum


def _enum_value(param: ParamSpec, word: str) -> str:
    """The enum value a word names (`production` -> `prod`), or the word as written."""
    value = _SYNONYMS.get(word.lower(), word.lower())
    return value if param.enum is not None and value in param.enum else word


def _numbers(name: str, text: str) -> list[str]:
    """Every number the text gives a parameter of this name, in the order written."""
    patterns = []
    if "version" in name:
        patterns += [r"(?<![\w-])(?:version|ver|v)\s*#?\s*(\d+)\b", r"\bto\s+(\d+)\b(?!\s*%)"]
    if "replica" in name:
        patterns += [r"\b(\d+)\s*(?:replicas?|pods?|instances?)\b", r"\bto\s+(\d+)\b(?!\s*%)"]
    if "percent" in name or "traffic" in name:
        patterns.append(r"\b(\d+(?:\.\d+)?)\s*(?:%|percent\b|pct\b)")
    patterns.append(rf"\b{re.escape(name)}\s*(?:=|:|of|to|at)?\s*(\d+(?:\.\d+)?)\b")
    found = sorted(
        (match.start(1), match.group(1))
        for pattern in patterns
        for match in re.finditer(pattern, text, re.IGNORECASE)
    )
    return [number for _, number in found]


def _missing(spec: ActionSpec, raw: Mapping[str, str]) -> bool:
    return any(p.required and p.default is None and p.name not in raw for p in spec.params)


# ---- the flows


def starts_like_request(text: str) -> bool:
    """Whether the words begin with an action verb (used when the policy cannot be read to tell)."""
    return any(pattern.match(text) for pattern, _action in _VERBS)
