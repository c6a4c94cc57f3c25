"""Policy files: `policies/*.yaml` loaded into a checked `Policy` that knows the file and line of every part.

The format and its semantics are documented in policies/README.md. Loading is strict: every problem in
every file is collected and reported at once, each naming file, line and field, so one run of
`steward policy check` shows the whole list.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import math
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.actions.models import ActionSpec, ApprovalRequirement, ExecutorSpec, Outcome, ParamSpec, RiskTier

Operator = Literal["eq", "ne", "in", "not_in", "gt", "ge", "lt", "le", "matches"]
OPERATORS: tuple[Operator, ...] = get_args(Operator)
ANY_ACTION = "*"
FieldPath = tuple[str | int, ...]

USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
USERGROUP_ID = re.compile(r"S[A-Z0-9]{2,}")
CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,}")
# Action and group names are typed in Slack and on the command line: keep them plain.
NAME = re.compile(r"[a-z][a-z0-9-]*")
PARAM_NAME = re.compile(r"[a-z_][a-z0-9_]*")
ENTRY_POINT = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
ENV_REF = re.compile(r"\$\{([^}]*)\}")
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WEEK = 7 * 24 * 60
_SYMBOLS = {"eq": "==", "ne": "!=", "gt": ">", "ge": ">=", "lt": "<", "le": "<=", "in": "in"}
_KIND_FIELDS = {
    "webhook": {"url", "secret_env"},
    "command": {"program", "args"},
    "python": {"entry_point"},
    "mlflow": {"tracking_uri", "registry_uri", "model_param", "version_param", "alias"},
}


class PolicyError(Exception):
    """The policy files cannot be used; `problems` lists every one as `file, line N: field: what to do`."""

    def __init__(self, folder: Path, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        header = f"{count} problem{'s' if count != 1 else ''} in the policy files in {folder}:"
        super().__init__("\n".join([header, *(f"  {problem}" for problem in self.problems)]))


@dataclass(frozen=True, slots=True)
class Source:
    """Where a part of the policy is written."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class ParamTest:
    """`param op value`; false when the request does not carry the parameter, whatever the operator."""

    param: str
    op: Operator
    value: Any

    def holds(self, params: Mapping[str, Any]) -> bool:
        """Whether the request's parameters pass this test."""
        value = params.get(self.param)
        if value is None:
            return False
        try:
            if self.op == "matches":
                return isinstance(value, str) and re.fullmatch(self.value, value) is not None
            return bool(_COMPARE[self.op](value, self.value))
        except TypeError:  # a request built by hand with a value of the wrong type never matches
            return False

    def __str__(self) -> str:
        if self.op in ("in", "not_in"):
            values = ", ".join(str(value) for value in self.value)
            return f"{self.param} {'not in' if self.op == 'not_in' else 'in'} [{values}]"
        if self.op == "matches":
            return f"{self.param} matches {self.value!r}"
        return f"{self.param} {_SYMBOLS[self.op]} {self.value}"


_COMPARE: dict[str, Any] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "in": lambda a, b: a in b,
    "not_in": lambda a, b: a not in b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}


@dataclass(frozen=True, slots=True)
class FreezeWindow:
    """Weekly local wall-clock spans: (start minute counted from Monday 00:00, length in minutes)."""

    spans: tuple[tuple[int, int], ...]
    zone: ZoneInfo
    text: str

    def local(self, now: dt.datetime) -> dt.datetime:
        """`now` on the window's wall clock; a naive `now` is taken as UTC."""
        aware = now if now.tzinfo is not None else now.replace(tzinfo=dt.UTC)
        try:
            return aware.astimezone(self.zone)
        except OverflowError:  # only at year 1 or 9999; no real request is there
            return aware

    def contains(self, now: dt.datetime) -> bool:
        """Whether `now` is in the window, judged on the local wall clock (so the window follows DST)."""
        local = self.local(now)
        minute = local.weekday() * 1440 + local.hour * 60 + local.minute
        return any((minute - start) % _WEEK < length for start, length in self.spans)


@dataclass(frozen=True, slots=True)
class When:
    """A rule's conditions; all that are present must hold."""

    params: tuple[ParamTest, ...] = ()
    requester_in: tuple[str, ...] | None = None
    channel_in: tuple[str, ...] | None = None
    freeze: tuple[FreezeWindow, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: the actions it covers, its conditions and its outcome."""

    name: str
    actions: tuple[str, ...]
    when: When
    outcome: Outcome
    reason: str
    approval: ApprovalRequirement | None
    source: Source

    def covers(self, action: str) -> bool:
        """Whether the rule is about this action at all."""
        return ANY_ACTION in self.actions or action in self.actions


@dataclass(frozen=True)
class Policy:
    """The loaded policy: the action catalog, the ordered rules, the groups and the version that decided."""

    actions: Mapping[str, ActionSpec]
    rules: tuple[Rule, ...]
    groups: Mapping[str, tuple[str, ...]]
    version: str
    action_sources: Mapping[str, Source]
    files: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    def rule(self, name: str) -> Rule | None:
        """The rule with this name, if any."""
        return next((rule for rule in self.rules if rule.name == name), None)


def value_problem(spec: ParamSpec, value: Any, *, check_range: bool = True) -> str | None:
    """Why `value` is not a valid value of the parameter, or None when it is."""
    kind = spec.type
    if kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        return f"{value!r} is not an integer"
    if kind == "number" and (
        isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
    ):
        return f"{value!r} is not a number"
    if kind == "boolean" and not isinstance(value, bool):
        return f"{value!r} is not a boolean; use yes, no, true or false"
    if kind == "string" and not isinstance(value, str):
        return f"{value!r} is not a string"
    if spec.enum is not None and value not in spec.enum:
        return f"{value!r} must be one of {', '.join(spec.enum)}"
    too_low = spec.minimum is not None and value < spec.minimum
    if check_range and (too_low or (spec.maximum is not None and value > spec.maximum)):
        return f"{value} is out of range; must be {range_text(spec)}"
    if spec.pattern is not None and isinstance(value, str):
        try:
            if re.fullmatch(spec.pattern, value) is None:
                return f"{value!r} does not match the pattern {spec.pattern}"
        except re.error:
            return f"the pattern {spec.pattern!r} does not compile; fix the policy"
    return None


def range_text(spec: ParamSpec) -> str:
    """`between 1 and 100`, `at least 1` or `at most 100`."""
    low, high = _number(spec.minimum), _number(spec.maximum)
    if spec.minimum is not None and spec.maximum is not None:
        return f"between {low} and {high}"
    return f"at least {low}" if spec.minimum is not None else f"at most {high}"


def _number(value: float | None) -> str:
    return str(int(value)) if value is not None and float(value).is_integer() else str(value)


def expand_env(text: str, environ: Mapping[str, str]) -> str:
    """Replace each `${NAME}` with the variable's value; executors call this at run time, never the loader."""
    missing = [name for name in ENV_REF.findall(text) if name not in environ]
    if missing:
        raise ValueError(
            f"environment variable {missing[0]} is not set; {text!r} needs it. Set it and retry."
        )
    return ENV_REF.sub(lambda match: environ[match.group(1)], text)


def policy_version(files: Iterable[tuple[str, bytes]]) -> str:
    """sha256 over each file's name and bytes, in file-name order, so any edit or rename changes it."""
    digest = hashlib.sha256()
    for name, data in sorted(files):
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def suggest(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` when a choice is close, else ``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


def format_path(path: FieldPath) -> str:
    """`rules[2].when.params.env`."""
    text = ""
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else key)
    return text


# ---- The file schema, as written. Pydantic checks the shape; the loader checks meaning and references.


class _Written(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _listed(value: Any) -> Any:
    """Shorthand: a single item where a list is expected."""
    return [value] if isinstance(value, str | dict) else value


class _ActionFile(_Written):
    description: str
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    executor: ExecutorSpec
    risk: RiskTier = "medium"
    idempotent: bool = False
    runbook: str | None = None

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

    _as_list = field_validator("days", mode="before")(_listed)


class _WhenFile(_Written):
    params: dict[str, Any] = Field(default_factory=dict)
    requester_in: tuple[str, ...] | None = None
    channel_in: tuple[str, ...] | None = None
    freeze: tuple[_FreezeFile, ...] | None = None

    _as_list = field_validator("requester_in", "channel_in", "freeze", mode="before")(_listed)


class _RuleFile(_Written):
    name: str
    actions: tuple[str, ...]
    when: _WhenFile = Field(default_factory=_WhenFile)
    outcome: Outcome
    reason: str
    approval: ApprovalRequirement | None = None

    _as_list = field_validator("actions", mode="before")(_listed)


_TOP_LEVEL = ("groups", "actions", "rules")
_SHAPES = {
    "model_type": "must be a mapping (name: value)",
    "dict_type": "must be a mapping (name: value)",
    "tuple_type": "must be a list, such as [a, b]",
    "list_type": "must be a list, such as [a, b]",
}


# ---- YAML with line numbers


class _Document:
    """One policy file's data, with the line of every key and list item."""

    def __init__(self, display: str) -> None:
        self.display = display
        self.lines: dict[FieldPath, int] = {(): 1}

    def line(self, path: FieldPath) -> int:
        """The line of the deepest part of `path` that exists in the file."""
        for end in range(len(path), -1, -1):
            if (line := self.lines.get(path[:end])) is not None:
                return line
        return 1


class _Problems:
    def __init__(self) -> None:
        self.items: list[tuple[str, int, str]] = []

    def add(self, doc: _Document, path: FieldPath, message: str, *, at: FieldPath | None = None) -> None:
        """Record a problem shown at field `path`, on the line of `at` (default: `path`)."""
        line = doc.line(path if at is None else at)
        field = f"{format_path(path)}: " if path else ""
        item = (doc.display, line, f"{doc.display}, line {line}: {field}{message}")
        if item not in self.items:
            self.items.append(item)

    def texts(self) -> list[str]:
        """In file-name order (the order files are read), then by line."""
        return [text for _, _, text in sorted(self.items, key=lambda item: item[:2])]


def _read_yaml(text: str, doc: _Document, problems: _Problems) -> Any:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        doc.lines[("yaml",)] = mark.line + 1 if mark else 1
        problems.add(
            doc, (), f"not valid YAML: {error.problem or error}; check indentation and quoting", at=("yaml",)
        )
        return None
    except yaml.YAMLError as error:
        problems.add(doc, (), f"not valid YAML: {error}")
        return None
    return None if node is None else _to_data(node, (), doc, problems, yaml.SafeLoader(""))


def _to_data(
    node: yaml.Node, path: FieldPath, doc: _Document, problems: _Problems, loader: yaml.SafeLoader
) -> Any:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # applies `<<:` merge keys, so anchors work as in any YAML tool
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else None
            if key is None:
                problems.add(doc, path, f"line {key_node.start_mark.line + 1}: keys must be plain words")
                continue
            if key in result:
                first = doc.lines[(*path, key)]
                doc.lines[(*path, key, "again")] = key_node.start_mark.line + 1
                problems.add(
                    doc, (*path, key), f"duplicate key (first at line {first})", at=(*path, key, "again")
                )
                continue
            doc.lines[(*path, key)] = key_node.start_mark.line + 1
            result[key] = _to_data(value_node, (*path, key), doc, problems, loader)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            doc.lines[(*path, index)] = item.start_mark.line + 1
            items.append(_to_data(item, (*path, index), doc, problems, loader))
        return items
    # YAML 1.1 reads an unquoted 17:00 as the base-60 integer 1020; a policy always means the clock time.
    if node.tag == "tag:yaml.org,2002:int" and ":" in str(node.value):
        return str(node.value)
    return loader.construct_object(node, deep=True)


def _data_path(data: Any, loc: Iterable[str | int]) -> FieldPath:
    """The part of a pydantic error location that exists in the data (drops union tags and missing keys)."""
    path: list[str | int] = []
    for key in loc:
        in_dict = isinstance(data, dict) and key in data
        if not (in_dict or (isinstance(data, list) and isinstance(key, int) and 0 <= key < len(data))):
            continue
        data = data[key]
        path.append(key)
    return tuple(path)


def _fields_at(model: type[BaseModel], loc: Iterable[str | int]) -> list[str]:
    """The field names of the model found by following `loc` from `model`, to list what is valid."""
    current: type[BaseModel] | None = model
    for key in loc:
        if current is None:
            return []
        names = {info.alias or name: info for name, info in current.model_fields.items()}
        if key in names:
            current = _model_in(names[key].annotation)
    return [] if current is None else [info.alias or name for name, info in current.model_fields.items()]


_M = TypeVar("_M", bound=BaseModel)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((model for arg in get_args(annotation) if (model := _model_in(arg))), None)


def _validate(model: type[_M], data: Any, doc: _Document, path: FieldPath, problems: _Problems) -> _M | None:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        for item in error.errors():
            loc = item["loc"]
            found = (*path, *_data_path(data, loc))
            if item["type"] == "missing":
                problems.add(doc, found, f"missing required field {loc[-1]!r}")
            elif item["type"] == "extra_forbidden":
                # A parameter's name is its key, so `name` is not offered as a field to write.
                valid = [
                    name for name in _fields_at(model, loc[:-1]) if name != "name" or "params" not in loc
                ]
                hint = f"{suggest(str(loc[-1]), valid)}; valid fields: {', '.join(valid)}" if valid else ""
                problems.add(doc, found[:-1], f"unknown field {loc[-1]!r}{hint}", at=found)
            elif item["type"] == "literal_error":
                problems.add(doc, found, f"{item['input']!r} is not allowed; use {item['ctx']['expected']}")
            else:
                # Pydantic names our private classes ("instance of _WhenFile"); say it in YAML terms.
                message = _SHAPES.get(item["type"], item["msg"].removeprefix("Value error, "))
                shown = item["input"]
                got = f" (got {shown!r})" if not isinstance(shown, dict | list) else ""
                if item["type"] == "string_type" and isinstance(shown, bool):
                    got += "; put it in quotes: YAML reads a bare yes, no, on or off as true or false"
                problems.add(doc, found, f"{message[:1].lower()}{message[1:]}{got}")
        return None


# ---- Loading: read every file, then check meaning and cross references, then build the Policy.


class _FieldError(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def load_policy(folder: Path, *, knowledge_dir: Path | None = None) -> Policy:
    """Load and check every `*.yaml` in `folder` (file-name order); raise `PolicyError` listing all problems.

    Runbook paths are checked against `knowledge_dir` (default: `knowledge/` beside the folder, when it
    exists); a missing runbook is a warning in `Policy.warnings`, not an error.
    """
    if knowledge_dir is None and (folder.parent / "knowledge").is_dir():
        knowledge_dir = folder.parent / "knowledge"
    return _Loader(folder, knowledge_dir).load()


def check_report(folder: Path, *, knowledge_dir: Path | None = None) -> tuple[int, str]:
    """What `steward policy check` prints and its exit code: 0 with a summary, 1 with every problem."""
    try:
        policy = load_policy(folder, knowledge_dir=knowledge_dir)
    except PolicyError as error:
        return 1, str(error)
    summary = (
        f"policies OK: {len(policy.actions)} actions, {len(policy.rules)} rules, {len(policy.groups)} groups "
        f"in {len(policy.files)} files, version {policy.version[:12]}…"
    )
    return 0, "\n".join([summary, *(f"warning: {warning}" for warning in policy.warnings)])


class _Loader:
    def __init__(self, folder: Path, knowledge_dir: Path | None) -> None:
        self.folder = folder
        self.knowledge_dir = knowledge_dir
        self.problems = _Problems()
        self.warnings = _Problems()
        self.groups: dict[str, tuple[str, ...]] = {}
        self.group_at: dict[str, tuple[_Document, FieldPath]] = {}
        self.actions: dict[str, ActionSpec] = {}
        self.action_at: dict[str, tuple[_Document, FieldPath]] = {}
        self.written_rules: list[tuple[_Document, FieldPath, _RuleFile]] = []
        self.rule_at: dict[str, Source] = {}
        self.rules: list[Rule] = []

    def load(self) -> Policy:
        if not self.folder.is_dir():
            raise PolicyError(
                self.folder, [f"{self.folder} is not a folder; pass the folder of *.yaml policy files"]
            )
        paths = sorted(self.folder.glob("*.yaml"), key=lambda path: path.name)
        if not paths:
            raise PolicyError(
                self.folder, [f"{self.folder} has no *.yaml policy files; see policies/README.md"]
            )
        files = [(path.name, path.read_bytes()) for path in paths]
        for stray in sorted(self.folder.glob("*.yml")):
            self.warnings.add(
                _Document(f"{self.folder.name}/{stray.name}"), (), "ignored: rename it to *.yaml"
            )
        for name, data in files:
            self._read_file(_Document(f"{self.folder.name}/{name}"), data)
        self._check_groups()
        for name, action in self.actions.items():
            self._check_action(*self.action_at[name], action)
        for doc, path, written in self.written_rules:
            self._compile_rule(doc, path, written)
        if self.problems.items:
            raise PolicyError(self.folder, self.problems.texts())
        return Policy(
            actions=dict(self.actions),
            rules=tuple(self.rules),
            groups=dict(self.groups),
            version=policy_version(files),
            action_sources={
                name: Source(doc.display, doc.line(path)) for name, (doc, path) in self.action_at.items()
            },
            files=tuple(f"{self.folder.name}/{name}" for name, _ in files),
            warnings=tuple(self.warnings.texts()),
        )

    # -- reading

    def _read_file(self, doc: _Document, data: bytes) -> None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            self.problems.add(
                doc, (), f"not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8"
            )
            return
        content = _read_yaml(text, doc, self.problems)
        if content is None:
            return  # an empty file (or only comments) is allowed; a YAML error is already reported
        if not isinstance(content, dict):
            self.problems.add(doc, (), "a policy file is a mapping with groups:, actions: and/or rules:")
            return
        for key in content:
            if key not in _TOP_LEVEL:
                self.problems.add(
                    doc, (key,), f"unknown section{suggest(key, _TOP_LEVEL)}; use groups, actions or rules"
                )
        for section, kind in (("groups", dict), ("actions", dict), ("rules", list)):
            value = content.get(section)
            if value is not None and not isinstance(value, kind):
                shape = "a list (order matters)" if kind is list else "a mapping of name -> definition"
                self.problems.add(doc, (section,), f"must be {shape}")
                content[section] = None
        for name, members in (content.get("groups") or {}).items():
            self._read_group(doc, ("groups", name), name, members)
        for name, spec in (content.get("actions") or {}).items():
            self._read_action(doc, ("actions", name), name, spec)
        for index, rule in enumerate(content.get("rules") or []):
            if not isinstance(rule, dict):
                self.problems.add(
                    doc, ("rules", index), "a rule is a mapping with name, actions, outcome and reason"
                )
            elif (written := _validate(_RuleFile, rule, doc, ("rules", index), self.problems)) is not None:
                self.written_rules.append((doc, ("rules", index), written))

    def _read_group(self, doc: _Document, path: FieldPath, name: str, members: Any) -> None:
        if not NAME.fullmatch(name):
            self.problems.add(
                doc, path, "group names are lowercase letters, digits and dashes, starting with a letter"
            )
        members = _listed(members) if members is not None else []
        if not isinstance(members, list) or not all(isinstance(member, str) for member in members):
            self.problems.add(
                doc, path, "list the members: Slack user ids (U…), user group ids (S…) or group names"
            )
            return
        if name in self.group_at:
            first = self.group_at[name]
            self.problems.add(
                doc,
                path,
                f"group {name!r} is already defined at {first[0].display}:{first[0].line(first[1])}",
            )
            return
        self.groups[name] = tuple(members)
        self.group_at[name] = (doc, path)

    def _read_action(self, doc: _Document, path: FieldPath, name: str, spec: Any) -> None:
        if name in self.action_at:
            first = self.action_at[name]
            where = f"{first[0].display}:{first[0].line(first[1])}"
            self.problems.add(
                doc, path, f"action {name!r} is already defined at {where}; action names are unique"
            )
            return
        self.action_at[name] = (doc, path)
        if not NAME.fullmatch(name):
            self.problems.add(
                doc, path, "action names are lowercase letters, digits and dashes, starting with a letter"
            )
        if not isinstance(spec, dict):
            self.problems.add(doc, path, "an action is a mapping with description, params, executor, risk, …")
            return
        written = _validate(_ActionFile, spec, doc, path, self.problems)
        if written is None:
            return
        for key, param in written.params.items():
            if param.name != key:
                self.problems.add(doc, (*path, "params", key, "name"), "differs from its key; remove name:")
        self.actions[name] = ActionSpec(
            name=name,
            description=written.description,
            params=tuple(written.params.values()),
            executor=written.executor,
            risk=written.risk,
            idempotent=written.idempotent,
            runbook=written.runbook,
        )

    # -- checking

    def _ref_problem(self, name: str) -> str | None:
        if USER_ID.fullmatch(name) or USERGROUP_ID.fullmatch(name) or name in self.groups:
            return None
        return (
            f"unknown group {name!r}{suggest(name, self.groups)}; define it under groups: "
            "or use a Slack user id (U…) or user group id (S…)"
        )

    def _check_groups(self) -> None:
        in_cycle: set[str] = set()
        for name, members in self.groups.items():
            doc, path = self.group_at[name]
            if not members:
                self.warnings.add(doc, path, "has no members; approvals from it can never be given")
            for index, member in enumerate(members):
                if problem := self._ref_problem(member):
                    self.problems.add(doc, _item(doc, path, index), problem)
            cycle = self._cycle(name)
            if cycle and name not in in_cycle:
                in_cycle.update(cycle)
                self.problems.add(doc, path, f"groups contain each other in a cycle: {' -> '.join(cycle)}")

    def _cycle(self, start: str) -> list[str] | None:
        seen: set[str] = set()

        def visit(name: str, trail: list[str]) -> list[str] | None:
            for member in self.groups.get(name, ()):
                if member == start:
                    return [*trail, member]
                if member in self.groups and member not in seen:
                    seen.add(member)
                    if found := visit(member, [*trail, member]):
                        return found
            return None

        return visit(start, [start])

    def _static_members(self, names: Iterable[str]) -> set[str] | None:
        """User ids in the groups, or None when a Slack user group is involved (its size is unknown here)."""
        users: set[str] = set()
        pending, seen = list(names), set()
        while pending:
            name = pending.pop()
            if USERGROUP_ID.fullmatch(name):
                return None
            if USER_ID.fullmatch(name):
                users.add(name)
            elif name not in seen:
                seen.add(name)
                pending.extend(self.groups.get(name, ()))
        return users

    def _check_action(self, doc: _Document, path: FieldPath, action: ActionSpec) -> None:
        for spec in action.params:
            self._check_param(doc, (*path, "params", spec.name), spec)
        self._check_executor(doc, (*path, "executor"), action)
        if action.runbook is not None and self.knowledge_dir is not None:
            runbook = Path(action.runbook)
            if runbook.is_absolute() or ".." in runbook.parts:
                message = "write a path inside the knowledge base, like runbooks/model-rollback.md"
                self.warnings.add(doc, (*path, "runbook"), message)
            elif not (self.knowledge_dir / runbook).is_file():
                message = (
                    f"{action.runbook} is not in {self.knowledge_dir}; fix the path or write the runbook"
                )
                self.warnings.add(doc, (*path, "runbook"), message)

    def _check_param(self, doc: _Document, path: FieldPath, spec: ParamSpec) -> None:
        def bad(field: str, message: str) -> None:
            self.problems.add(doc, (*path, field), message)

        if not PARAM_NAME.fullmatch(spec.name):
            self.problems.add(
                doc, path, "parameter names are lowercase letters, digits and _ (typed as name=value)"
            )
        if spec.enum is not None and spec.type != "string":
            bad("enum", f"enum is for string parameters; this one is {spec.type}")
        if spec.enum == ():
            bad("enum", "is empty; list the allowed values")
        for field in ("minimum", "maximum"):
            if getattr(spec, field) is not None and spec.type not in ("integer", "number"):
                bad(field, f"{field} is for integer and number parameters; this one is {spec.type}")
        if spec.minimum is not None and spec.maximum is not None and spec.minimum > spec.maximum:
            bad("maximum", f"is below the minimum {_number(spec.minimum)}")
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

    def _check_executor(self, doc: _Document, path: FieldPath, action: ActionSpec) -> None:
        executor = action.executor
        params = [spec.name for spec in action.params]
        for field in sorted(executor.model_fields_set):
            owner = next((kind for kind, fields in _KIND_FIELDS.items() if field in fields), executor.kind)
            if owner != executor.kind:
                self.problems.add(
                    doc, (*path, field), f"is for {owner} executors, not {executor.kind}; remove it"
                )
        needs = {"webhook": "url", "command": "program", "python": "entry_point"}.get(executor.kind)
        if needs is not None and not getattr(executor, needs):
            self.problems.add(doc, path, f"a {executor.kind} executor needs {needs}:")
        if executor.kind == "webhook" and executor.url:
            self._check_url(doc, (*path, "url"), executor.url)
        if executor.secret_env is not None and not ENV_NAME.fullmatch(executor.secret_env):
            self.problems.add(
                doc, (*path, "secret_env"), "is an environment variable name: capitals, digits and _"
            )
        for index, arg in enumerate(executor.args):
            try:
                fields = [field for _, field, _, _ in string.Formatter().parse(arg) if field is not None]
            except ValueError:
                self.problems.add(
                    doc, (*path, "args", index), "unbalanced braces; write {{ and }} for literal braces"
                )
                continue
            for field in fields:
                if field not in params:
                    message = (
                        f"{{{field}}} is not a parameter of {action.name}; use one of {', '.join(params)}"
                    )
                    self.problems.add(doc, (*path, "args", index), message)
        if (
            executor.kind == "python"
            and executor.entry_point
            and not ENTRY_POINT.fullmatch(executor.entry_point)
        ):
            self.problems.add(doc, (*path, "entry_point"), "write package.module:function")
        if executor.kind == "mlflow":
            for field in ("model_param", "version_param"):
                if (value := getattr(executor, field)) not in params:
                    message = f"{value!r} is not a parameter of {action.name}; add it or set {field}:"
                    self.problems.add(doc, (*path, field), message)
            if executor.alias is None and "alias" not in params:
                self.problems.add(
                    doc, path, "an mlflow executor needs alias: (such as production) or an alias param"
                )

    def _check_url(self, doc: _Document, path: FieldPath, url: str) -> None:
        names = ENV_REF.findall(url)
        for name in names:
            if not ENV_NAME.fullmatch(name):
                self.problems.add(
                    doc, path, f"${{{name}}} is not an environment variable name: capitals, digits, _"
                )
        if not names and not url.startswith(("https://", "http://")):
            self.problems.add(doc, path, "write https://… or ${ENV_NAME}, expanded when the action runs")

    def _compile_rule(self, doc: _Document, path: FieldPath, written: _RuleFile) -> None:
        ok = True

        def bad(field: FieldPath, message: str, at: FieldPath | None = None) -> None:
            nonlocal ok
            ok = False
            self.problems.add(doc, (*path, *field), message, at=None if at is None else (*path, *at))

        source = Source(doc.display, doc.line(path))
        if not written.name.strip():
            bad(("name",), "is empty; name the rule, decisions and the audit log cite it")
        elif written.name in self.rule_at:
            bad(("name",), f"rule name {written.name!r} is already used at {self.rule_at[written.name]}")
        else:
            self.rule_at[written.name] = source
        if not written.reason.strip():
            bad(("reason",), "is empty; say why, the requester reads it")
        if not written.actions:
            bad(("actions",), "list at least one action, or '*' for every action")
        specs: list[ActionSpec] = []
        for index, name in enumerate(written.actions):
            if name in self.actions:
                specs.append(self.actions[name])
            elif name in self.action_at:
                ok = False  # the action itself is broken and already reported
            elif name != ANY_ACTION:
                known = ", ".join(self.actions)
                message = f"unknown action {name!r}{suggest(name, self.actions)}; known actions: {known}"
                bad(_item(doc, ("actions",), index, path), message)
        any_action = ANY_ACTION in written.actions
        if any_action:
            specs = list(self.actions.values())
        approval = written.approval
        if written.outcome == "require_approval" and approval is None:
            bad(("outcome",), "require_approval needs approval: {count: N, groups: [...], within_minutes: M}")
        if written.outcome != "require_approval" and approval is not None:
            bad(("approval",), "is only used with outcome require_approval; remove it or change the outcome")
        if approval is not None:
            if not approval.groups:
                bad(("approval", "groups"), "list at least one group")
            for index, group in enumerate(approval.groups):
                if problem := self._ref_problem(group):
                    bad(_item(doc, ("approval", "groups"), index, path), problem)
            members = self._static_members(approval.groups)
            if ok and members is not None and len(members) < approval.count:
                message = (
                    f"needs {approval.count} approvals but {', '.join(approval.groups)} have {len(members)}"
                )
                self.warnings.add(
                    doc, (*path, "approval", "count"), f"{message} members; it can never be approved"
                )
        when = written.when
        tests: list[ParamTest] = []
        if specs or any_action:
            for name, condition in when.params.items():
                for test, problem, at in self._param_tests(name, condition, specs, any_action):
                    if problem is not None:
                        bad(("when", "params", name), problem, at=("when", "params", name, *at))
                    elif test is not None:
                        tests.append(test)
        for field in ("requester_in", "channel_in"):
            if getattr(when, field) == ():
                bad(("when", field), "is empty; remove it or list at least one entry")
        for index, group in enumerate(when.requester_in or ()):
            if problem := self._ref_problem(group):
                bad(_item(doc, ("when", "requester_in"), index, path), problem)
        for index, channel in enumerate(when.channel_in or ()):
            if not CHANNEL_ID.fullmatch(channel):
                message = (
                    f"{channel!r} is not a Slack channel id (C…); use the id, since channel names change"
                )
                bad(_item(doc, ("when", "channel_in"), index, path), message)
        windows: list[FreezeWindow] = []
        for index, written_window in enumerate(when.freeze or ()):
            try:
                windows.append(_window(written_window))
            except _FieldError as error:
                bad((*_item(doc, ("when", "freeze"), index, path), error.field), error.message)
        if ok:
            self.rules.append(
                Rule(
                    name=written.name,
                    actions=written.actions,
                    when=When(tuple(tests), when.requester_in, when.channel_in, tuple(windows)),
                    outcome=written.outcome,
                    reason=written.reason.strip(),
                    approval=approval,
                    source=source,
                )
            )

    def _param_tests(
        self, name: str, condition: Any, specs: list[ActionSpec], any_action: bool
    ) -> Iterable[tuple[ParamTest | None, str | None, FieldPath]]:
        """Each test of one `params:` entry, or the problem with it and where (relative to the entry)."""
        found = [param for action in specs for param in action.params if param.name == name]
        lacking = [action.name for action in specs if all(param.name != name for param in action.params)]
        if not found or (lacking and not any_action):
            listing = "; ".join(
                f"{a.name} has {', '.join(p.name for p in a.params) or 'none'}" for a in specs
            )
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


def _item(doc: _Document, path: FieldPath, index: int, base: FieldPath = ()) -> FieldPath:
    """`path[index]` when the file wrote a list there, else `path` (the one-item shorthand)."""
    return (*path, index) if (*base, *path, index) in doc.lines else path


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


def _window(written: _FreezeFile) -> FreezeWindow:
    """A freeze window from its written form; raises _FieldError naming the field at fault."""
    try:
        zone = ZoneInfo(written.timezone)
    except (KeyError, ValueError, OSError) as error:
        message = f"unknown timezone {written.timezone!r}; use an IANA name such as Europe/Berlin or UTC"
        raise _FieldError("timezone", message) from error
    start_day, start = _moment(written.start, "from", allow_24=False)
    end_day, end = _moment(written.end, "to", allow_24=True)
    if (start_day is None) != (end_day is None):
        message = "give both from and to a day (fri 17:00, mon 08:00), or neither and list days:"
        raise _FieldError("to" if start_day is not None else "from", message)
    if start_day is not None and end_day is not None:
        if written.days is not None:
            raise _FieldError("days", "remove days: when from and to name their days (fri 17:00 … mon 08:00)")
        begin = start_day * 1440 + start
        length = (end_day * 1440 + end - begin) % _WEEK
        if length == 0:
            raise _FieldError("to", "is the same moment as from; a window needs a length")
        return FreezeWindow(((begin, length),), zone, f"{written.start} – {written.end} {written.timezone}")
    if written.days == ():
        raise _FieldError("days", "is empty; remove it to mean every day")
    days: list[int] = []
    for text in written.days or DAYS:
        if (day := _day(text)) is None:
            raise _FieldError("days", f"unknown day {text!r}; use {', '.join(DAYS)}")
        days.append(day)
    if start == end:
        raise _FieldError("to", "is the same time as from; a window needs a length")
    length = end - start if end > start else end + 1440 - start
    spans = tuple((day * 1440 + start, length) for day in sorted(set(days)))
    named = "daily" if written.days is None else ", ".join(DAYS[day] for day in sorted(set(days)))
    return FreezeWindow(spans, zone, f"{named} {written.start}–{written.end} {written.timezone}")


def _moment(text: str, field: str, *, allow_24: bool) -> tuple[int | None, int]:
    """(weekday or None, minute of the day) from `17:00` or `fri 17:00`."""
    match = re.fullmatch(r"(?:([A-Za-z]+)\s+)?(\d{1,2}):(\d{2})", text.strip())
    if match is None:
        raise _FieldError(
            field, f"{text!r} is not a time; write HH:MM such as 17:00, or a day and time: fri 17:00"
        )
    day = None
    if match.group(1) is not None and (day := _day(match.group(1))) is None:
        raise _FieldError(field, f"unknown day {match.group(1)!r}; use {', '.join(DAYS)}")
    hour, minute = int(match.group(2)), int(match.group(3))
    if allow_24 and (hour, minute) == (24, 0):
        return day, 1440
    if hour > 23 or minute > 59:
        raise _FieldError(
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
