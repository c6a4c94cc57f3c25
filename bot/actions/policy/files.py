"""Policy files: `policies/*.yaml` loaded into a checked `Policy` that knows the file and line of every part.

The format and its semantics are documented in policies/README.md. Loading is strict: every problem in
every file is collected and reported at once, each naming file, line and field, so one run of
`steward policy check` shows the whole list.

This module reads the files and checks the references between their parts (groups, actions, rules). The
runtime types are in bot/actions/policy/rules.py, YAML with line numbers in bot/actions/policy/yaml_lines.py,
and the written schema with the checks of one part at a time in bot/actions/policy/schema.py.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from bot.actions.executors.command_checks import command_warnings
from bot.actions.executors.dispatch import program_is_allowed, substitute_env
from bot.actions.executors.machine_checks import executor_warnings
from bot.actions.models import ActionSpec
from bot.actions.policy.rules import (
    AGENT_ID,
    AGENTS,
    ANY_ACTION,
    OPERATORS,
    USER_ID,
    USERGROUP_ID,
    FreezeWindow,
    ParamTest,
    Policy,
    PolicyError,
    Rule,
    Source,
    When,
    is_agent,
    suggest,
)
from bot.actions.policy.schema import (
    FieldError,
    _ActionFile,
    _FreezeFile,
    _RuleFile,
    _WhenFile,
    check_executor,
    check_param,
    freeze_window,
    listed,
    param_tests,
)
from bot.actions.policy.yaml_lines import Document, FieldPath, Problems, read_yaml, validate
from bot.store.sources import document_ref

# What other modules import from here. `OPERATORS`, `suggest` and the written schema live in policy_types
# and policy_schema; they stay importable here because bot/slack and the tests import them from here.
__all__ = [
    "OPERATORS",
    "_FreezeFile",
    "_RuleFile",
    "_WhenFile",
    "check_report",
    "expand_env",
    "load_policy",
    "policy_version",
    "suggest",
]

# Action and group names are typed in Slack and on the command line: keep them plain.
NAME = re.compile(r"[a-z][a-z0-9-]*")
CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,}")
_TOP_LEVEL = ("groups", "actions", "rules")
POLICY_SUFFIXES = (".yaml", ".yml")  # every file with one of these is read, in file-name order


def expand_env(text: str, environ: Mapping[str, str]) -> str:
    """Replace each `${NAME}` with the variable's value; executors call this at run time, never the loader."""

    def missing(name: str) -> ValueError:
        return ValueError(f"environment variable {name} is not set; {text!r} needs it. Set it and retry.")

    return substitute_env(text, environ, missing)


def policy_version(files: Iterable[tuple[str, bytes]]) -> str:
    """sha256 over each file's name and bytes, in file-name order, so any edit or rename changes it."""
    digest = hashlib.sha256()
    for name, data in sorted(files):
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


# ---- Loading: read every file, then check meaning and cross references, then build the Policy.


def load_policy(
    folder: Path, *, knowledge_dir: Path | None = None, environ: Mapping[str, str] | None = None
) -> Policy:
    """Load and check every `*.yaml` and `*.yml` in `folder` (file-name order); raise `PolicyError` listing
    all problems.

    Runbook paths are checked against `knowledge_dir` (default: `knowledge/` beside the folder, when it
    exists); a missing runbook is a warning in `Policy.warnings`, not an error. With `environ`, executors
    are also checked against it (entry points imported, programs looked up on its PATH, `${VAR}` looked
    up), as warnings: `steward policy check` asks for this, the server does not.
    """
    if knowledge_dir is None and (folder.parent / "knowledge").is_dir():
        knowledge_dir = folder.parent / "knowledge"
    return _Loader(folder, knowledge_dir, environ).load()


def _names_folder(source: str, folder: Path) -> bool:
    """Whether a source name (`knowledge`, `team-a/docs`) can be this folder's: the end of its path."""
    wanted = Path(source).parts
    return Path(folder).resolve().parts[-len(wanted) :] == wanted


def check_report(
    folder: Path,
    *,
    knowledge_dir: Path | None = None,
    allowed_programs: Collection[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[int, str]:
    """What `steward policy check` prints and its exit code: 0 with a summary, 1 with every problem.

    `allowed_programs` is STEWARD_ALLOWED_PROGRAMS (None: unset); command actions are checked against it.
    Executors are checked against `environ` (default: this process's environment, as executors read it).
    """
    try:
        policy = load_policy(
            folder, knowledge_dir=knowledge_dir, environ=os.environ if environ is None else environ
        )
    except PolicyError as error:
        return 1, str(error)
    summary = (
        f"policies OK: {len(policy.actions)} actions, {len(policy.rules)} rules, {len(policy.groups)} groups "
        f"in {len(policy.files)} files, version {policy.version[:12]}…"
    )
    warnings = [*policy.warnings, *_program_warnings(policy, allowed_programs)]
    return 0, "\n".join([summary, *(f"warning: {warning}" for warning in warnings)])


def _program_warnings(policy: Policy, allowed: Collection[str] | None) -> list[str]:
    """Command and mcp actions whose program the deployment's allow-list does not vouch for."""
    found = []
    for name, action in policy.actions.items():
        program = action.executor.program
        if action.executor.kind not in ("command", "mcp") or not program:
            continue
        source = policy.action_sources[name]
        where = f"{source.file}, line {source.line}: actions.{name}.executor.program"
        if allowed is None:
            found.append(
                f"{where}: STEWARD_ALLOWED_PROGRAMS is not set, so {program!r} runs on this file's word "
                "alone; set it to the programs command actions may run (comma-separated)"
            )
        elif not program_is_allowed(program, allowed):
            found.append(
                f"{where}: {program!r} is not in STEWARD_ALLOWED_PROGRAMS, so the action fails when it "
                "runs; add it there or change the program"
            )
    return found


class _Loader:
    def __init__(self, folder: Path, knowledge_dir: Path | None, environ: Mapping[str, str] | None) -> None:
        self.folder = folder
        self.knowledge_dir = knowledge_dir
        self.environ = environ
        self.problems = Problems()
        self.warnings = Problems()
        self.groups: dict[str, tuple[str, ...]] = {}
        self.group_at: dict[str, tuple[Document, FieldPath]] = {}
        self.actions: dict[str, ActionSpec] = {}
        self.action_at: dict[str, tuple[Document, FieldPath]] = {}
        self.written_rules: list[tuple[Document, FieldPath, _RuleFile]] = []
        self.rule_at: dict[str, Source] = {}
        self.rules: list[Rule] = []

    def load(self) -> Policy:
        if not self.folder.is_dir():
            raise PolicyError(
                self.folder, [f"{self.folder} is not a folder; pass the folder of *.yaml policy files"]
            )
        # *.yml too: a deny rule saved as .yml must deny, not be skipped with a warning nobody reads.
        paths = sorted(
            (path for path in self.folder.iterdir() if path.suffix in POLICY_SUFFIXES and path.is_file()),
            key=lambda path: path.name,
        )
        if not paths:
            raise PolicyError(
                self.folder, [f"{self.folder} has no *.yaml or *.yml policy files; see policies/README.md"]
            )
        files = [(path.name, path.read_bytes()) for path in paths]
        for name, data in files:
            self._read_file(Document(f"{self.folder.name}/{name}"), data)
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

    def _read_file(self, doc: Document, data: bytes) -> None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            self.problems.add(
                doc, (), f"not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8"
            )
            return
        content = read_yaml(text, doc, self.problems)
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
            elif (written := validate(_RuleFile, rule, doc, ("rules", index), self.problems)) is not None:
                self.written_rules.append((doc, ("rules", index), written))

    def _read_group(self, doc: Document, path: FieldPath, name: str, members: Any) -> None:
        if not NAME.fullmatch(name):
            self.problems.add(
                doc, path, "group names are lowercase letters, digits and dashes, starting with a letter"
            )
        if name == AGENTS:
            self.problems.add(
                doc, path, f"{AGENTS!r} is built in: every agent (agent:NAME) is in it; choose another name"
            )
            return
        members = listed(members) if members is not None else []
        if not isinstance(members, list) or not all(isinstance(member, str) for member in members):
            self.problems.add(
                doc,
                path,
                "list the members: Slack user ids (U…), user group ids (S…), agents (agent:NAME) "
                "or group names",
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

    def _read_action(self, doc: Document, path: FieldPath, name: str, spec: Any) -> None:
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
        written = validate(_ActionFile, spec, doc, path, self.problems)
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
            channel=written.channel,
        )

    # -- checking

    def _ref_problem(self, name: str) -> str | None:
        if USER_ID.fullmatch(name) or USERGROUP_ID.fullmatch(name) or name in self.groups:
            return None
        if AGENT_ID.fullmatch(name) or name == AGENTS:
            return None
        if is_agent(name):
            return (
                f"{name!r} is not an agent id; write agent:NAME, the NAME the agent was added with: "
                "1 to 40 lowercase letters, digits and dashes, starting with a letter"
            )
        return (
            f"unknown group {name!r}{suggest(name, [*self.groups, AGENTS])}; define it under groups: "
            "or use a Slack user id (U…), a user group id (S…), an agent (agent:NAME) or agents (every agent)"
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

    def _agents_in(self, names: Iterable[str]) -> list[str]:
        """The agents (agent:NAME, or `agents`) that the groups name, directly or nested, in order."""
        found: list[str] = []
        pending, seen = list(names), set()
        while pending:
            name = pending.pop(0)
            if name in seen:
                continue
            seen.add(name)
            if AGENT_ID.fullmatch(name) or name == AGENTS:
                found.append(name)
            pending.extend(self.groups.get(name, ()))
        return found

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

    def _check_action(self, doc: Document, path: FieldPath, action: ActionSpec) -> None:
        for spec in action.params:
            check_param(doc, (*path, "params", spec.name), spec, self.problems)
        check_executor(doc, (*path, "executor"), action, self.problems)
        for warning in command_warnings(action):
            self.warnings.add(doc, (*path, "executor", *warning.field), warning.message)
        if self.environ is not None:
            for found in executor_warnings(action, self.environ):
                self.warnings.add(doc, (*path, "executor", found.field), found.message)
        if action.runbook is not None:
            message = self._runbook_problem(action.runbook)
            if message is not None:
                self.warnings.add(doc, (*path, "runbook"), message)

    def _runbook_problem(self, written: str) -> str | None:
        """What is wrong with a `runbook:` reference (`PATH` or `SOURCE:PATH`), as far as the knowledge
        folder beside the policies can tell; a runbook in another source is looked up when a card shows it."""
        ref = document_ref(written)
        runbook = Path(ref.path)
        if not ref.path or ref.source == "" or runbook.is_absolute() or ".." in runbook.parts:
            return (
                "write a path inside the knowledge base, like runbooks/model-rollback.md, or a source's name "
                "and a path in it, like knowledge:runbooks/model-rollback.md"
            )
        folder = self.knowledge_dir
        if folder is None or (ref.source is not None and not _names_folder(ref.source, folder)):
            return None
        if not (folder / runbook).is_file():
            return f"{ref.path} is not in {folder}; fix the path or write the runbook"
        return None

    def _compile_rule(self, doc: Document, path: FieldPath, written: _RuleFile) -> None:
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
            if agents := self._agents_in(approval.groups):
                message = (
                    f"names {', '.join(agents)}; an agent can never approve, so only the people here count"
                )
                self.warnings.add(doc, (*path, "approval", "groups"), message)
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
                for test, problem, at in param_tests(name, condition, specs, any_action):
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
                windows.append(freeze_window(written_window))
            except FieldError as error:
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
                    # A freeze ends by itself, so by default it holds a waiting request rather than
                    # ending it; other rules describe the request, so they end it.
                    waiting=written.waiting or ("hold" if windows else "deny"),
                )
            )


def _item(doc: Document, path: FieldPath, index: int, base: FieldPath = ()) -> FieldPath:
    """`path[index]` when the file wrote a list there, else `path` (the one-item shorthand)."""
    return (*path, index) if (*base, *path, index) in doc.lines else path
