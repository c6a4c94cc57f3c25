"""AI agents in the policy: matched like people (`agent:NAME`, agent groups, the built-in `agents`), never
approvers, and their owner barred from approving their requests when a requirement says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.actions.approvals import ApprovalService
from bot.actions.models import ActionRequest, Actor, ApprovalRequirement, Refusal, Verb
from bot.actions.policy.engine import (
    Policy,
    approval_refusal,
    check_report,
    counted_approvers,
    counts_as_approval,
    eligible_approvers,
    evaluate,
    explain,
    groups_of,
    is_member,
)
from bot.actions.policy.gate import PolicyFolder, PolicyGate
from bot.cli import main
from bot.store.action_requests import ActionRequestStore
from tests.conftest import write_tree
from tests.support.clock import SettableClock
from tests.support.records import migrated_engine
from tests.test_policy import CATALOG, WEDNESDAY_NOON, policy_with, problems_of, resolver

AGENT_GROUPS = """
    groups:
      deploy-agents: [agent:release-bot, agent:retrain-bot]
      automation: [agents, U0BOTOWNER]
      mixed: [sre, agent:release-bot]
"""
RULES = """
    rules:
      - {name: release-bot-alone, actions: restart, when: {requester_in: agent:release-bot}, outcome: allow,
         reason: the release bot restarts}
      - {name: deploy-agents-staging, actions: deploy, when: {params: {env: staging},
         requester_in: [deploy-agents]}, outcome: allow, reason: agents deploy to staging}
      - {name: agents-never-prod, actions: deploy, when: {params: {env: prod}, requester_in: agents},
         outcome: deny, reason: no agent deploys to production}
      - {name: sre-prod, actions: deploy, when: {params: {env: prod}, requester_in: [sre]}, outcome: allow,
         reason: SRE deploys}
"""
RELEASE_BOT, RETRAIN_BOT, STRANGER = "agent:release-bot", "agent:retrain-bot", "agent:stranger"
OWNER = "U0SRE1"  # the release bot's owner, an SRE
NEEDS_SRE = ApprovalRequirement(count=1, groups=("sre",))
NEEDS_SRE_NOT_OWNER = ApprovalRequirement(count=1, groups=("sre",), owner_may_approve=False)


@pytest.fixture
def agents_policy(tmp_path: Path) -> Policy:
    """The test catalog, agent groups and rules that name agents three ways."""
    return policy_with(tmp_path, RULES, extra={"05-agents.yaml": AGENT_GROUPS})


def outcome(policy: Policy, action: str, params: dict[str, object], requester: str) -> str:
    """`outcome rule` for a request by `requester`, as one comparable string."""
    request = ActionRequest(action=action, params=params)
    decision = evaluate(policy, request, Actor(user_id=requester), WEDNESDAY_NOON, resolver)
    return f"{decision.outcome} {decision.rule}"


# ---- matching agents like people


@pytest.mark.parametrize(
    ("action", "params", "requester", "expected"),
    [
        ("restart", {"service": "api"}, RELEASE_BOT, "allow release-bot-alone"),  # named directly
        ("restart", {"service": "api"}, RETRAIN_BOT, "deny None"),  # another agent is not that one
        ("deploy", {"service": "api"}, RETRAIN_BOT, "allow deploy-agents-staging"),  # in an agent group
        ("deploy", {"service": "api"}, STRANGER, "deny None"),  # an agent outside the group
        ("deploy", {"service": "api", "env": "prod"}, STRANGER, "deny agents-never-prod"),  # built-in group
        ("deploy", {"service": "api", "env": "prod"}, "U0SRE1", "allow sre-prod"),  # a person is not in it
    ],
)
def test_rules_match_agents_directly_through_groups_and_through_agents(
    agents_policy: Policy, action: str, params: dict[str, object], requester: str, expected: str
) -> None:
    """`requester_in` matches an agent by `agent:NAME`, through a group of agents and through `agents`."""
    assert outcome(agents_policy, action, params, requester) == expected


def test_agents_nest_in_groups_and_the_built_in_group_holds_every_agent_and_no_person(
    agents_policy: Policy,
) -> None:
    """A group holding `agents` holds any agent; `agents` holds no person; a person's groups are unchanged."""
    assert is_member(STRANGER, "automation", agents_policy, resolver)
    assert is_member("U0BOTOWNER", "automation", agents_policy, resolver)
    assert not is_member("U0SRE1", "agents", agents_policy, resolver)
    assert groups_of(RELEASE_BOT, agents_policy, resolver) == {
        "deploy-agents",
        "automation",
        "mixed",
        "agents",
    }
    assert groups_of("U0SRE1", agents_policy, resolver) == {"sre", "mixed"}


def test_slack_is_never_asked_whether_an_agent_is_in_a_user_group(tmp_path: Path) -> None:
    """An agent is in no Slack user group, so checking one costs no Slack call."""
    asked: list[str] = []

    def counting(usergroup: str) -> frozenset[str]:
        asked.append(usergroup)
        return frozenset({RELEASE_BOT})  # even a resolver that claimed it would not be believed

    policy = policy_with(tmp_path, "rules: []")
    assert not is_member(RELEASE_BOT, "ml", policy, counting)  # ml holds the Slack user group S0MLTEAM
    assert asked == []
    assert is_member("U0SLACK1", "ml", policy, resolver)


# ---- loading


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"05-agents.yaml": "groups:\n  bots: [agent:Release Bot]\n"},
            "policies/05-agents.yaml, line 2: groups.bots[0]: 'agent:Release Bot' is not an agent id",
        ),
        (
            {"05-agents.yaml": "groups:\n  bots:\n    - U0SRE1\n    - agent:-dash-first\n"},
            "policies/05-agents.yaml, line 4: groups.bots[1]: 'agent:-dash-first' is not an agent id",
        ),
        (
            {"05-agents.yaml": "groups:\n  bots: [agent:" + "a" * 41 + "]\n"},
            "is not an agent id; write agent:NAME, the NAME the agent was added with: 1 to 40",
        ),
        (
            {
                "10-rules.yaml": "rules:\n  - {name: r, actions: deploy, when: {requester_in: 'agent:'},\n"
                "     outcome: allow, reason: x}\n"
            },
            "policies/10-rules.yaml, line 2: rules[0].when.requester_in: 'agent:' is not an agent id",
        ),
        (
            {"05-agents.yaml": "groups:\n  agents: [agent:release-bot]\n"},
            "policies/05-agents.yaml, line 2: groups.agents: 'agents' is built in",
        ),
        (
            {"05-agents.yaml": "groups:\n  bots: [agnets]\n"},
            "unknown group 'agnets' (did you mean 'agents'?)",
        ),
    ],
    ids=["space in the name", "dash first", "41 characters", "no name", "agents defined", "misspelt agents"],
)
def test_a_bad_agent_reference_is_a_loader_error_naming_file_and_line(
    tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    """A member or requester entry that is written like an agent but is not a valid one names file:line."""
    problems = problems_of(tmp_path, {"00-catalog.yaml": CATALOG, "10-rules.yaml": "rules: []", **files})
    assert any(expected in problem for problem in problems), "\n".join(problems)


def test_policy_check_warns_when_approver_groups_contain_agents(tmp_path: Path) -> None:
    """An approval requirement naming agents loads, with a warning: only its people can approve."""
    rules = """
        rules:
          - {name: prod, actions: deploy, outcome: require_approval, reason: two look first,
             approval: {count: 2, groups: [mixed, automation]}}
    """
    folder = write_tree(
        tmp_path / "policies",
        {"00-catalog.yaml": CATALOG, "05-agents.yaml": AGENT_GROUPS, "10-rules.yaml": rules},
    )
    code, report = check_report(folder, knowledge_dir=tmp_path, allowed_programs=("deploy",), environ={})
    assert code == 0, report
    warning = next(line for line in report.splitlines() if "approval.groups" in line)
    assert warning == (
        "warning: policies/10-rules.yaml, line 3: rules[0].approval.groups: names agent:release-bot, agents; "
        "an agent can never approve, so only the people here count"
    )


def test_an_approval_only_agents_could_give_is_reported_as_never_given(tmp_path: Path) -> None:
    """The count check counts people only: a requirement of agents alone can never be met."""
    rules = """
        rules:
          - {name: prod, actions: deploy, outcome: require_approval, reason: bots approve,
             approval: {count: 1, groups: [deploy-agents]}}
    """
    policy = policy_with(tmp_path, rules, extra={"05-agents.yaml": AGENT_GROUPS})
    assert any("have 0 members; it can never be approved" in warning for warning in policy.warnings)


def test_owner_may_approve_is_read_from_the_file_and_defaults_to_true(tmp_path: Path) -> None:
    """`owner_may_approve: false` reaches the decision's requirement; left out, it is true."""
    rules = """
        rules:
          - {name: staging, actions: deploy, when: {params: {env: staging}}, outcome: require_approval,
             reason: one SRE, approval: {count: 1, groups: [sre]}}
          - {name: prod, actions: deploy, when: {params: {env: prod}}, outcome: require_approval,
             reason: "one SRE, not the owner", approval: {count: 1, groups: [sre], owner_may_approve: false}}
    """
    policy = policy_with(tmp_path, rules)
    for env, allowed in (("staging", True), ("prod", False)):
        request = ActionRequest(action="deploy", params={"service": "api", "env": env})
        decision = evaluate(policy, request, Actor(user_id=RELEASE_BOT), WEDNESDAY_NOON, resolver)
        assert decision.approval is not None and decision.approval.owner_may_approve is allowed


# ---- agents never approve


@pytest.mark.parametrize("groups", [("mixed",), ("automation",), (RELEASE_BOT,), ("agents",)])
@pytest.mark.parametrize("verb", ["approve", "reject"])
def test_an_agent_never_approves_or_rejects_even_when_the_policy_names_it(
    agents_policy: Policy, groups: tuple[str, ...], verb: Verb
) -> None:
    """An agent is refused whatever groups the requirement names, with a reason of its own."""
    requirement = ApprovalRequirement(count=1, groups=groups)
    refusal = approval_refusal(RELEASE_BOT, "U0DEV", requirement, agents_policy, resolver)
    assert refusal == Refusal(reason="agent", groups=groups[0])
    assert refusal.render(verb) == f"an AI agent cannot {verb} a request; a person in {groups[0]} must {verb}"
    counts, why = counts_as_approval(RELEASE_BOT, "U0DEV", requirement, agents_policy, resolver)
    assert (counts, why) == (False, refusal.render("approve"))


def test_a_malformed_agent_id_is_refused_as_an_agent(agents_policy: Policy) -> None:
    """The `agent:` prefix decides: an id no policy could name is still never taken for a person."""
    refusal = approval_refusal("agent:Not Valid", "U0DEV", NEEDS_SRE, agents_policy, resolver)
    assert refusal is not None and refusal.reason == "agent"


def test_agents_are_never_counted_nor_listed_as_eligible(agents_policy: Policy) -> None:
    """Counting approvals skips agents; the eligible approvers of a mixed group are its people."""
    requirement = ApprovalRequirement(count=2, groups=("mixed", "automation"))
    clicks = [RELEASE_BOT, "U0SRE2", STRANGER, "U0BOTOWNER"]
    assert counted_approvers(clicks, "U0DEV", requirement, agents_policy, resolver) == (
        "U0SRE2",
        "U0BOTOWNER",
    )
    assert eligible_approvers(requirement, agents_policy, resolver) == {"U0SRE1", "U0SRE2", "U0BOTOWNER"}


# ---- the owner of the agent that asked


@pytest.mark.parametrize(
    ("requirement", "owner", "expected"),
    [
        (NEEDS_SRE, OWNER, (True, "counts as an approval from sre")),  # allowed by default
        (
            NEEDS_SRE_NOT_OWNER,
            OWNER,
            (False, "you own the agent that asked; someone else in sre must approve"),
        ),
        (NEEDS_SRE_NOT_OWNER, "U0SRE2", (True, "counts as an approval from sre")),  # owned by someone else
        (NEEDS_SRE_NOT_OWNER, None, (True, "counts as an approval from sre")),  # a person's request
    ],
    ids=["owner allowed by default", "owner barred", "another owner", "no agent"],
)
def test_the_owner_is_barred_only_when_the_requirement_says_so(
    agents_policy: Policy, requirement: ApprovalRequirement, owner: str | None, expected: tuple[bool, str]
) -> None:
    """`owner_may_approve: false` refuses the agent's owner; other approvers and other owners still count."""
    requester = RELEASE_BOT if owner is not None else "U0DEV"
    assert counts_as_approval(OWNER, requester, requirement, agents_policy, resolver, owner=owner) == expected


def test_a_barred_owner_is_not_counted_and_may_still_reject(agents_policy: Policy) -> None:
    """Counting leaves a barred owner out; a rejection (checked without the owner) stays open to them."""
    clicks = [OWNER, "U0SRE2"]
    counted = counted_approvers(
        clicks, RELEASE_BOT, NEEDS_SRE_NOT_OWNER, agents_policy, resolver, owner=OWNER
    )
    assert counted == ("U0SRE2",)
    assert approval_refusal(OWNER, RELEASE_BOT, NEEDS_SRE_NOT_OWNER, agents_policy, resolver) is None


def test_the_gate_passes_the_owner_through(agents_policy: Policy) -> None:
    """The approval flow's gate refuses a barred owner with the `owner` reason, and counts them otherwise."""
    gate = PolicyGate(agents_policy, resolver)
    refusal = gate.refusal(OWNER, RELEASE_BOT, NEEDS_SRE_NOT_OWNER, owner=OWNER)
    assert refusal == Refusal(reason="owner", groups="sre")
    assert refusal.render("approve") == "you own the agent that asked; someone else in sre must approve"
    assert gate.may_approve(OWNER, RELEASE_BOT, NEEDS_SRE, owner=OWNER) == (
        True,
        "counts as an approval from sre",
    )
    assert gate.may_approve(RELEASE_BOT, "U0DEV", NEEDS_SRE)[0] is False


# ---- explaining an agent's request


def test_explain_an_agents_request_names_the_agent_its_groups_and_the_owner_bar(tmp_path: Path) -> None:
    """Explaining an agent's request: its groups include `agents`, and its owner is barred from approving."""
    rules = """
        rules:
          - {name: agents-prod, actions: deploy, when: {params: {env: prod}, requester_in: agents},
             outcome: require_approval, reason: an agent's production deploy needs an SRE who does not own it,
             approval: {count: 1, groups: [sre], owner_may_approve: false}}
    """
    policy = policy_with(tmp_path, rules, extra={"05-agents.yaml": AGENT_GROUPS})
    request = ActionRequest(action="deploy", params={"service": "api", "env": "prod"})
    text = explain(policy, request, Actor(user_id=RELEASE_BOT), WEDNESDAY_NOON, resolver, owner=OWNER)
    lines = text.splitlines()
    assert lines[0] == f"request: deploy service=api env=prod, by agent:release-bot (owner {OWNER}) at " + (
        WEDNESDAY_NOON.isoformat()
    )
    assert "matched because: env == prod, requester is in agents" in lines
    assert (
        "approval: 1 from sre within 60 minutes; the requester cannot approve; the agent's owner cannot "
        "approve (owner_may_approve: false); can approve: U0SRE2"
    ) in lines
    assert "requester's groups: agents, automation, deploy-agents, mixed" in lines


def test_explain_an_agents_request_without_the_owner_bar_says_the_owner_may_approve(tmp_path: Path) -> None:
    """By default the owner stays among the people who can approve."""
    rules = """
        rules:
          - {name: prod, actions: deploy, outcome: require_approval, reason: one SRE,
             approval: {count: 1, groups: [sre]}}
    """
    policy = policy_with(tmp_path, rules)
    request = ActionRequest(action="deploy", params={"service": "api"})
    text = explain(policy, request, Actor(user_id=RETRAIN_BOT), WEDNESDAY_NOON, resolver, owner=OWNER)
    assert (
        "approval: 1 from sre within 60 minutes; the requester cannot approve; "
        "the agent's owner may approve; can approve: U0SRE1, U0SRE2"
    ) in text.splitlines()


# ---- the approval flow: who may click on an agent's request


OWNER_RULES = """
    rules:
      - {name: agents-prod, actions: deploy, when: {params: {env: prod}, requester_in: agents},
         outcome: require_approval, reason: an SRE who does not own the agent approves,
         approval: {count: 1, groups: [mixed], owner_may_approve: false}}
      - {name: agents-staging, actions: deploy, when: {params: {env: staging}, requester_in: agents},
         outcome: require_approval, reason: any SRE approves, approval: {count: 1, groups: [mixed]}}
"""


@pytest.fixture
def approvals(tmp_path: Path) -> ApprovalService:
    """The approval service over the agent rules, on a migrated SQLite file, on a Wednesday."""
    folder = write_tree(
        tmp_path / "policies",
        {"00-catalog.yaml": CATALOG, "05-agents.yaml": AGENT_GROUPS, "10-rules.yaml": OWNER_RULES},
    )
    store = ActionRequestStore(migrated_engine(tmp_path / "records.db"))
    return ApprovalService(store, PolicyFolder(folder), clock=SettableClock(WEDNESDAY_NOON.timestamp()))


def agent_request(approvals: ApprovalService, env: str) -> str:
    """The release bot (owned by OWNER) asks for a deploy; the request's id."""
    request = ActionRequest(action="deploy", params={"service": "api", "env": env})
    on_behalf = {
        "agent": "release-bot",
        "agent_token": "t0ken1d",
        "agent_owner": OWNER,
        "justification": "why",
    }
    view, decision = approvals.submit(request, Actor(user_id=RELEASE_BOT, channel="C0OPS"), "1.0", on_behalf)
    assert decision.outcome == "require_approval" and view.agent_owner == OWNER
    return view.request_id


def test_a_barred_owners_click_is_refused_and_another_approver_counts(approvals: ApprovalService) -> None:
    """With owner_may_approve: false the owner's approval is refused at the click; another SRE's counts."""
    request_id = agent_request(approvals, "prod")
    refused = approvals.approve(request_id, OWNER)
    assert (refused.changed, refused.message) == (
        False,
        "you own the agent that asked; someone else in mixed must approve",
    )
    assert approvals.approve(request_id, "U0SRE2").message == "Approved: the action will run now."


def test_the_owner_approves_when_the_requirement_does_not_bar_them(approvals: ApprovalService) -> None:
    """By default the owner is an approver like any other member of the groups."""
    request_id = agent_request(approvals, "staging")
    assert approvals.approve(request_id, OWNER).message == "Approved: the action will run now."


def test_a_barred_owner_may_still_reject_their_agents_request(approvals: ApprovalService) -> None:
    """Stopping one's own agent stays open: the owner's rejection ends the request."""
    request_id = agent_request(approvals, "prod")
    rejected = approvals.reject(request_id, OWNER, "not now")
    assert (rejected.changed, rejected.request and rejected.request.status) == (True, "rejected")


@pytest.mark.parametrize("agent", [RELEASE_BOT, STRANGER])
def test_an_agent_cannot_approve_or_reject_through_the_approval_service(
    approvals: ApprovalService, agent: str
) -> None:
    """An agent's click is refused even though the approver group `mixed` lists the release bot."""
    request_id = agent_request(approvals, "staging")
    approved = approvals.approve(request_id, agent)
    assert (approved.changed, approved.message) == (
        False,
        "an AI agent cannot approve a request; a person in mixed must approve",
    )
    rejected = approvals.reject(request_id, agent, "no")
    assert rejected.message == "an AI agent cannot reject a request; a person in mixed must reject"
    view = approvals.get(request_id)
    assert view is not None and (view.status, view.approvers) == ("pending", ())


# ---- `steward policy explain --as agent:NAME`


@pytest.fixture
def cli_policies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """STEWARD_POLICIES_DIR holding the agent rules, and an empty data dir for the records."""
    folder = write_tree(
        tmp_path / "policies",
        {"00-catalog.yaml": CATALOG, "05-agents.yaml": AGENT_GROUPS, "10-rules.yaml": OWNER_RULES},
    )
    monkeypatch.setenv("STEWARD_POLICIES_DIR", str(folder))
    monkeypatch.setenv("STEWARD_DATA_DIR", str(tmp_path / "data"))
    return folder


def steward(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in this process: exit code, stdout, stderr (argparse's refusals exit with 2)."""
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


EXPLAIN = ("policy", "explain", "deploy", "service=api", "env=prod", "--at", "2026-11-25T11:00:00Z")


@pytest.mark.usefixtures("cli_policies")
def test_policy_explain_takes_an_agent_and_its_owner(capsys: pytest.CaptureFixture[str]) -> None:
    """`--as agent:NAME --owner U…` explains the agent's request, leaving the barred owner out."""
    code, out, err = steward(capsys, *EXPLAIN, "--as", RELEASE_BOT, "--owner", OWNER)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].endswith(f", by agent:release-bot (owner {OWNER}) at 2026-11-25T11:00:00+00:00")
    assert "rule: agents-prod (policies/10-rules.yaml:2)" in lines
    assert (
        "approval: 1 from mixed within 60 minutes; the requester cannot approve; the agent's owner cannot "
        "approve (owner_may_approve: false); can approve: U0SRE2"
    ) in lines


@pytest.mark.usefixtures("cli_policies")
def test_policy_explain_finds_the_owner_an_agent_was_added_with(capsys: pytest.CaptureFixture[str]) -> None:
    """Without `--owner`, the owner `steward agents add` recorded is the one explained."""
    code, _out, err = steward(capsys, "agents", "add", "release-bot", "--owner", "U0SRE2")
    assert code == 0, err
    code, out, err = steward(capsys, *EXPLAIN, "--as", RELEASE_BOT)
    assert code == 0, err
    assert "by agent:release-bot (owner U0SRE2)" in out and "can approve: U0SRE1\n" in out
    code, out, err = steward(capsys, *EXPLAIN, "--as", STRANGER)  # an agent nobody added: no owner known
    assert code == 0, err
    assert "by agent:stranger at" in out and "can approve: U0SRE1, U0SRE2\n" in out


@pytest.mark.usefixtures("cli_policies")
@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        (
            "--as",
            "agent:Release Bot",
            "argument --as: an agent is agent:NAME, NAME 1 to 40 lowercase letters",
        ),
        ("--owner", "release-owner", "argument --owner: 'release-owner' is not a Slack user id (U…)"),
    ],
)
def test_policy_explain_refuses_a_malformed_agent_or_owner(
    capsys: pytest.CaptureFixture[str], option: str, value: str, expected: str
) -> None:
    """A bad `--as` or `--owner` is a usage error naming the option, not a traceback."""
    argv = [*EXPLAIN, "--as", RELEASE_BOT, "--owner", OWNER]
    argv[argv.index(option) + 1] = value
    code, _out, err = steward(capsys, *argv)
    assert code == 2 and expected in err and "Traceback" not in err
