"""The policy engine as a specification: loading and errors, rules, freezes, groups, approvals, params."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from bot.actions.models import ActionRequest, Actor, ApprovalRequirement, ExecutorSpec, ParamSpec
from bot.actions.policy.engine import (
    ParamError,
    Policy,
    PolicyError,
    build_request,
    check_report,
    counted_approvers,
    counts_as_approval,
    eligible_approvers,
    evaluate,
    expand_env,
    explain,
    groups_of,
    load_policy,
    parse_key_values,
    parse_params,
)
from bot.actions.policy.files import OPERATORS, _FreezeFile, _RuleFile, _WhenFile  # the written schema
from tests.conftest import ROOT, write_tree

POLICIES = ROOT / "policies"
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
UTC = dt.UTC
WEDNESDAY_NOON = dt.datetime(2026, 11, 25, 12, 0, tzinfo=BERLIN)
SATURDAY_NOON = dt.datetime(2026, 11, 28, 12, 0, tzinfo=BERLIN)
SLACK_GROUPS = {"S0MLTEAM": frozenset({"U0SLACK1", "U0SLACK2"})}

# A small catalog and groups for the rule tests; each test adds its own rules file.
CATALOG = """
    groups:
      sre: [U0SRE1, U0SRE2]
      ml: [U0ML1, S0MLTEAM]
      leads: [ml, U0LEAD]
    actions:
      deploy:
        description: Deploy a service.
        executor: {kind: command, program: deploy, args: ["{service}", --env, "{env}"]}
        params:
          service: {pattern: "[a-z][a-z-]*"}
          env: {enum: [staging, prod], default: staging}
          replicas: {type: integer, minimum: 1, maximum: 100, default: 1}
          ratio: {type: number, required: false}
          dry_run: {type: boolean, default: false}
      restart:
        description: Restart a service.
        executor: {kind: mlflow, alias: production, model_param: service, version_param: attempt}
        params:
          service: {}
          attempt: {type: integer, default: 1}
"""


def resolver(usergroup: str) -> frozenset[str]:
    """A fake Slack: user-group id -> member ids."""
    return SLACK_GROUPS.get(usergroup, frozenset())


def policy_with(
    tmp_path: Path, rules: str, *, catalog: str = CATALOG, extra: dict[str, str] | None = None
) -> Policy:
    """Load the test catalog plus a rules file (both dedented) from a fresh folder."""
    files = {"00-catalog.yaml": catalog, "10-rules.yaml": rules, **(extra or {})}
    return load_policy(write_tree(tmp_path / "policies", files), knowledge_dir=tmp_path)


def one_rule(rule: str) -> str:
    """A rules file holding one rule written as a YAML flow mapping body."""
    return f"rules:\n  - {{{rule}}}\n"


def problems_of(tmp_path: Path, files: dict[str, str]) -> list[str]:
    """The problems `load_policy` reports for these files (which must fail to load)."""
    folder = write_tree(tmp_path / "policies", files)
    with pytest.raises(PolicyError) as caught:
        load_policy(folder, knowledge_dir=tmp_path)
    return list(caught.value.problems)


def decide(
    policy: Policy, action: str, params: dict[str, object], user: str = "U0DEV", channel: str | None = None
) -> str:
    """`outcome rule` for a request on Wednesday noon, as one comparable string."""
    request = ActionRequest(action=action, params=params)
    decision = evaluate(policy, request, Actor(user_id=user, channel=channel), WEDNESDAY_NOON, resolver)
    return f"{decision.outcome} {decision.rule}"


@pytest.fixture(scope="module")
def starter() -> Policy:
    """The starter policies shipped in policies/."""
    return load_policy(POLICIES)


@pytest.fixture
def catalog_only(tmp_path: Path) -> Policy:
    """The test catalog with no rules."""
    return policy_with(tmp_path, "rules: []")


# ---- the starter policies


def test_starter_policies_load_without_warnings(starter: Policy) -> None:
    """The shipped files load, define the seven actions, and every runbook exists in knowledge/."""
    assert set(starter.actions) == {
        "rollback-model",
        "promote-model",
        "retrain-model",
        "pause-agent",
        "scale-service",
        "rotate-secret",
        "toggle-feature-flag",
    }
    assert starter.warnings == ()
    assert all((ROOT / "knowledge" / str(action.runbook)).is_file() for action in starter.actions.values())


def test_starter_sources_point_at_the_definitions(starter: Policy) -> None:
    """Actions and rules know the file and line they are written at."""
    assert str(starter.action_sources["rollback-model"]) == "policies/10-actions.yaml:13"
    assert str(starter.rules[0].source) == "policies/20-freeze.yaml:10"


STARTER_VARIABLES = (
    "MLFLOW_TRACKING_URI",
    "RETRAIN_WEBHOOK_URL",
    "SCALE_WEBHOOK_URL",
    "SECRETS_WEBHOOK_URL",
    "ACTIONS_WEBHOOK_SECRET",
)


@pytest.fixture
def deployed(tmp_path: Path) -> dict[str, str]:
    """An environment where every starter executor finds what it needs: its variables and lumenctl on PATH."""
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "lumenctl").write_text("#!/bin/sh\n", encoding="utf-8")
    (tools / "lumenctl").chmod(0o755)
    return {"PATH": str(tools)} | dict.fromkeys(STARTER_VARIABLES, "https://example.test")


def test_check_report_summarises_the_starter_policies(starter: Policy, deployed: dict[str, str]) -> None:
    """`steward policy check` exits 0 and names counts and the version (everything set, lumenctl allowed)."""
    code, text = check_report(POLICIES, allowed_programs=["lumenctl"], environ=deployed)
    rules, version = len(starter.rules), starter.version[:12]
    assert (code, text) == (
        0,
        f"policies OK: 7 actions, {rules} rules, 4 groups in 5 files, version {version}…",
    )


def test_check_report_warns_when_no_program_allow_list_is_set(deployed: dict[str, str]) -> None:
    """Without STEWARD_ALLOWED_PROGRAMS, each command action is named: its program runs on the file's word."""
    code, text = check_report(POLICIES, environ=deployed)
    assert code == 0
    (warning,) = text.splitlines()[1:]
    assert warning.startswith(
        "warning: policies/10-actions.yaml, line 57: actions.pause-agent.executor.program: "
        "STEWARD_ALLOWED_PROGRAMS is not set, so 'lumenctl' runs on this file's word alone"
    )


def test_check_report_warns_about_a_program_the_allow_list_leaves_out(deployed: dict[str, str]) -> None:
    """A command action whose program is not allowed would fail when it runs: check says so beforehand."""
    code, text = check_report(POLICIES, allowed_programs=["kubectl"], environ=deployed)
    assert code == 0
    assert (
        "warning: policies/10-actions.yaml, line 57: actions.pause-agent.executor.program: 'lumenctl' is "
        "not in STEWARD_ALLOWED_PROGRAMS, so the action fails when it runs" in text
    )


def test_check_report_on_a_fresh_machine_names_what_each_starter_executor_lacks() -> None:
    """With nothing set and no lumenctl, the starter still passes, with a warning per missing piece, each
    naming the file, line and field; toggle-feature-flag's entry point takes its parameters (no warning)."""
    code, text = check_report(POLICIES, allowed_programs=["lumenctl"], environ={"PATH": "/nonexistent"})
    assert code == 0
    fields = [line.split(": ")[2] for line in text.splitlines()[1:]]
    assert fields == [
        "actions.rollback-model.executor.tracking_uri",
        "actions.promote-model.executor.tracking_uri",
        "actions.retrain-model.executor.url",
        "actions.retrain-model.executor.secret_env",
        "actions.pause-agent.executor.program",
        "actions.scale-service.executor.url",
        "actions.scale-service.executor.secret_env",
        "actions.rotate-secret.executor.url",
        "actions.rotate-secret.executor.secret_env",
    ]
    assert (
        "warning: policies/10-actions.yaml, line 64: actions.pause-agent.executor.program: 'lumenctl' is "
        "not on PATH here" in text
    )
    assert "warning: policies/10-actions.yaml, line 49: actions.retrain-model.executor.url: " in text


STARTER_CASES = [
    # (action, parameters, requester, moment, "outcome rule")
    ("rollback-model", "model=fraud-scorer version=41 env=prod", "U0000SRE01", SATURDAY_NOON,
     "require_approval rollback-prod-two-approvers"),
    ("rollback-model", "model=fraud-scorer version=41 env=staging", "U0DEV", SATURDAY_NOON,
     "allow rollback-staging-self-service"),
    ("promote-model", "model=fraud-scorer version=42 env=prod", "U0000MLP01", SATURDAY_NOON,
     "deny prod-weekend-freeze"),
    ("promote-model", "model=fraud-scorer version=42 env=prod", "U0000MLP01", WEDNESDAY_NOON,
     "require_approval promote-prod-two-approvers"),
    ("promote-model", "model=fraud-scorer version=42 env=staging", "U0DEV", SATURDAY_NOON,
     "allow promote-staging-self-service"),
    ("pause-agent", "agent=support-assistant", "U0000SRE02", SATURDAY_NOON, "allow pause-agent-oncall"),
    ("pause-agent", "agent=support-assistant mode=full", "U0DEV", SATURDAY_NOON,
     "require_approval pause-agent-others"),
    ("rotate-secret", "secret_name=llm-gateway/openai-key env=prod", "U0000SEC01", SATURDAY_NOON,
     "require_approval rotate-secret-security-approval"),
    ("scale-service", "service=fraud-scorer replicas=30 env=staging", "U0000SRE01", WEDNESDAY_NOON,
     "require_approval scale-beyond-20-needs-sre"),
    ("scale-service", "service=fraud-scorer replicas=12 env=prod", "U0000SRE01", WEDNESDAY_NOON,
     "allow scale-prod-oncall"),
    ("scale-service", "service=fraud-scorer replicas=12 env=prod", "U0DEV", WEDNESDAY_NOON,
     "require_approval scale-prod-others"),
    ("scale-service", "service=fraud-scorer replicas=12 env=prod", "U0000SRE01", SATURDAY_NOON,
     "deny prod-weekend-freeze"),
    ("toggle-feature-flag", "flag=canary traffic_percent=80 env=prod", "U0DEV", WEDNESDAY_NOON,
     "require_approval flag-prod-majority-traffic"),
    ("toggle-feature-flag", "flag=canary traffic_percent=50 env=prod", "U0DEV", WEDNESDAY_NOON,
     "allow flag-self-service"),
    ("retrain-model", "model=churn-predictor env=prod", "U0DEV", WEDNESDAY_NOON,
     "require_approval retrain-prod-one-approver"),
]  # fmt: skip


@pytest.mark.parametrize(("action", "params", "user", "moment", "expected"), STARTER_CASES)
def test_starter_policy_decisions(
    starter: Policy, action: str, params: str, user: str, moment: dt.datetime, expected: str
) -> None:
    """The starter rules give the decisions described in policies/README.md."""
    request = build_request(starter, action, parse_key_values(params))
    decision = evaluate(starter, request, Actor(user_id=user), moment, resolver)
    assert f"{decision.outcome} {decision.rule}" == expected


def test_starter_production_rollback_needs_two_platform_or_sre_approvers_in_30_minutes(
    starter: Policy,
) -> None:
    """ADR 0013: two approvers from ml-platform or sre, within 30 minutes."""
    request = build_request(
        starter, "rollback-model", parse_key_values("model=fraud-scorer version=3 env=prod")
    )
    decision = evaluate(starter, request, Actor(user_id="U0DEV"), WEDNESDAY_NOON, resolver)
    assert decision.approval == ApprovalRequirement(count=2, groups=("ml-platform", "sre"), within_minutes=30)


@pytest.mark.parametrize(
    ("moment", "frozen"),
    [
        (dt.datetime(2026, 11, 27, 16, 59, tzinfo=BERLIN), False),
        (dt.datetime(2026, 11, 27, 17, 0, tzinfo=BERLIN), True),
        (dt.datetime(2026, 11, 30, 7, 59, tzinfo=BERLIN), True),
        (dt.datetime(2026, 11, 30, 8, 0, tzinfo=BERLIN), False),
    ],
)
def test_starter_freeze_runs_friday_17_to_monday_08_berlin(
    starter: Policy, moment: dt.datetime, frozen: bool
) -> None:
    """The freeze starts at Friday 17:00 (inclusive), ends at Monday 08:00 (exclusive), and says so."""
    request = build_request(
        starter, "promote-model", parse_key_values("model=fraud-scorer version=4 env=prod")
    )
    decision = evaluate(starter, request, Actor(user_id="U0000MLP01"), moment, resolver)
    assert (decision.rule == "prod-weekend-freeze") is frozen
    if frozen:
        assert decision.outcome == "deny" and "freeze" in decision.reason


def test_every_policy_field_and_operator_is_documented() -> None:
    """policies/README.md names every field a policy file can hold, and every operator."""
    readme = (POLICIES / "README.md").read_text(encoding="utf-8")
    written: list[type[BaseModel]] = [_RuleFile, _WhenFile, _FreezeFile, ParamSpec, ExecutorSpec]
    written.append(ApprovalRequirement)
    fields = {info.alias or name for model in written for name, info in model.model_fields.items()}
    missing = [f for f in sorted({*fields, *OPERATORS}) if f"`{f}`" not in readme and f"{f}:" not in readme]
    assert missing == []


# ---- load errors name file, line and field


def rule_file(body: str) -> dict[str, str]:
    """A 10-rules.yaml holding one rule, its lines written under `rules: - `."""
    return {"10-rules.yaml": "rules:\n  - " + "\n    ".join(body.strip("\n").splitlines()) + "\n"}


def more_file(text: str) -> dict[str, str]:
    """A 20-more.yaml beside the catalog."""
    return {"20-more.yaml": text.strip("\n") + "\n"}


RULE = "name: x\nactions: deploy\noutcome: allow\nreason: ok\n"
FREEZE = "name: x\nactions: deploy\noutcome: deny\nreason: frozen\nwhen:\n  freeze:\n"
HOOK = "actions:\n  hook:\n    description: d\n    executor:\n"
APPROVAL = "name: x\nactions: deploy\noutcome: require_approval\nreason: ok\n"

# (what is wrong, files beside the catalog, the expected problem)
BAD_FILES: list[tuple[str, dict[str, str], str]] = [
    ("yaml syntax", rule_file("name: x\nactions: [deploy\n"),
     "policies/10-rules.yaml, line 4: not valid YAML"),
    ("unknown operator", rule_file(RULE + "when:\n  params:\n    replicas: {greater: 50}"),
     "policies/10-rules.yaml, line 8: rules[0].when.params.replicas: unknown operator 'greater'; "
     "use one of eq, ne, in, not_in, gt, ge, lt, le, matches"),
    ("unknown action", rule_file("name: x\nactions: [restart, deplyo]\noutcome: allow\nreason: ok"),
     "policies/10-rules.yaml, line 3: rules[0].actions[1]: unknown action 'deplyo' (did you mean 'deploy'?); "
     "known actions: deploy, restart"),
    ("unknown parameter", rule_file(RULE + "when: {params: {replica: 3}}"),
     "policies/10-rules.yaml, line 6: rules[0].when.params.replica: 'replica' is not a parameter of deploy"),
    ("parameter missing from one of the actions",
     rule_file("name: x\nactions: [deploy, restart]\noutcome: allow\nreason: ok\n"
               "when: {params: {env: prod}}"),
     "line 6: rules[0].when.params.env: 'env' is not a parameter of restart"),
    ("operand not in the enum", rule_file(RULE + "when: {params: {env: production}}"),
     "line 6: rules[0].when.params.env: eq: 'production' must be one of staging, prod"),
    ("comparison on a string", rule_file(RULE + "when: {params: {env: {gt: 3}}}"),
     "line 6: rules[0].when.params.env: gt compares numbers; env is a string parameter"),
    ("unknown approval group", rule_file(APPROVAL + "approval:\n  count: 1\n  groups: [sre, srre-team]"),
     "policies/10-rules.yaml, line 8: rules[0].approval.groups[1]: unknown group 'srre-team'"),
    ("approval count below one", rule_file(APPROVAL + "approval: {count: 0, groups: [sre]}"),
     "line 6: rules[0].approval.count: input should be greater than or equal to 1 (got 0)"),
    ("unknown requester group", rule_file(RULE + "when:\n  requester_in: [lead]"),
     "line 7: rules[0].when.requester_in[0]: unknown group 'lead' (did you mean 'leads'?)"),
    ("channel name instead of id", rule_file(RULE + "when: {channel_in: '#incidents'}"),
     "line 6: rules[0].when.channel_in: '#incidents' is not a Slack channel id"),
    ("bare no as a reason", rule_file("name: x\nactions: deploy\noutcome: deny\nreason: no"),
     "line 5: rules[0].reason: input should be a valid string (got False); put it in quotes"),
    ("conditions not a mapping", rule_file(RULE + "when: [env]"),
     "policies/10-rules.yaml, line 6: rules[0].when: must be a mapping (name: value)"),
    ("missing reason", rule_file("name: x\nactions: deploy\noutcome: allow"),
     "policies/10-rules.yaml, line 2: rules[0]: missing required field 'reason'"),
    ("unknown rule field", rule_file(RULE + "condition: {}"),
     "policies/10-rules.yaml, line 6: rules[0]: unknown field 'condition'"),
    ("unknown outcome", rule_file("name: x\nactions: deploy\noutcome: permit\nreason: ok"),
     "line 4: rules[0].outcome: 'permit' is not allowed; use 'deny', 'allow' or 'require_approval'"),
    ("approval missing", rule_file(APPROVAL),
     "line 4: rules[0].outcome: require_approval needs approval:"),
    ("approval with another outcome", rule_file(RULE + "approval: {count: 1, groups: [sre]}"),
     "line 6: rules[0].approval: is only used with outcome require_approval"),
    ("duplicate rule name",
     {"10-rules.yaml": "rules:\n  - {name: x, actions: deploy, outcome: allow, reason: a}\n"
                       "  - {name: x, actions: deploy, outcome: deny, reason: b}\n"},
     "line 3: rules[1].name: rule name 'x' is already used at policies/10-rules.yaml:2"),
    ("unknown timezone", rule_file(FREEZE + "    {from: '17:00', to: '08:00', timezone: Europe/Berln}"),
     "line 8: rules[0].when.freeze.timezone: unknown timezone 'Europe/Berln'; use an IANA name"),
    ("bad clock time",
     rule_file(FREEZE + "    - days: [fri]\n      from: '25:00'\n      to: '08:00'\n      timezone: UTC"),
     "policies/10-rules.yaml, line 9: rules[0].when.freeze[0].from: '25:00' is not a clock time"),
    ("unknown day", rule_file(FREEZE + "    {from: fryday 17:00, to: mon 08:00, timezone: UTC}"),
     "line 8: rules[0].when.freeze.from: unknown day 'fryday'; use mon, tue, wed, thu, fri, sat, sun"),
    ("day on one end only", rule_file(FREEZE + "    {from: fri 17:00, to: '08:00', timezone: UTC}"),
     "rules[0].when.freeze.to: give both from and to a day (fri 17:00, mon 08:00), or neither"),
    ("empty window", rule_file(FREEZE + "    {from: '08:00', to: '08:00', timezone: UTC}"),
     "rules[0].when.freeze.to: is the same time as from; a window needs a length"),
    ("unknown section", {"10-rules.yaml": "rule:\n  - name: x\n"},
     "policies/10-rules.yaml, line 1: rule: unknown section (did you mean 'rules'?)"),
    ("duplicate key", rule_file(RULE + "outcome: deny"),
     "policies/10-rules.yaml, line 6: rules[0].outcome: duplicate key (first at line 4)"),
    ("duplicate action across files",
     more_file("actions:\n  deploy:\n    description: again\n    executor: {kind: mlflow, alias: a}"),
     "policies/20-more.yaml, line 2: actions.deploy: action 'deploy' is already defined at "
     "policies/00-catalog.yaml:6"),
    ("webhook without url", more_file(HOOK + "      kind: webhook"),
     "policies/20-more.yaml, line 4: actions.hook.executor: a webhook executor needs url:"),
    ("command without program", more_file(HOOK + "      kind: command"),
     "line 4: actions.hook.executor: a command executor needs program:"),
    ("python without entry point", more_file(HOOK + "      kind: python"),
     "line 4: actions.hook.executor: a python executor needs entry_point:"),
    ("entry point without function", more_file(HOOK + "      kind: python\n      entry_point: bot.flags"),
     "line 6: actions.hook.executor.entry_point: write package.module:function"),
    ("field of another executor kind",
     more_file(HOOK + "      kind: command\n      program: x\n      url: https://example.com"),
     "line 7: actions.hook.executor.url: is for webhook and mcp executors, not command; remove it"),
    ("webhook url neither https nor env", more_file(HOOK + "      kind: webhook\n      url: example.com"),
     "line 6: actions.hook.executor.url: write https://… or ${ENV_NAME}"),
    ("mlflow parameter missing", more_file(HOOK + "      {kind: mlflow, alias: production}"),
     "line 4: actions.hook.executor.model_param: 'model' is not a parameter of hook; "
     "add it or set model_param:"),
    ("argument template names no parameter",
     more_file(HOOK + "      {kind: command, program: x, args: ['{nme}']}\n    params:\n      name: {}"),
     "actions.hook.executor.args[0]: {nme} is not a parameter of hook; use one of name"),
    ("regex that does not compile",
     more_file(HOOK + "      {kind: command, program: x}\n    params:\n      name: {pattern: '[a-z'}"),
     "policies/20-more.yaml, line 7: actions.hook.params.name.pattern: '[a-z' does not compile"),
    ("enum default outside the enum",
     more_file(HOOK + "      {kind: command, program: x}\n    params:\n      env:\n"
               "        enum: [staging, prod]\n        default: dev"),
     "line 9: actions.hook.params.env.default: the default 'dev' must be one of staging, prod"),
    ("unknown parameter field",
     more_file(HOOK + "      {kind: command, program: x}\n    params:\n      n:\n        typ: integer"),
     "line 8: actions.hook.params.n: unknown field 'typ' (did you mean 'type'?); valid fields: type, "
     "description"),
    ("group member that is not a group or id", more_file("groups:\n  team:\n    - U0ONE\n    - dana"),
     "policies/20-more.yaml, line 4: groups.team[1]: unknown group 'dana'"),
    ("groups in a cycle", more_file("groups:\n  a: [b]\n  b: [a]"),
     "policies/20-more.yaml, line 2: groups.a: groups contain each other in a cycle: a -> b -> a"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("files", "expected"), [case[1:] for case in BAD_FILES], ids=[c[0] for c in BAD_FILES]
)
def test_load_errors_name_file_line_and_field(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    """Each kind of mistake is reported as `file, line N: field: what is wrong and what to do`."""
    problems = problems_of(tmp_path, {"00-catalog.yaml": CATALOG, **files})
    assert any(expected in problem for problem in problems), "\n".join(problems)


def test_every_problem_in_every_file_is_reported_at_once(tmp_path: Path) -> None:
    """Two mistakes in two files give two problems, in file order, in one error."""
    files = {
        "00-catalog.yaml": CATALOG,
        "10-a.yaml": one_rule("name: a, actions: nope, outcome: allow, reason: r"),
        "20-b.yaml": one_rule("name: b, actions: deploy, outcome: maybe, reason: r"),
    }
    problems = problems_of(tmp_path, files)
    assert [problem.split(",")[0] for problem in problems] == ["policies/10-a.yaml", "policies/20-b.yaml"]


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda folder: None, "is not a folder"),
        (lambda folder: folder.mkdir(), "has no *.yaml or *.yml policy files"),
    ],
)
def test_a_missing_or_empty_folder_is_an_error(
    tmp_path: Path, make: Callable[[Path], None], expected: str
) -> None:
    """Without policy files nothing is allowed, and the error says why."""
    make(tmp_path / "policies")
    with pytest.raises(PolicyError, match=re.escape(expected)):
        load_policy(tmp_path / "policies")


def test_a_missing_runbook_is_a_warning_not_an_error(tmp_path: Path) -> None:
    """A runbook path that does not exist loads, with a warning naming file, line and path."""
    policy = policy_with(tmp_path, "rules: []", catalog=CATALOG + "        runbook: runbooks/restart.md\n")
    assert len(policy.warnings) == 1
    assert policy.warnings[0].startswith(
        "policies/00-catalog.yaml, line 21: actions.restart.runbook: runbooks/"
    )


def test_check_report_lists_problems_and_fails(tmp_path: Path) -> None:
    """`steward policy check` exits 1 with each problem on its own line."""
    code, text = check_report(write_tree(tmp_path / "policies", {"a.yaml": "rules: [{name: x}]\n"}))
    assert code == 1
    assert "  policies/a.yaml, line 1: rules[0]: missing required field 'actions'" in text.splitlines()


# ---- .yml files and risky commands


def test_a_deny_rule_in_a_yml_file_denies(tmp_path: Path) -> None:
    """A rule saved as `.yml` is read in file-name order like a `.yaml` one: its deny beats a later allow."""
    policy = policy_with(
        tmp_path,
        one_rule("name: allow-all, actions: deploy, outcome: allow, reason: fine"),
        extra={"05-freeze.yml": one_rule("name: no-deploys, actions: deploy, outcome: deny, reason: frozen")},
    )
    assert policy.files == ("policies/00-catalog.yaml", "policies/05-freeze.yml", "policies/10-rules.yaml")
    assert decide(policy, "deploy", {"service": "api"}) == "deny no-deploys"
    assert policy.warnings == ()


def test_a_yml_file_is_checked_like_any_other(tmp_path: Path) -> None:
    """A problem in a `.yml` file fails the load with its file and line, rather than being skipped."""
    problems = problems_of(tmp_path, {"00-catalog.yaml": CATALOG, "10-rules.yml": "rules: [{name: x}]\n"})
    assert "policies/10-rules.yml, line 1: rules[0]: missing required field 'actions'" in problems


def test_a_policy_folder_of_only_yml_files_loads(tmp_path: Path) -> None:
    """`.yml` alone is a policy too: nothing is left to deny by default because of the file's extension."""
    folder = write_tree(tmp_path / "policies", {"00-catalog.yml": CATALOG, "10-rules.yml": "rules: []\n"})
    assert set(load_policy(folder, knowledge_dir=tmp_path).actions) == {"deploy", "restart"}


def _command_warnings(tmp_path: Path, executor: str, params: str = "msg: {}") -> list[str]:
    """The warnings for one command action written with this executor and these parameters."""
    catalog = f"""
        actions:
          notify:
            description: Notify someone.
            executor: {executor}
            params: {{{params}}}
    """
    return list(policy_with(tmp_path, "rules: []", catalog=catalog).warnings)


@pytest.mark.parametrize(
    ("executor", "argv"),
    [
        ('{kind: command, program: sh, args: [-c, "echo {msg}"]}', "argv[1] '-c' makes sh run argv[2]"),
        ('{kind: command, program: /bin/bash, args: [-o, pipefail, -lc, "x {msg}"]}', "argv[3] '-lc'"),
        ('{kind: command, program: /usr/bin/env, args: [-i, A=1, python3.12, -c, "{msg}"]}', "argv[4] '-c'"),
        ("{kind: command, program: env, args: [-S, \"sh -c 'echo {msg}'\"]}", "argv[2] (split by env -S)"),
        ('{kind: command, program: sudo, args: [-u, root, busybox, sh, -c, "{msg}"]}', "argv[5] '-c'"),
        ('{kind: command, program: timeout, args: ["10", perl, -ne, "{msg}"]}', "argv[3] '-ne'"),
        ('{kind: command, program: perl, args: ["-eprint {msg}"]}', "makes perl run argv[1]"),
        ('{kind: command, program: ruby, args: [-e, "{msg}"]}', "argv[1] '-e' makes ruby"),
        ('{kind: command, program: node, args: ["--eval={msg}"]}', "argv[1] '--eval={msg}' makes node"),
        ('{kind: command, program: pwsh, args: [-Command, "{msg}"]}', "argv[1] '-Command' makes pwsh"),
        ("{kind: command, program: 'C:\\Tools\\PowerShell.exe', args: [-enc, '{msg}']}", "makes powershell"),
        ('{kind: command, program: zsh, args: [-c, "echo fixed"]}', "a parameter added to that code later"),
    ],
)
def test_a_shell_or_interpreter_given_inline_code_is_a_warning(
    tmp_path: Path, executor: str, argv: str
) -> None:
    """`sh -c`, `python -c`, `perl -e` … (also behind env, sudo, timeout or a full path) are named with
    their file, action and argv position."""
    (warning,) = [warning for warning in _command_warnings(tmp_path, executor) if " as code; " in warning]
    assert warning.startswith("policies/00-catalog.yaml, line 4: actions.notify.executor.args[")
    assert argv in warning


def test_a_parameter_chosen_program_behind_a_wrapper_is_a_warning(tmp_path: Path) -> None:
    """`env {tool}` lets the parameter pick the program that runs."""
    (warning,) = _command_warnings(
        tmp_path, '{kind: command, program: env, args: ["{tool}"]}', 'tool: {enum: [ls, "rm"]}'
    )
    assert "argv[1] '{tool}' is the program env runs: a parameter chooses which program runs" in warning


@pytest.mark.parametrize(
    ("args", "params", "why"),
    [
        ('["{msg}"]', "msg: {}", "argv[1] '{msg}' starts with msg, a free-text parameter"),
        ('[--to, "{msg}"]', "msg: {}", "argv[2] '{msg}' starts with msg"),
        ('["{msg}.txt"]', "msg: {}", "argv[1] '{msg}.txt' starts with msg"),
        ('["{msg}"]', "msg: {pattern: '\\S+'}", "whose pattern admits '-x'"),
        ('["{msg}"]', 'msg: {pattern: ".*"}', "whose pattern admits '-x'"),
    ],
)
def test_a_free_text_parameter_where_an_option_could_go_is_a_warning(
    tmp_path: Path, args: str, params: str, why: str
) -> None:
    """A value such as `--output=/etc/passwd` would be read as an option: the slot is named."""
    (warning,) = _command_warnings(tmp_path, f"{{kind: command, program: notify-send, args: {args}}}", params)
    assert why in warning and "a value starting with '-' would be read as an option" in warning


@pytest.mark.parametrize(
    ("args", "params"),
    [
        ('[--, "{msg}"]', "msg: {}"),  # after --, nothing is an option
        ('["--text={msg}"]', "msg: {}"),  # the value is glued to its flag
        ('["to:{msg}"]', "msg: {}"),  # the argument starts with fixed text
        ('["{msg}"]', 'msg: {pattern: "[a-z][a-z0-9-]*"}'),  # cannot start with -
        ('["{msg}"]', "msg: {enum: [a, b]}"),
        ('["{msg}"]', "msg: {type: integer, minimum: 0}"),
        ('[script.sh, "{msg}"]', 'msg: {pattern: "[a-z]+"}'),  # a script, not inline code
    ],
)
def test_safe_command_shapes_are_not_warned_about(tmp_path: Path, args: str, params: str) -> None:
    """Each shape that cannot turn a value into an option or code loads without a warning."""
    program = "bash" if "script.sh" in args else "notify-send"
    assert _command_warnings(tmp_path, f"{{kind: command, program: {program}, args: {args}}}", params) == []


# ---- what `steward policy check` finds on the machine it runs on


def _executor_warnings(tmp_path: Path, executor: str, params: str, environ: dict[str, str]) -> list[str]:
    """The warnings for one action (executor on line 4) checked against `environ`, as policy check does."""
    catalog = f"""
        actions:
          flip:
            description: Flip a flag.
            executor: {executor}
            params: {{{params}}}
    """
    folder = write_tree(tmp_path / "policies", {"00-catalog.yaml": catalog, "10-rules.yaml": "rules: []"})
    return list(load_policy(folder, knowledge_dir=tmp_path, environ=environ).warnings)


FLAG_PARAMS = "flag: {}, traffic_percent: {type: integer, default: 100}, env: {enum: [staging, prod]}"


@pytest.mark.parametrize(
    ("entry_point", "params", "expected"),
    [
        (
            "toggle_with_other_names",
            FLAG_PARAMS,
            "does not accept 'traffic_percent', 'env'; requires 'traffic', which flip does not declare.",
        ),
        (
            "toggle_with_reason",
            "flag: {}, reason: {required: false}",
            "requires 'reason', which a request may leave out (required: false, no default)",
        ),
        ("params_only", "flag: {}", "cannot be called as function(params, request_id)"),
    ],
)
def test_an_entry_point_whose_signature_disagrees_with_the_catalog_is_a_warning(
    tmp_path: Path, entry_point: str, params: str, expected: str
) -> None:
    """Policy check imports the entry point and compares its signature with the action's parameters."""
    executor = f"{{kind: python, entry_point: 'tests.entry_point_examples:{entry_point}'}}"
    (warning,) = _executor_warnings(tmp_path, executor, params, {})
    assert warning.startswith("policies/00-catalog.yaml, line 4: actions.flip.executor.entry_point: ")
    assert expected in warning


@pytest.mark.parametrize("entry_point", ["toggle_by_name", "anything"])
def test_an_entry_point_that_takes_the_catalog_parameters_is_not_warned_about(
    tmp_path: Path, entry_point: str
) -> None:
    """Keyword-only parameters named after the catalog's (or **params) load without a warning."""
    executor = f"{{kind: python, entry_point: 'tests.entry_point_examples:{entry_point}'}}"
    assert _executor_warnings(tmp_path, executor, FLAG_PARAMS, {}) == []


@pytest.mark.parametrize(
    ("entry_point", "expected"),
    [
        ("tests.no_such_module:run", "module 'tests.no_such_module' cannot be imported (ModuleNotFoundError"),
        (
            "tests.entry_point_examples:missing",
            "module 'tests.entry_point_examples' has no attribute 'missing'",
        ),
    ],
)
def test_an_entry_point_that_cannot_be_imported_is_a_warning(
    tmp_path: Path, entry_point: str, expected: str
) -> None:
    """An import error names the module, at the entry point's line; the policy still loads."""
    (warning,) = _executor_warnings(
        tmp_path, f"{{kind: python, entry_point: '{entry_point}'}}", "flag: {}", {}
    )
    assert warning.startswith(
        f"policies/00-catalog.yaml, line 4: actions.flip.executor.entry_point: {expected}"
    )


def test_a_command_program_not_on_path_is_a_warning(tmp_path: Path) -> None:
    """A program PATH does not find is named, at its line; found on PATH (or by full path) it is not."""
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "flipctl").write_text("#!/bin/sh\n", encoding="utf-8")
    (tools / "flipctl").chmod(0o755)
    executor = "{kind: command, program: flipctl, args: ['{flag}']}"
    (warning,) = _executor_warnings(tmp_path, executor, "flag: {enum: [a, b]}", {"PATH": "/nonexistent"})
    assert warning == (
        "policies/00-catalog.yaml, line 4: actions.flip.executor.program: 'flipctl' is not on PATH here, so "
        "the action fails when it runs; install it on the server, write its full path, or change the program"
    )
    assert _executor_warnings(tmp_path, executor, "flag: {enum: [a, b]}", {"PATH": str(tools)}) == []
    by_path = f"{{kind: command, program: {tools / 'flipctl'}, args: ['{{flag}}']}}"
    assert _executor_warnings(tmp_path, by_path, "flag: {enum: [a, b]}", {"PATH": "/nonexistent"}) == []


def test_an_unset_variable_in_a_url_is_a_warning(tmp_path: Path) -> None:
    """${VAR} in a webhook url (and the secret_env variable) unset here: a warning each, gone once set."""
    lines = ["", "kind: webhook", "url: ${FLIP_URL}/flags/${FLIP_TENANT}", "secret_env: FLIP_KEY"]
    executor = f"\n{' ' * 14}".join(lines)  # a block mapping under the catalog's `executor:`
    warnings = _executor_warnings(tmp_path, executor, "flag: {}", {"FLIP_TENANT": "acme"})
    assert [warning.split(": ")[1] for warning in warnings] == [
        "actions.flip.executor.url",
        "actions.flip.executor.secret_env",
    ]
    assert warnings[0].startswith("policies/00-catalog.yaml, line 6: ")
    assert "${FLIP_URL} is not set here, so the action fails when it runs unless" in warnings[0]
    assert "FLIP_TENANT" not in warnings[0]
    assert warnings[1].startswith("policies/00-catalog.yaml, line 7: ")
    environ = {"FLIP_TENANT": "acme", "FLIP_URL": "https://flags.example", "FLIP_KEY": "k"}
    assert _executor_warnings(tmp_path, executor, "flag: {}", environ) == []


# ---- evaluation


def test_a_request_no_rule_allows_is_denied_by_default(tmp_path: Path) -> None:
    """Deny by default: rule None and a reason saying so."""
    rule = "name: p, actions: deploy, when: {params: {env: prod}}, outcome: allow, reason: ok"
    policy = policy_with(tmp_path, one_rule(rule))
    request = ActionRequest(action="deploy", params={"service": "api"})
    decision = evaluate(policy, request, Actor(user_id="U0X"), WEDNESDAY_NOON, resolver)
    assert (decision.outcome, decision.rule) == ("deny", None)
    assert "denied by default" in decision.reason


@pytest.mark.parametrize(
    ("action", "params", "reason"),
    [
        ("deplyo", {}, "unknown action 'deplyo' (did you mean 'deploy'?); valid actions: deploy, restart"),
        (
            "deploy",
            {"service": "api", "replicas": "3"},
            "invalid parameters: replicas: '3' is not an integer",
        ),
        ("deploy", {"service": "api", "colour": "red"}, "invalid parameters: unknown parameter 'colour'"),
        ("deploy", {}, "invalid parameters: service: missing"),
    ],
)
def test_unknown_actions_and_invalid_params_are_denied(
    tmp_path: Path, action: str, params: dict[str, object], reason: str
) -> None:
    """A request the catalog cannot describe is denied, even under an allow-everything rule."""
    policy = policy_with(tmp_path, one_rule("name: all, actions: '*', outcome: allow, reason: ok"))
    request = ActionRequest(action=action, params=params)
    decision = evaluate(policy, request, Actor(user_id="U0X"), WEDNESDAY_NOON, resolver)
    assert (decision.outcome, decision.rule, decision.reason) == ("deny", None, reason)


def test_the_first_matching_rule_wins(tmp_path: Path) -> None:
    """Of two matching rules in one file, the one written first decides."""
    policy = policy_with(tmp_path, """
        rules:
          - {name: deny-prod, actions: deploy, when: {params: {env: prod}}, outcome: deny, reason: frozen}
          - {name: allow-all, actions: '*', outcome: allow, reason: fine}
    """)  # fmt: skip
    assert decide(policy, "deploy", {"service": "api", "env": "prod"}) == "deny deny-prod"
    assert decide(policy, "deploy", {"service": "api", "env": "staging"}) == "allow allow-all"


def test_files_are_checked_in_file_name_order(tmp_path: Path) -> None:
    """A rule in 05-*.yaml comes before one in 10-*.yaml, whatever their content."""
    earlier = {"05-freeze.yaml": one_rule("name: earlier, actions: deploy, outcome: deny, reason: stop")}
    policy = policy_with(
        tmp_path, one_rule("name: later, actions: deploy, outcome: allow, reason: ok"), extra=earlier
    )
    assert [rule.name for rule in policy.rules] == ["earlier", "later"]
    assert decide(policy, "deploy", {"service": "api"}) == "deny earlier"


@pytest.mark.parametrize(
    ("condition", "params", "matches"),
    [
        ("env: prod", {"env": "prod"}, True),
        ("env: prod", {"env": "staging"}, False),
        ("env: {eq: prod}", {"env": "prod"}, True),
        ("env: {ne: prod}", {"env": "staging"}, True),
        ("env: {ne: prod}", {"env": "prod"}, False),
        ("env: {in: [staging, prod]}", {"env": "prod"}, True),
        ("env: [staging]", {"env": "prod"}, False),
        ("env: {not_in: [prod]}", {"env": "staging"}, True),
        ("env: {not_in: [prod]}", {"env": "prod"}, False),
        ("replicas: {gt: 20}", {"replicas": 21}, True),
        ("replicas: {gt: 20}", {"replicas": 20}, False),
        ("replicas: {ge: 20}", {"replicas": 20}, True),
        ("replicas: {lt: 20}", {"replicas": 19}, True),
        ("replicas: {lt: 20}", {"replicas": 20}, False),
        ("replicas: {le: 20}", {"replicas": 20}, True),
        ("replicas: {gt: 10, le: 20}", {"replicas": 15}, True),
        ("replicas: {gt: 10, le: 20}", {"replicas": 25}, False),
        ("replicas: {lt: 5}", {}, True),  # the default, 1, is used
        ("ratio: {gt: 0.5}", {"ratio": 0.75}, True),
        ("ratio: {gt: 0.5}", {}, False),
        ("ratio: {ne: 0.5}", {}, False),
        ("dry_run: yes", {"dry_run": True}, True),
        ("dry_run: false", {}, True),
        ("service: {matches: 'api-.*'}", {"service": "api-eu"}, True),
        ("service: {matches: 'api'}", {"service": "api-eu"}, False),
    ],
)
def test_each_operator(tmp_path: Path, condition: str, params: dict[str, object], matches: bool) -> None:
    """Operators compare typed values, defaults included; a parameter the request lacks never matches."""
    policy = policy_with(tmp_path, one_rule(f"name: r, actions: deploy, when: {{params: {{{condition}}}}}, "
                                            "outcome: allow, reason: ok"))  # fmt: skip
    assert decide(policy, "deploy", {"service": "api", **params}) == ("allow r" if matches else "deny None")


WEEKEND = "{from: fri 17:00, to: mon 08:00, timezone: Europe/Berlin}"
SPRING = "{days: [sun], from: '01:00', to: '03:00', timezone: Europe/Berlin}"
AUTUMN = "{days: [sun], from: '02:00', to: '03:00', timezone: Europe/Berlin}"

# (name, window, moment, inside)
FREEZES: list[tuple[str, str, dt.datetime, bool]] = [
    ("weekend start", WEEKEND, dt.datetime(2026, 11, 27, 17, 0, tzinfo=BERLIN), True),
    ("weekend before", WEEKEND, dt.datetime(2026, 11, 27, 16, 59, 59, tzinfo=BERLIN), False),
    ("weekend sunday", WEEKEND, dt.datetime(2026, 11, 29, 13, 0, tzinfo=BERLIN), True),
    ("weekend end is exclusive", WEEKEND, dt.datetime(2026, 11, 30, 8, 0, tzinfo=BERLIN), False),
    ("weekend, asked from New York", WEEKEND, dt.datetime(2026, 11, 27, 11, 30, tzinfo=NEW_YORK), True),
    ("judged in the window's zone", "{from: fri 17:00, to: mon 08:00, timezone: America/New_York}",
     dt.datetime(2026, 11, 27, 18, 0, tzinfo=BERLIN), False),
    ("wrap from sunday into monday", "{from: sun 22:00, to: mon 02:00, timezone: UTC}",
     dt.datetime(2026, 11, 30, 1, 0, tzinfo=UTC), True),
    ("almost a whole week", "{from: wed 12:00, to: wed 11:00, timezone: UTC}",
     dt.datetime(2026, 11, 30, 1, 0, tzinfo=UTC), True),
    ("daily overnight, after midnight", "{days: [mon], from: '22:00', to: '06:00', timezone: UTC}",
     dt.datetime(2026, 11, 24, 5, 59, tzinfo=UTC), True),
    ("daily overnight, another day's night", "{days: [mon], from: '22:00', to: '06:00', timezone: UTC}",
     dt.datetime(2026, 11, 25, 5, 0, tzinfo=UTC), False),
    ("daily: sunday night runs into monday", "{days: [sun], from: '22:00', to: '06:00', timezone: UTC}",
     dt.datetime(2026, 11, 30, 3, 0, tzinfo=UTC), True),
    ("daily: every day without days", "{from: '12:00', to: '13:00', timezone: UTC}",
     dt.datetime(2026, 11, 26, 12, 30, tzinfo=UTC), True),
    ("daily: until 24:00", "{days: [fri], from: '18:00', to: '24:00', timezone: UTC}",
     dt.datetime(2026, 11, 27, 23, 59, tzinfo=UTC), True),
    ("daily: whole days", "{days: [saturday, Sunday], from: '00:00', to: '24:00', timezone: UTC}",
     dt.datetime(2026, 11, 29, 23, 59, tzinfo=UTC), True),
    ("a naive time is UTC", "{days: [wed], from: '10:00', to: '11:00', timezone: UTC}",
     dt.datetime(2026, 11, 25, 10, 30), True),
    ("summer: 15:00 UTC is 17:00 CEST", WEEKEND, dt.datetime(2026, 7, 3, 15, 0, tzinfo=UTC), True),
    ("winter: 15:00 UTC is 16:00 CET", WEEKEND, dt.datetime(2026, 11, 27, 15, 0, tzinfo=UTC), False),
    # Spring forward, 2026-03-29: 02:00 CET jumps to 03:00 CEST at 01:00 UTC; the window is an hour short.
    ("spring: 01:59 CET is inside", SPRING, dt.datetime(2026, 3, 29, 0, 59, tzinfo=UTC), True),
    ("spring: a minute later is 03:00 CEST", SPRING, dt.datetime(2026, 3, 29, 1, 0, tzinfo=UTC), False),
    # Fall back, 2026-10-25: 03:00 CEST returns to 02:00 CET at 01:00 UTC; both 02:30s are inside.
    ("autumn: the first 02:30 (CEST)", AUTUMN, dt.datetime(2026, 10, 25, 0, 30, tzinfo=UTC), True),
    ("autumn: the second 02:30 (CET)", AUTUMN, dt.datetime(2026, 10, 25, 1, 30, tzinfo=UTC), True),
    ("autumn: 03:00 CET", AUTUMN, dt.datetime(2026, 10, 25, 2, 0, tzinfo=UTC), False),
    ("any of a list of windows", "[{days: [mon], from: '01:00', to: '02:00', timezone: UTC}, "
     "{days: [wed], from: '01:00', to: '02:00', timezone: UTC}]",
     dt.datetime(2026, 11, 25, 1, 0, tzinfo=UTC), True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("window", "moment", "inside"), [case[1:] for case in FREEZES], ids=[c[0] for c in FREEZES]
)
def test_freeze_windows(tmp_path: Path, window: str, moment: dt.datetime, inside: bool) -> None:
    """Windows are local wall-clock times: start inclusive, end exclusive, over midnight, weekends and DST."""
    policy = policy_with(tmp_path, f"""
        rules:
          - {{name: freeze, actions: deploy, when: {{freeze: {window}}}, outcome: deny, reason: frozen}}
          - {{name: open, actions: deploy, outcome: allow, reason: ok}}
    """)  # fmt: skip
    request = ActionRequest(action="deploy", params={"service": "api"})
    decision = evaluate(policy, request, Actor(user_id="U0X"), moment, resolver)
    assert decision.rule == ("freeze" if inside else "open")


@pytest.mark.parametrize(
    ("requester_in", "user", "matches"),
    [
        ("[U0ME]", "U0ME", True),
        ("[U0ME]", "U0YOU", False),
        ("[sre]", "U0SRE2", True),
        ("[sre]", "U0ML1", False),
        ("[leads]", "U0LEAD", True),
        ("[leads]", "U0ML1", True),  # leads includes ml
        ("[leads]", "U0SLACK1", True),  # ml includes the Slack user group S0MLTEAM
        ("[S0MLTEAM]", "U0SLACK2", True),
        ("[S0MLTEAM]", "U0SRE1", False),
        ("[sre, ml]", "U0SLACK1", True),
    ],
)
def test_requester_groups(tmp_path: Path, requester_in: str, user: str, matches: bool) -> None:
    """`requester_in` takes user ids, policy groups (nested) and Slack user groups (via the resolver)."""
    rule = f"name: r, actions: deploy, when: {{requester_in: {requester_in}}}, outcome: allow, reason: ok"
    policy = policy_with(tmp_path, one_rule(rule))
    assert decide(policy, "deploy", {"service": "api"}, user) == ("allow r" if matches else "deny None")


@pytest.mark.parametrize(("channel", "matches"), [("C0INCIDENT", True), ("C0RANDOM", False), (None, False)])
def test_channel_condition(tmp_path: Path, channel: str | None, matches: bool) -> None:
    """`channel_in` matches the channel of the request; a request without a channel never matches."""
    rule = "name: r, actions: deploy, when: {channel_in: [C0INCIDENT]}, outcome: allow, reason: ok"
    policy = policy_with(tmp_path, one_rule(rule))
    assert decide(policy, "deploy", {"service": "api"}, channel=channel) == (
        "allow r" if matches else "deny None"
    )


def test_slack_is_asked_only_when_the_policy_lists_do_not_settle_membership(tmp_path: Path) -> None:
    """The resolver is called only for a user not found in the policy's own lists."""
    rule = "name: r, actions: deploy, when: {requester_in: [ml]}, outcome: allow, reason: ok"
    policy = policy_with(tmp_path, one_rule(rule))
    asked: list[str] = []

    def counting(usergroup: str) -> frozenset[str]:
        asked.append(usergroup)
        return resolver(usergroup)

    request = ActionRequest(action="deploy", params={"service": "api"})
    evaluate(policy, request, Actor(user_id="U0ML1"), WEDNESDAY_NOON, counting)
    assert asked == []
    evaluate(policy, request, Actor(user_id="U0SLACK1"), WEDNESDAY_NOON, counting)
    assert asked == ["S0MLTEAM"]


def test_the_decision_records_rule_reason_approval_and_version(tmp_path: Path) -> None:
    """A decision carries the rule's name, its reason, the approval requirement and the policy version."""
    policy = policy_with(tmp_path, one_rule("name: two-sre, actions: deploy, outcome: require_approval, "
                                            "approval: {count: 2, groups: [sre], within_minutes: 30}, "
                                            "reason: Two SREs look first."))  # fmt: skip
    request = ActionRequest(action="deploy", params={"service": "api"})
    decision = evaluate(policy, request, Actor(user_id="U0X"), WEDNESDAY_NOON, resolver)
    assert (decision.rule, decision.reason) == ("two-sre", "Two SREs look first.")
    assert decision.approval == ApprovalRequirement(count=2, groups=("sre",), within_minutes=30)
    assert (decision.policy_version, decision.evaluated_at) == (policy.version, WEDNESDAY_NOON)


def test_explain_names_the_rule_its_line_and_the_rules_that_did_not_match(tmp_path: Path) -> None:
    """The explanation: decision, rule (file:line), why, approval, earlier misses one per line, version."""
    policy = policy_with(tmp_path, """
        rules:
          - {name: staging, actions: deploy, when: {params: {env: staging}}, outcome: allow, reason: free}
          - {name: sre-only, actions: deploy, when: {requester_in: [sre]}, outcome: allow, reason: sre}
          - {name: others, actions: restart, outcome: allow, reason: other}
          - name: prod
            actions: deploy
            when: {params: {env: prod}}
            outcome: require_approval
            approval: {count: 1, groups: [sre]}
            reason: One SRE approves production deploys.
    """)  # fmt: skip
    request = ActionRequest(action="deploy", params={"service": "api", "env": "prod"})
    text = explain(policy, request, Actor(user_id="U0ML1", channel="C0OPS"), WEDNESDAY_NOON, resolver)
    assert text.splitlines() == [
        f"request: deploy service=api env=prod, by U0ML1 in C0OPS at {WEDNESDAY_NOON.isoformat()}",
        "decision: require_approval",
        "rule: prod (policies/10-rules.yaml:5)",
        "why: One SRE approves production deploys.",
        "matched because: env == prod",
        "approval: 1 from sre within 60 minutes; the requester cannot approve; can approve: U0SRE1, U0SRE2",
        "rules about deploy that did not match:",
        "  - staging (policies/10-rules.yaml:2): env is prod, so not env == staging",
        "  - sre-only (policies/10-rules.yaml:3): requester U0ML1 is not in sre",
        "rules about other actions, not considered: 1",
        "requester's groups: leads, ml",
        f"policy version: {policy.version}",
    ]


# ---- approvals

NEEDS_ML_OR_SRE = ApprovalRequirement(count=2, groups=("ml", "sre"), within_minutes=30)


def test_eligible_approvers_expand_nested_and_slack_groups(catalog_only: Policy) -> None:
    """Eligible approvers are the user ids of every named group, Slack user groups resolved."""
    approvers = eligible_approvers(NEEDS_ML_OR_SRE, catalog_only, resolver)
    assert approvers == {"U0ML1", "U0SLACK1", "U0SLACK2", "U0SRE1", "U0SRE2"}
    assert groups_of("U0SLACK1", catalog_only, resolver) == {"ml", "leads"}


@pytest.mark.parametrize(
    ("user", "already", "expected"),
    [
        ("U0SRE1", (), (True, "counts as an approval from sre")),
        ("U0SLACK2", (), (True, "counts as an approval from ml")),
        ("U0REQ", (), (False, "you are the requester; someone else in ml or sre must approve")),
        ("U0LEAD", (), (False, "approvers must be in ml or sre")),
        ("U0SRE1", ("U0SRE1",), (False, "you have already approved; each approver counts once")),
    ],
)
def test_counts_as_approval(
    catalog_only: Policy, user: str, already: tuple[str, ...], expected: object
) -> None:
    """An approval counts only from a group member who is not the requester and has not approved yet."""
    result = counts_as_approval(
        user, "U0REQ", NEEDS_ML_OR_SRE, catalog_only, resolver, already_approved=already
    )
    assert result == expected


def test_the_requester_is_never_an_approver_even_when_in_the_group(catalog_only: Policy) -> None:
    """An SRE asking for an SRE-approved action cannot approve it."""
    assert counts_as_approval("U0SRE1", "U0SRE1", NEEDS_ML_OR_SRE, catalog_only, resolver)[0] is False


def test_each_approver_counts_once(catalog_only: Policy) -> None:
    """Repeated clicks, the requester and outsiders do not add up to the required count."""
    clicks = ["U0SRE1", "U0SRE1", "U0REQ", "U0OUT", "U0SLACK1", "U0SRE1"]
    assert counted_approvers(clicks, "U0REQ", NEEDS_ML_OR_SRE, catalog_only, resolver) == (
        "U0SRE1",
        "U0SLACK1",
    )


# ---- parameters


def test_parse_params_converts_types_and_fills_defaults(catalog_only: Policy) -> None:
    """Strings become integers, numbers and booleans; missing optional parameters take their defaults."""
    raw = {"service": "api", "replicas": "12", "ratio": "0.25", "dry_run": "YES"}
    assert parse_params(catalog_only.actions["deploy"], raw) == {
        "service": "api",
        "env": "staging",
        "replicas": 12,
        "ratio": 0.25,
        "dry_run": True,
    }


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"replicas": "twelve"}, "replicas: 'twelve' is not an integer"),
        ({"replicas": "1.5"}, "replicas: '1.5' is not an integer"),
        ({"replicas": "101"}, "replicas: 101 is out of range; must be between 1 and 100"),
        ({"replicas": "0"}, "replicas: 0 is out of range; must be between 1 and 100"),
        ({"ratio": "half"}, "ratio: 'half' is not a number"),
        ({"ratio": "nan"}, "ratio: 'nan' is not a number"),
        ({"dry_run": "maybe"}, "dry_run: 'maybe' is not a boolean; use yes, no, true or false"),
        ({"env": "production"}, "env: 'production' must be one of staging, prod"),
        ({"service": "API"}, "service: 'API' does not match the pattern [a-z][a-z-]*"),
        ({"service": ""}, "service: empty; give a value or leave the parameter out"),
        (
            {"enviroment": "prod"},
            "unknown parameter 'enviroment'; valid: service, env, replicas, ratio, dry_run",
        ),
        ({"servce": "api"}, "unknown parameter 'servce' (did you mean 'service'?); valid: service, env"),
    ],
)
def test_parse_params_errors_say_what_is_valid(
    catalog_only: Policy, raw: dict[str, str], problem: str
) -> None:
    """Each bad value is reported with what would be valid."""
    with pytest.raises(ParamError) as caught:
        parse_params(catalog_only.actions["deploy"], {"service": "api", **raw})
    assert any(found.startswith(problem) for found in caught.value.problems), caught.value.problems


def test_parse_params_reports_every_problem_and_the_usage(catalog_only: Policy) -> None:
    """All problems come at once, followed by a usage line."""
    with pytest.raises(ParamError) as caught:
        parse_params(catalog_only.actions["deploy"], {"replicas": "x", "env": "dev"})
    assert caught.value.problems == (
        "service: missing; it is required",
        "env: 'dev' must be one of staging, prod",
        "replicas: 'x' is not an integer",
    )
    assert str(caught.value).splitlines()[-1] == (
        "usage: deploy service=<string> [env=staging|prod] [replicas=<integer between 1 and 100>] "
        "[ratio=<number>] [dry_run=yes|no]"
    )


def test_build_request_rejects_an_unknown_action(catalog_only: Policy) -> None:
    """Asking for an action that does not exist lists the valid ones."""
    with pytest.raises(
        ParamError, match=re.escape("unknown action 'deploi' (did you mean 'deploy'?); valid")
    ):
        build_request(catalog_only, "deploi", {})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model=fraud-scorer version=41", {"model": "fraud-scorer", "version": "41"}),
        ('note="two words" empty=', {"note": "two words", "empty": ""}),
        ("url=https://x.example/a=b", {"url": "https://x.example/a=b"}),
        ("", {}),
        ("env=prod version=3 env=prod", {"env": "prod", "version": "3"}),  # the same value twice is fine
    ],
)
def test_parse_key_values(text: str, expected: dict[str, str]) -> None:
    """`key=value` pairs with shell quoting; only the first '=' splits."""
    assert parse_key_values(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("model=x prod", "'prod' is not key=value; write it as name=prod"),
        ("=x", "'=x' has no name before '='"),
        ("a=1 a=2", "I read a as both `1` and `2`; say which one"),
        ("env=prod env=staging env=stg env=prod", "I read env as `prod`, `staging` and `stg`; say which one"),
        ('note="open', "cannot read 'note=\"open': No closing quotation; close the quote"),
    ],
)
def test_parse_key_values_errors(text: str, problem: str) -> None:
    """A token without '=', a repeated key or an open quote is a clear error."""
    with pytest.raises(ParamError) as caught:
        parse_key_values(text)
    assert caught.value.problems == (problem,)


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        ("${HOOK_URL}", {"HOOK_URL": "https://hooks.example/a"}, "https://hooks.example/a"),
        ("https://${HOST}/scale", {"HOST": "ops.example"}, "https://ops.example/scale"),
        ("https://plain.example", {}, "https://plain.example"),
    ],
)
def test_expand_env_fills_webhook_urls_at_run_time(text: str, environ: dict[str, str], expected: str) -> None:
    """`${NAME}` in an executor setting is replaced from the environment given."""
    assert expand_env(text, environ) == expected


def test_expand_env_names_a_missing_variable() -> None:
    """A variable that is not set is an error naming it."""
    with pytest.raises(ValueError, match="environment variable HOOK_URL is not set"):
        expand_env("${HOOK_URL}", {})


# ---- version


def test_the_version_changes_when_a_file_changes(tmp_path: Path) -> None:
    """Same bytes, same version; an edit (even a comment) or a rename gives a new one."""
    first = policy_with(tmp_path / "a", "rules: []").version
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert policy_with(tmp_path / "b", "rules: []").version == first
    assert policy_with(tmp_path / "c", "rules: []  # nothing yet").version != first
    renamed = write_tree(
        tmp_path / "d" / "policies", {"00-catalog.yaml": CATALOG, "11-rules.yaml": "rules: []"}
    )
    assert load_policy(renamed).version != first


# ---- property: evaluate never raises and agrees with explain

VALUES = st.one_of(
    st.integers(-5, 200),
    st.sampled_from(
        ["prod", "staging", "fraud-scorer", "support-assistant", "tools-off", "full", "", "PROD"]
    ),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.text(max_size=8),
)
MOMENTS = st.datetimes(
    min_value=dt.datetime(2000, 1, 1),
    max_value=dt.datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, BERLIN, NEW_YORK, ZoneInfo("Asia/Kolkata")]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), now=MOMENTS, channel=st.sampled_from([None, "C0INCIDENT"]))
def test_evaluate_never_raises_and_agrees_with_explain(
    starter: Policy, data: st.DataObject, now: dt.datetime, channel: str | None
) -> None:
    """For any request, person and moment: a decision whose rule exists, fits, and is the one explained."""
    action = data.draw(st.sampled_from([*starter.actions, "rolback-model", ""]))
    names = [param.name for param in starter.actions[action].params] if action in starter.actions else []
    keys = data.draw(st.lists(st.sampled_from([*names, "junk"]), unique=True, max_size=len(names) + 1))
    request = ActionRequest(action=action, params={key: data.draw(VALUES) for key in keys})
    users = sorted(
        {member for members in starter.groups.values() for member in members if member.startswith("U")}
    )
    actor = Actor(user_id=data.draw(st.sampled_from([*users, "U0STRANGER", "U0SLACK1"])), channel=channel)

    decision = evaluate(starter, request, actor, now, resolver)
    text = explain(starter, request, actor, now, resolver)

    assert f"\ndecision: {decision.outcome}\n" in text
    if decision.rule is None:
        assert decision.outcome == "deny" and "\nrule: none\n" in text
    else:
        rule = starter.rule(decision.rule)
        assert rule is not None and rule.outcome == decision.outcome and rule.covers(request.action)
        assert f"\nrule: {rule.name} ({rule.source})\n" in text
        assert (decision.approval is not None) == (decision.outcome == "require_approval")
