"""The policy file schema as written, and the checks of one written part that need no other part.

Pydantic checks the shape of each part (`_ActionFile`, `_RuleFile`, …). The functions here check what one
part means on its own: a parameter's bounds, an executor's settings, a rule's operands, a freeze window's
times. The loader (bot/actions/policy/files.py) checks references between parts and builds the `Policy`.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.actions.models import (
    ActionSpec,
    ApprovalRequirement,
    ExecutorSpec,
    Outcome,
    ParamSpec,
    RiskTier,
    Waiting,
)
from bot.actions.policy.rules import (
    DAYS,
    OPERATORS,
    WEEK_MINUTES,
    FreezeWindow,
    ParamTest,
    number_text,
    suggest,
    value_problem,
)
from bot.actions.policy.yaml_lines import Document, FieldPath, Problems
from bot.errors import ConfigurationError

PARAM_NAME = re.compile(r"[a-z_][a-z0-9_]*")
ENTRY_POINT = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
ENV_REF = re.compile(r"\$\{([^}]*)\}")
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
_PLACEHOLDER = re.compile(r"(?<!\{)\{[A-Za-z_][A-Za-z0-9_]*\}(?!\})")  # {name}, as command args write it

_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_KIND_FIELDS = {
    "webhook": {"url", "secret_env"},
    "command": {"program", "args"},
    "python": {"entry_point"},
    "mlflow": {"tracking_uri", "registry_uri", "model_param", "version_param", "alias"},
    "mcp": {"program", "args", "url", "tool", "token_env"},
}
# An MCP tool's name (the MCP specification: 1 to 128 of these characters)
MCP_TOOL = re.compile(r"[A-Za-z0-9_.-]{1,128}")


# ---- The file schema, as written: pydantic checks the shape; meaning is checked below and in the loader.


class _Written(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def listed(value: Any) -> Any:
    """Shorthand: a single item where a list is expected."""
    return [value] if isinstance(value, str | dict) else value


class _ActionFile(_Written):
    description: str
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    executor: ExecutorSpec
    risk: RiskTier = "medium"
    idempotent: bool = False
    runbook: str | None = None
    channel: str | None = Field(default=None, pattern=r"[CG][A-Z0-9]{2,30}")  # agents' cards go here

    @field_validator("params", mode="before")
    @classmethod
    def _named(cls, value: Any) -> Any:
        """Parameters are written as a mapping: the key is the name."""
        if not isinstance(value, dict):
            return value
        return {key: {"name": key, **spec} if isinstance(spec, dict) else spec for key, spec in value.items()}


class _FreezeFile(_Written):
    days: tuple[str, ...] | None = None
    start: str = Field(alias="from")
    end: str = Field(alias="to")
    timezone: str

    _as_list = field_validator("days", mode="before")(listed)


class _WhenFile(_Written):
    params: dict[str, Any] = Field(default_factory=dict)
    requester_in: tuple[str, ...] | None = None
    channel_in: tuple[str, ...] | None = None
    freeze: tuple[_FreezeFile, ...] | None = None

    _as_list = field_validator("requester_in", "channel_in", "freeze", mode="before")(listed)


class _RuleFile(_Written):
    name: str
    actions: tuple[str, ...]
    when: _WhenFile = Field(default_factory=_WhenFile)
    outcome: Outcome
    reason: str
    approval: ApprovalRequirement | None = None
    waiting: Waiting | None = None

    _as_list = field_validator("actions", mode="before")(listed)


# ---- One part at a time: what it means, checked without the rest of the policy


def check_param(doc: Document, path: FieldPath, spec: ParamSpec, problems: Problems) -> None:
    """Add to `problems` what is wrong with one parameter's spec: name, enum, bounds, pattern, default."""

    def bad(field: str, message: str) -> None:
        problems.add(doc, (*path, field), message)

    if not PARAM_NAME.fullmatch(spec.name):
        problems.add(doc, path, "parameter names are lowercase letters, digits and _ (typed as name=value)")
    if spec.enum is not None and spec.type != "string":
        bad("enum", f"enum is for string parameters; this one is {spec.type}")
    if spec.enum == ():
        bad("enum", "is empty; list the allowed values")
    for field in ("minimum", "maximum"):
        if getattr(spec, field) is not None and spec.type not in ("integer", "number"):
            bad(field, f"{field} is for integer and number parameters; this one is {spec.type}")
    if spec.minimum is not None and spec.maximum is not None and spec.minimum > spec.maximum:
        bad("maximum", f"is below the minimum {number_text(spec.minimum)}")
    if spec.pattern is not None:
        if spec.type != "string":
            bad("pattern", f"pattern is for string parameters; this one is {spec.type}")
        try:
            re.compile(spec.pattern)
        except re.error as error:
            bad("pattern", f"{spec.pattern!r} does not compile: {error}")
            return
    if spec.default is not None and (problem := value_problem(spec, spec.default)):
        bad("default", f"the default {problem}")


def check_executor(doc: Document, path: FieldPath, action: ActionSpec, problems: Problems) -> None:
    """Add to `problems` what is wrong with an action's executor settings, given the action's parameters."""
    executor = action.executor
    params = [spec.name for spec in action.params]
    for field in sorted(executor.model_fields_set):
        owners = [kind for kind, fields in _KIND_FIELDS.items() if field in fields]
        if owners and executor.kind not in owners:
            message = f"is for {' and '.join(owners)} executors, not {executor.kind}; remove it"
            problems.add(doc, (*path, field), message)
    needs = {"webhook": "url", "command": "program", "python": "entry_point"}.get(executor.kind)
    if needs is not None and not getattr(executor, needs):
        problems.add(doc, path, f"a {executor.kind} executor needs {needs}:")
    if executor.kind == "webhook" and executor.url:
        _check_url(doc, (*path, "url"), executor.url, problems)
    if executor.secret_env is not None and not ENV_NAME.fullmatch(executor.secret_env):
        problems.add(doc, (*path, "secret_env"), "is an environment variable name: capitals, digits and _")
    if executor.kind == "mcp":
        _check_mcp(doc, path, action, problems)
        return
    for index, arg in enumerate(executor.args):
        try:
            fields = [field for _, field, _, _ in string.Formatter().parse(arg) if field is not None]
        except ValueError:
            problems.add(doc, (*path, "args", index), "unbalanced braces; write {{ and }} for literal braces")
            continue
        for field in fields:
            if field not in params:
                message = f"{{{field}}} is not a parameter of {action.name}; use one of {', '.join(params)}"
                problems.add(doc, (*path, "args", index), message)
    if executor.kind == "python" and executor.entry_point and not ENTRY_POINT.fullmatch(executor.entry_point):
        problems.add(doc, (*path, "entry_point"), "write package.module:function")
    if executor.kind == "mlflow":
        for field in ("model_param", "version_param"):
            if (value := getattr(executor, field)) not in params:
                message = f"{value!r} is not a parameter of {action.name}; add it or set {field}:"
                problems.add(doc, (*path, field), message)
        if executor.alias is None and "alias" not in params:
            problems.add(doc, path, "an mlflow executor needs alias: (such as production) or an alias param")


def _check_mcp(doc: Document, path: FieldPath, action: ActionSpec, problems: Problems) -> None:
    """An mcp executor: exactly one of program and url, a tool name MCP allows, args as written."""
    executor = action.executor
    if not executor.program and not executor.url:
        message = "an mcp executor needs program: (a server run over stdio) or url: (streamable HTTP)"
        problems.add(doc, path, message)
    if executor.program and executor.url:
        problems.add(doc, (*path, "url"), "give program: or url:, not both; each names the MCP server")
    if executor.url:
        _check_url(doc, (*path, "url"), executor.url, problems)
    tool = executor.tool if executor.tool is not None else action.name
    if not MCP_TOOL.fullmatch(tool):
        field = (*path, "tool") if executor.tool is not None else path
        problems.add(doc, field, f"{tool!r} is not an MCP tool name: 1 to 128 letters, digits, _, - and .")
    if executor.token_env is not None:
        if not ENV_NAME.fullmatch(executor.token_env):
            problems.add(doc, (*path, "token_env"), "is an environment variable name: capitals, digits and _")
        if not executor.url:
            message = "is for url: servers; a program gets its variables through pass_env:"
            problems.add(doc, (*path, "token_env"), message)
    if executor.args and not executor.program:
        problems.add(doc, (*path, "args"), "is for program: servers; remove it")
    for index, arg in enumerate(executor.args):
        if _PLACEHOLDER.search(arg):
            message = "an mcp server's args are passed as written; parameters reach the tool as its arguments"
            problems.add(doc, (*path, "args", index), message)


def _check_url(doc: Document, path: FieldPath, url: str, problems: Problems) -> None:
    names = ENV_REF.findall(url)
    for name in names:
        if not ENV_NAME.fullmatch(name):
            problems.add(doc, path, f"${{{name}}} is not an environment variable name: capitals, digits, _")
    if not names and not url.startswith(("https://", "http://")):
        problems.add(doc, path, "write https://… or ${ENV_NAME}, expanded when the action runs")


def param_tests(
    name: str, condition: Any, specs: list[ActionSpec], any_action: bool
) -> Iterable[tuple[ParamTest | None, str | None, FieldPath]]:
    """Each test of one `params:` entry, or the problem with it and where (relative to the entry)."""
    found = [param for action in specs for param in action.params if param.name == name]
    lacking = [action.name for action in specs if all(param.name != name for param in action.params)]
    if not found or (lacking and not any_action):
        listing = "; ".join(f"{a.name} has {', '.join(p.name for p in a.params) or 'none'}" for a in specs)
        subject = ", ".join(lacking) if not any_action else "any action"
        yield None, f"{name!r} is not a parameter of {subject} ({listing})", ()
        return
    if isinstance(condition, dict):
        operations, nested = list(condition.items()), True
    else:
        operations, nested = [("in" if isinstance(condition, list) else "eq", condition)], False
    if not operations:
        yield None, f"no operator; write {name}: {{op: value}} with op one of {', '.join(OPERATORS)}", ()
    for op, value in operations:
        at: FieldPath = (op,) if nested else ()
        if op not in OPERATORS:
            yield (
                None,
                f"unknown operator {op!r}{suggest(op, OPERATORS)}; use one of {', '.join(OPERATORS)}",
                at,
            )
            continue
        problem = _operand_problem(op, value, found)
        operand = tuple(value) if op in ("in", "not_in") and isinstance(value, list) else value
        yield (None, problem, at) if problem else (ParamTest(name, op, operand), None, at)


def _operand_problem(op: str, value: Any, specs: list[ParamSpec]) -> str | None:
    if op == "matches":
        if not isinstance(value, str):
            return "matches needs a regular expression in quotes"
        try:
            re.compile(value)
        except re.error as error:
            return f"the pattern {value!r} does not compile: {error}"
        wrong = next((spec for spec in specs if spec.type != "string"), None)
        return f"matches is for string parameters; {wrong.name} is {wrong.type}" if wrong else None
    if op in ("in", "not_in") and (not isinstance(value, list) or not value):
        return f"{op} needs a non-empty list, such as {op}: [staging, prod]"
    if op in ("gt", "ge", "lt", "le"):
        wrong = next((spec for spec in specs if spec.type not in ("integer", "number")), None)
        if wrong is not None:
            return f"{op} compares numbers; {wrong.name} is a {wrong.type} parameter"
    for spec in specs:
        for item in value if op in ("in", "not_in") else [value]:
            if problem := value_problem(spec, item, check_range=op in ("eq", "ne", "in", "not_in")):
                return f"{op}: {problem}"
    return None


class FieldError(ConfigurationError):
    """A written part is wrong in one field; `field` names it, `message` says what to do."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def freeze_window(written: _FreezeFile) -> FreezeWindow:
    """A freeze window from its written form; raises FieldError naming the field at fault."""
    try:
        zone = ZoneInfo(written.timezone)
    except (KeyError, ValueError, OSError) as error:
        message = f"unknown timezone {written.timezone!r}; use an IANA name such as Europe/Berlin or UTC"
        raise FieldError("timezone", message) from error
    start_day, start = _moment(written.start, "from", allow_24=False)
    end_day, end = _moment(written.end, "to", allow_24=True)
    if (start_day is None) != (end_day is None):
        message = "give both from and to a day (fri 17:00, mon 08:00), or neither and list days:"
        raise FieldError("to" if start_day is not None else "from", message)
    if start_day is not None and end_day is not None:
        if written.days is not None:
            raise FieldError("days", "remove days: when from and to name their days (fri 17:00 … mon 08:00)")
        begin = start_day * 1440 + start
        length = (end_day * 1440 + end - begin) % WEEK_MINUTES
        if length == 0:
            raise FieldError("to", "is the same moment as from; a window needs a length")
        return FreezeWindow(((begin, length),), zone, f"{written.start} – {written.end} {written.timezone}")
    if written.days == ():
        raise FieldError("days", "is empty; remove it to mean every day")
    days: list[int] = []
    for text in written.days or DAYS:
        if (day := _day(text)) is None:
            raise FieldError("days", f"unknown day {text!r}; use {', '.join(DAYS)}")
        days.append(day)
    if start == end:
        raise FieldError("to", "is the same time as from; a window needs a length")
    length = end - start if end > start else end + 1440 - start
    spans = tuple((day * 1440 + start, length) for day in sorted(set(days)))
    named = "daily" if written.days is None else ", ".join(DAYS[day] for day in sorted(set(days)))
    return FreezeWindow(spans, zone, f"{named} {written.start}–{written.end} {written.timezone}")


def _moment(text: str, field: str, *, allow_24: bool) -> tuple[int | None, int]:
    """(weekday or None, minute of the day) from `17:00` or `fri 17:00`."""
    match = re.fullmatch(r"(?:([A-Za-z]+)\s+)?(\d{1,2}):(\d{2})", text.strip())
    if match is None:
        raise FieldError(
            field, f"{text!r} is not a time; write HH:MM such as 17:00, or a day and time: fri 17:00"
        )
    day = None
    if match.group(1) is not None and (day := _day(match.group(1))) is None:
        raise FieldError(field, f"unknown day {match.group(1)!r}; use {', '.join(DAYS)}")
    hour, minute = int(match.group(2)), int(match.group(3))
    if allow_24 and (hour, minute) == (24, 0):
        return day, 1440
    if hour > 23 or minute > 59:
        raise FieldError(
            field, f"{text!r} is not a clock time; hours 00-23, minutes 00-59{' (or 24:00)' * allow_24}"
        )
    return day, hour * 60 + minute


def _day(text: str) -> int | None:
    lowered = text.strip().lower()
    return next(
        (
            index
            for index, (short, full) in enumerate(zip(DAYS, _FULL_DAYS, strict=True))
            if lowered in (short, full)
        ),
        None,
    )
