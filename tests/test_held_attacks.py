"""Attacks on guarded actions that an adversarial pass found to hold, kept held by a test each.

Where a test elsewhere already makes the attack faithfully it is named here and not repeated; the
tests in this file cover what those leave out. `test_every_test_the_table_names_exists` reads the
table, so it cannot name a test that is gone.

attack -> test that keeps it held: file::test_name

1. parameter smuggling
   duplicate keys, `env=prod env=staging` refused, not last-wins
       -> tests/test_policy.py::test_parse_key_values_errors
       -> tests/test_slack_actions.py::test_run_with_a_parameter_given_twice_differently_is_refused_privately
       -> tests/test_slack_actions.py::test_a_parameter_read_with_two_values_is_a_conflict
   full-width letters in plain words (`ｐｒｏｄ`, `ｅｎｖ＝ｐｒｏｄ`) read as the word they look like
       -> tests/test_slack_actions.py::test_a_parameter_read_with_two_values_is_a_conflict
       -> tests/test_held_attacks.py::test_plain_words_in_full_width_read_as_what_a_person_sees
   look-alike letters and zero-width characters in a value or a parameter's name (`/steward run`)
       -> tests/test_held_attacks.py::test_look_alike_and_invisible_characters_are_refused_by_the_parameters
   the same, in plain words (a mention)
       -> tests/test_held_attacks.py::test_plain_words_never_read_a_look_alike_as_the_name_it_resembles
   the same, in a request built by hand (the policy checks its parameters again)
       -> tests/test_held_attacks.py::test_a_hand_built_request_with_a_look_alike_value_is_denied
   full-width and other decimal digits (`version=４１`) read as the number a person sees
       -> tests/test_held_attacks.py::test_unicode_digits_are_the_number_a_person_sees
       -> tests/test_held_attacks.py::test_unicode_digits_do_not_slip_under_a_numeric_rule
   a zero-width character inside a number in plain words (a defect this pass found, fixed)
       -> tests/test_held_attacks.py::test_an_invisible_character_never_shortens_a_number
       -> tests/test_held_attacks.py::test_a_mention_with_an_invisible_character_requests_nothing
2. forged clicks from another channel (a defect this pass found, fixed)
       -> tests/test_held_attacks.py::test_an_approve_click_from_another_channel_is_not_counted
   the same click from the request's own channel counts (the control)
       -> tests/test_slack_actions.py::test_the_same_click_from_this_workspace_counts
   clicks from another workspace or organization
       -> tests/test_slack_actions.py::test_a_click_from_another_workspace_is_not_counted
3. self-approval
       -> tests/test_approvals.py::test_a_production_rollback_needs_two_approvers_and_never_the_requester
       -> tests/test_policy.py::test_the_requester_is_never_an_approver_even_when_in_the_group
       -> tests/test_slack_actions.py::test_the_requester_cannot_approve_their_own_request
4. expiry at the deadline
   well past the deadline
       -> tests/test_approvals.py::test_a_request_past_its_deadline_expires_and_nothing_runs
       -> tests/test_slack_actions.py::test_a_click_on_an_expired_request_is_refused_and_the_card_shows_it
   at the boundary itself (the deadline is the last moment that counts)
       -> tests/test_held_attacks.py::test_an_approval_just_after_the_deadline_is_refused_and_nothing_runs
       -> tests/test_held_attacks.py::test_the_click_and_the_sweep_agree_on_the_deadline
5. policy edits between approvals
   edit between two approvals
       -> tests/test_approvals.py::test_a_policy_change_voids_earlier_approvals
   edit after the quorum, before the run
       -> tests/test_held_attacks.py::test_a_policy_edit_after_the_quorum_voids_it_before_the_run
6. shell and path injection into commands
   spaces and `;` stay in one argument
       -> tests/test_executors.py::test_command_template_elements_stay_single_arguments_and_no_shell_runs
   `$(…)`, backticks, pipes, newlines, `../../etc/passwd`
       -> tests/test_held_attacks.py::test_shell_syntax_reaches_the_program_as_one_literal_argument
       -> tests/test_held_attacks.py::test_the_starter_command_action_refuses_shell_and_path_syntax
7. webhook SSRF and redirects
   no http(s) URL, no run
       -> tests/test_executors.py::test_webhook_configuration_errors_name_the_action_and_field
   a literal URL in a policy file must be http(s) or ${ENV}
       -> tests/test_policy.py::test_load_errors_name_file_line_and_field
   a redirect to another host is not followed (the test in test_executors sends no Location)
       -> tests/test_held_attacks.py::test_a_webhook_redirect_to_another_host_is_not_followed
   a parameter cannot choose where the webhook goes
       -> tests/test_held_attacks.py::test_a_parameter_cannot_choose_the_webhook_target
   (there is no policy setting that refuses loopback or private targets, so none is tested)
8. environment leakage
   an explicit environment is filtered
       -> tests/test_executors.py::test_command_gets_only_the_basic_environment_and_what_it_names
   the server's own environment, and `$NAME` in a parameter
       -> tests/test_held_attacks.py::test_a_command_never_sees_the_servers_secrets
9. audit log rows edited, deleted or reordered
       -> tests/test_audit.py::test_an_edited_entry_is_found
       -> tests/test_audit.py::test_a_deleted_entry_is_found
       -> tests/test_audit.py::test_reordered_entries_are_found
       -> tests/test_audit.py::test_an_inserted_entry_is_found
   the same through `steward audit verify`, on a log the approval service wrote
       -> tests/test_held_attacks.py::test_steward_audit_verify_fails_on_an_edited_deleted_or_reordered_row
10. kill -9 of ingest
   interrupted between the vector and the catalog write
       -> tests/test_ingest.py::test_an_interrupted_ingest_is_repaired_by_the_next_run
   a real SIGKILL inside the catalog's write transaction
       -> tests/test_held_attacks.py::test_an_ingest_killed_inside_its_catalog_write_leaves_a_usable_catalog
11. malformed policy files
       -> tests/test_policy.py::test_load_errors_name_file_line_and_field
       -> tests/test_policy.py::test_every_problem_in_every_file_is_reported_at_once
       -> tests/test_policy.py::test_a_missing_or_empty_folder_is_an_error
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import math
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.actions.approvals import APPROVED, DENIED, EXPIRED, PENDING, ApprovalService
from bot.actions.executors.dispatch import ExecutionResult, allow_listed, run_action
from bot.actions.models import ActionRequest, ActionSpec, Actor, ExecutorSpec
from bot.actions.phrases import read_request
from bot.actions.policy.engine import (
    ParamError,
    Policy,
    build_request,
    evaluate,
    load_policy,
    parse_key_values,
)
from bot.actions.policy.gate import PolicyFolder
from bot.actions.runner import execute_once
from bot.cli import main
from bot.config import Settings
from bot.slack.payloads import ACTION_APPROVE, RequestValue
from bot.store.action_requests import ActionRequestStore, audit_log
from bot.wiring import Services
from tests.conftest import ROOT
from tests.databases import state_database
from tests.fakes.webhook import WebhookReceiver
from tests.slackbot import CHANNEL, RunningBot, blocks_text, running_bot
from tests.support.clock import TUESDAY_NOON, RunningClock, SettableClock

REQUESTER, MLP2, SRE1 = "U0000MLP01", "U0000MLP02", "U0000SRE01"
PROD_ROLLBACK = ActionRequest(
    action="rollback-model", params={"model": "fraud-scorer", "version": 12, "env": "prod"}
)
CYRILLIC_O, CYRILLIC_E, ZERO_WIDTH = "\u043e", "\u0435", "\u200b"


class Runs:
    """An executor that only records which requests it was asked to run."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, _action: ActionSpec, _params: Mapping[str, Any], request_id: str) -> ExecutionResult:
        self.calls.append(request_id)
        return ExecutionResult(ok=True, summary="done", output="", duration_seconds=0.0, attempts=1)


@pytest.fixture(scope="module")
def starter() -> Policy:
    """The starter policies as shipped."""
    return load_policy(ROOT / "policies")


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """A private copy of the starter policies (tests may edit it)."""
    return Path(shutil.copytree(ROOT / "policies", tmp_path / "policies"))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A fresh SQLite state database sealed with the test audit key (migrated, as start-up does)."""
    with state_database("sqlite", tmp_path) as database:
        yield database.migrated_engine()


@pytest.fixture
def clock() -> SettableClock:
    """The approval service's clock, moved by the test."""
    return SettableClock(TUESDAY_NOON)


@pytest.fixture
def service(engine: Engine, policies: Path, clock: SettableClock) -> ApprovalService:
    """The approval service over the private starter policies."""
    return ApprovalService(ActionRequestStore(engine), PolicyFolder(policies), clock=clock)


def _submit(service: ApprovalService, request: ActionRequest = PROD_ROLLBACK) -> str:
    view, _decision = service.submit(request, Actor(user_id=REQUESTER, channel="COPS"), thread_ts="1.0")
    return view.request_id


# ---- 1. parameter smuggling


@pytest.mark.parametrize(
    ("command", "problem"),
    [
        (f"rollback-model model=fraud-sc{CYRILLIC_O}rer version=12 env=prod", "model: "),
        (f"rollback-model model=fraud-scorer version=12 env=pr{CYRILLIC_O}d", "env: "),
        (f"rollback-model model=fraud{ZERO_WIDTH}-scorer version=12 env=prod", "model: "),
        (f"rollback-model model=fraud-scorer version=12 env=prod{ZERO_WIDTH}", "env: "),
        (f"rollback-model model=fraud-scorer version=1{ZERO_WIDTH}2 env=prod", "version: "),
        ("rollback-model model=fraud-scorer version=12 env=ｐｒｏｄ", "env: "),
        (f"rotate-secret secret_name=llm-gateway/{CYRILLIC_O}penai-key env=prod", "secret_name: "),
        # a look-alike name is an unknown parameter, never a silent second value of `env`
        (
            f"rollback-model model=fraud-scorer version=12 env=prod {CYRILLIC_E}nv=staging",
            "unknown parameter",
        ),
        (
            f"rollback-model model=fraud-scorer version=12 env=prod env{ZERO_WIDTH}=staging",
            "unknown parameter",
        ),
    ],
    ids=[
        "cyrillic-in-pattern",
        "cyrillic-in-enum",
        "zero-width-in-pattern",
        "zero-width-in-enum",
        "zero-width-in-integer",
        "full-width-enum",
        "cyrillic-in-secret-path",
        "cyrillic-parameter-name",
        "zero-width-parameter-name",
    ],
)
def test_look_alike_and_invisible_characters_are_refused_by_the_parameters(
    starter: Policy, command: str, problem: str
) -> None:
    """`/steward run` with a value that only looks valid: refused, naming the parameter at fault."""
    action, _, args = command.partition(" ")
    with pytest.raises(ParamError) as caught:
        build_request(starter, action, parse_key_values(args))
    assert any(found.startswith(problem) for found in caught.value.problems), caught.value.problems


@pytest.mark.parametrize(
    "text",
    [
        f"roll back fraud-sc{CYRILLIC_O}rer to version 12 in prod",
        f"roll back fraud{ZERO_WIDTH}-scorer to version 12 in prod",
        f"roll back fraud-scorer to version 12 in pr{CYRILLIC_O}d",
        f"roll back fraud-scorer to version 12 in prod{ZERO_WIDTH}",
    ],
    ids=["cyrillic-model", "zero-width-model", "cyrillic-env", "zero-width-env"],
)
def test_plain_words_never_read_a_look_alike_as_the_name_it_resembles(starter: Policy, text: str) -> None:
    """A mention whose model or environment only looks right is missing that parameter: no request."""
    plain = read_request(text, starter)
    assert plain is not None and plain.action == "rollback-model"
    with pytest.raises(ParamError, match="missing; it is required"):
        build_request(starter, plain.action, plain.raw)


def test_plain_words_in_full_width_read_as_what_a_person_sees(starter: Policy) -> None:
    """Full-width letters and digits in a mention are the ASCII they look like (NFKC)."""
    plain = read_request("roll back ｆｒａｕｄ-ｓｃｏｒｅｒ to version １２ in ｐｒｏｄ", starter)
    assert plain is not None and plain.conflicts == {}
    assert build_request(starter, plain.action, plain.raw) == PROD_ROLLBACK


@pytest.mark.parametrize(
    "invisible", ["\u200b", "\u2060", "\u00ad"], ids=["zwsp", "word-joiner", "soft-hyphen"]
)
def test_an_invisible_character_never_shortens_a_number(starter: Policy, invisible: str) -> None:
    """`… to version 1<invisible>2 in prod` looks like 12: nothing is read (never version 1), and the
    reading names the character."""
    plain = read_request(f"roll back fraud-scorer to version 1{invisible}2 in prod", starter)
    assert plain is not None and plain.action == "rollback-model"
    assert plain.raw == {} and plain.invisible == (f"U+{ord(invisible):04X}",)
    with pytest.raises(ParamError):
        build_request(starter, plain.action, plain.raw)


def test_a_mention_with_an_invisible_character_requests_nothing(
    bot: RunningBot, receiver: WebhookReceiver
) -> None:
    """In Slack, the thread says which invisible character was found, and nothing is requested."""
    ts = bot.say("roll back fraud-scorer to version 1\u200b2 in staging")
    bot.settle()
    (reply,) = bot.bot_posts(CHANNEL, ts)
    assert "invisible characters (U+200B)" in reply["text"] and "Nothing was requested" in reply["text"]
    with bot.services.approvals.engine.connect() as connection:
        tables = sa.inspect(connection).get_table_names()
        assert (
            "action_requests" not in tables
            or not connection.execute(sa.text("SELECT 1 FROM action_requests")).first()
        )
    assert receiver.requests == []


def test_a_hand_built_request_with_a_look_alike_value_is_denied(service: ApprovalService) -> None:
    """A request that never went through parse_params (a form, a proposal, a bug) is checked again."""
    smuggled = ActionRequest(
        action="rollback-model", params={"model": f"fraud-sc{CYRILLIC_O}rer", "version": 12, "env": "prod"}
    )
    view, decision = service.submit(smuggled, Actor(user_id=REQUESTER, channel="COPS"))
    assert view.status == DENIED and decision.rule is None
    assert decision.reason.startswith("invalid parameters: model:")


@pytest.mark.parametrize("digits", ["４１", "٤١", "𝟒𝟏"], ids=["full-width", "arabic-indic", "math-bold"])
def test_unicode_digits_are_the_number_a_person_sees(starter: Policy, digits: str) -> None:
    """`version=４１` is the integer 41, the very value the card shows and the executor gets."""
    request = build_request(
        starter, "rollback-model", parse_key_values(f"model=fraud-scorer version={digits} env=staging")
    )
    assert request.params["version"] == 41 and type(request.params["version"]) is int


def test_unicode_digits_do_not_slip_under_a_numeric_rule(starter: Policy) -> None:
    """`replicas=２５` needs an SRE approver exactly as `replicas=25` does (the rule is `replicas > 20`)."""
    actor, now = (
        Actor(user_id="UOUTSIDER", channel="COPS"),
        dt.datetime.fromtimestamp(TUESDAY_NOON, tz=dt.UTC),
    )

    def decide(replicas: str) -> tuple[str, str | None]:
        raw = parse_key_values(f"service=ranking-api replicas={replicas} env=staging")
        decision = evaluate(
            starter,
            build_request(starter, "scale-service", raw),
            actor,
            now,
            lambda _group: frozenset(),
        )
        return decision.outcome, decision.rule

    assert decide("２５") == decide("25") == ("require_approval", "scale-beyond-20-needs-sre")


# ---- 2. forged clicks from another channel


@pytest.fixture
def bot(tmp_path: Path, policies: Path) -> Iterator[RunningBot]:
    """Steward on loopback against a fake Slack; no knowledge base (no embedding model is loaded)."""
    services = Services(
        Settings(data_dir=tmp_path / "data", policies_dir=policies),
        clock=RunningClock(TUESDAY_NOON),
    )
    try:
        with running_bot(services) as running:
            yield running
    finally:
        services.close()


def test_an_approve_click_from_another_channel_is_not_counted(
    bot: RunningBot, receiver: WebhookReceiver
) -> None:
    """The card's button value replayed in a payload from another channel: nothing counted, nothing run."""
    bot.command("run retrain-model model=fraud-scorer env=prod", user=REQUESTER)
    bot.settle()
    thread = str(bot.bot_posts(CHANNEL)[-1]["ts"])
    (card,) = [m for m in bot.bot_posts(CHANNEL, thread) if "Approval needed" in blocks_text(m)]
    button = next(
        element
        for block in card["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
        if element["action_id"] == ACTION_APPROVE
    )
    elsewhere = {**card, "channel": "COTHER", "ts": "1700000999.000100"}
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": MLP2, "username": "mlp2", "team_id": bot.slack.team_id},
        "team": {"id": bot.slack.team_id},
        "api_app_id": "A0FAKE",
        "trigger_id": "t",
        "channel": {"id": "COTHER"},
        "container": {"type": "message", "message_ts": elsewhere["ts"], "channel_id": "COTHER"},
        "message": elsewhere,
        "actions": [
            {"type": "button", "action_id": ACTION_APPROVE, "block_id": "b", "value": button["value"]}
        ],
    }
    assert bot.interact(payload).status == 200
    bot.settle()
    view = bot.services.approvals.get(RequestValue.model_validate_json(button["value"]).request_id)
    assert view is not None and view.channel == CHANNEL
    assert view.approvers == () and view.status == PENDING
    assert receiver.requests == []
    told = [
        str(c.args.get("text")) for c in bot.slack.calls("chat.postEphemeral") if c.args.get("user") == MLP2
    ]
    assert told and "another channel" in told[-1]


# ---- 4. expiry at the deadline


def test_an_approval_just_after_the_deadline_is_refused_and_nothing_runs(
    service: ApprovalService, clock: SettableClock
) -> None:
    """The deciding approval one instant (the next float) after the deadline: expired, nothing runs."""
    request_id = _submit(service)
    assert service.approve(request_id, MLP2).changed
    view = service.get(request_id)
    assert view is not None and view.deadline is not None
    clock.now = math.nextafter(view.deadline, math.inf)
    late = service.approve(request_id, SRE1)
    assert not late.changed and not late.ready_to_run and "expired" in late.message
    view = service.get(request_id)
    assert view is not None and view.status == EXPIRED and view.approvers == (MLP2,)
    runs = Runs()
    assert execute_once(service, service.gate(), request_id, runs) is None
    assert runs.calls == []


@pytest.mark.parametrize("after", [False, True], ids=["at-the-deadline", "just-after"])
def test_the_click_and_the_sweep_agree_on_the_deadline(
    service: ApprovalService, clock: SettableClock, after: bool
) -> None:
    """No moment when the sweep has expired a request that a click would still count, or the reverse."""
    swept, clicked = _submit(service), _submit(service)
    view = service.get(swept)
    assert view is not None and view.deadline is not None
    clock.now = math.nextafter(view.deadline, math.inf) if after else view.deadline
    counted = service.approve(clicked, MLP2).changed  # first: the sweep would expire it too
    expired = service.expire_due()
    assert (swept in expired) is (not counted)
    assert (swept in expired) is after


# ---- 5. policy edits between approvals


def test_a_policy_edit_after_the_quorum_voids_it_before_the_run(
    service: ApprovalService, policies: Path
) -> None:
    """Approved by two under the old policy, which now asks three: not run, decided again, no approvals."""
    request_id = _submit(service)
    service.approve(request_id, MLP2)
    assert service.approve(request_id, SRE1).ready_to_run
    old = service.get(request_id)
    assert old is not None and old.status == APPROVED
    models = policies / "30-models.yaml"
    text = models.read_text(encoding="utf-8")
    needed = "approval: {count: 2, groups: [ml-platform, sre], within_minutes: 30}"
    assert needed in text
    models.write_text(text.replace(needed, needed.replace("count: 2", "count: 3")) + "\n# edited\n")
    runs, told = Runs(), list[str]()

    def blocked(_request_id: str, why: str) -> None:
        told.append(why)

    assert execute_once(service, service.gate(), request_id, runs, blocked=blocked) is None
    assert runs.calls == [] and told and "policy" in told[0]
    view = service.get(request_id)
    assert view is not None and view.status == PENDING and view.approvers == ()
    assert view.required_count == 3 and view.policy_version != old.policy_version
    # the same two people approve again under the new policy: still one short of three
    service.approve(request_id, MLP2)
    assert not service.approve(request_id, SRE1).ready_to_run


# ---- 6. shell and path injection into commands

PRINT_ARGV = "import json, sys; print(json.dumps(sys.argv[1:]))"
INJECTIONS = [
    "x; touch {marker}",
    "$(touch {marker})",
    "`touch {marker}`",
    "x | touch {marker}",
    "x && touch {marker}",
    "x\ntouch {marker}",
    "$(id)",
    "../../etc/passwd",
    "--mode=full",
]
INJECTION_IDS = [
    "semicolon",
    "dollar-paren",
    "backticks",
    "pipe",
    "and",
    "newline",
    "id",
    "traversal",
    "option",
]


@pytest.mark.parametrize("template", INJECTIONS, ids=INJECTION_IDS)
def test_shell_syntax_reaches_the_program_as_one_literal_argument(tmp_path: Path, template: str) -> None:
    """Whatever a value holds, the program gets it verbatim as one argument, and no shell runs it."""
    marker = tmp_path / "pwned"
    value = template.format(marker=marker)
    spec = ActionSpec(
        name="demo-command",
        description="prints its arguments",
        executor=ExecutorSpec(kind="command", program=sys.executable, args=("-c", PRINT_ARGV, "{target}")),
    )
    result = run_action(spec, {"target": value}, "req-shell", allowed_programs=[sys.executable])
    assert result.ok, result.output
    assert json.loads(result.output) == [value]
    assert not marker.exists()


@pytest.mark.parametrize("template", INJECTIONS, ids=INJECTION_IDS)
def test_the_starter_command_action_refuses_shell_and_path_syntax(
    starter: Policy, tmp_path: Path, template: str
) -> None:
    """pause-agent (the starter command action) refuses such a value before anything could run."""
    assert starter.actions["pause-agent"].executor.kind == "command"
    with pytest.raises(ParamError) as caught:
        build_request(starter, "pause-agent", {"agent": template.format(marker=tmp_path / "pwned")})
    assert any(problem.startswith("agent: ") for problem in caught.value.problems), caught.value.problems


# ---- 7. webhook SSRF and redirects


class _Recorder(ThreadingHTTPServer):
    """A loopback HTTP server that records every request, whatever its method, and answers `status`
    (with `Location: location` when one is set)."""

    daemon_threads = True

    def __init__(self, status: int = 200, location: str | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.status, self.location = status, location
        self.seen: list[tuple[str, str]] = []
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.02})

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def __enter__(self) -> _Recorder:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join()


class _RecordingHandler(BaseHTTPRequestHandler):
    server: _Recorder

    def _answer(self) -> None:
        self.server.seen.append((self.command, self.path))
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(self.server.status)
        if self.server.location:
            self.send_header("Location", self.server.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        """Record and answer."""
        self._answer()

    def do_POST(self) -> None:
        """Record and answer."""
        self._answer()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


def _hook(url: str) -> ActionSpec:
    return ActionSpec(
        name="demo-hook",
        description="a signed webhook",
        executor=ExecutorSpec(kind="webhook", url=url, secret_env="HOOK_KEY", timeout_seconds=5.0),
    )


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_webhook_redirect_to_another_host_is_not_followed(status: int) -> None:
    """The hook answers a redirect to another host: one attempt, a failed run, nothing reaches that host.

    urllib on its own would follow 301-303 as a GET to wherever `Location` points."""
    with _Recorder() as elsewhere:
        landing = f"http://localhost:{elsewhere.port}/internal/admin"
        with _Recorder(status, landing) as hook:
            url = f"http://127.0.0.1:{hook.port}/hook"
            result = run_action(
                _hook("${HOOK_URL}"),
                {},
                "req-redirect",
                env={"HOOK_URL": url, "HOOK_KEY": "k"},
                sleep=lambda _seconds: None,
            )
            assert hook.seen == [("POST", "/hook")]
        assert elsewhere.seen == []
    assert not result.ok and result.attempts == 1 and f"HTTP {status}" in result.summary


def test_a_parameter_cannot_choose_the_webhook_target() -> None:
    """Values that look like URLs or `${NAME}` (even a parameter named like the URL's variable) only
    ever travel in the body, to the URL the policy and the deployment chose."""
    with _Recorder() as elsewhere, WebhookReceiver() as hook:
        other = f"http://127.0.0.1:{elsewhere.port}/steal"
        params = {"HOOK_URL": other, "callback": "${OTHER_URL}", "model": other}
        env = {"HOOK_URL": hook.url, "OTHER_URL": other, "HOOK_KEY": "k"}
        result = run_action(_hook("${HOOK_URL}"), params, "req-target", env=env)
        assert result.ok
        (delivered,) = hook.requests
    assert elsewhere.seen == []
    assert json.loads(delivered.body)["params"] == params


# ---- 8. environment leakage

SERVER_SECRETS = {
    "SLACK_BOT_TOKEN": "xoxb-held-attack-bot-token",
    "SLACK_SIGNING_SECRET": "held-attack-signing-secret",
    "STEWARD_AUDIT_KEY": "held-attack-audit-key-" + "a" * 32,
    "STEWARD_DATABASE_URL": "postgresql://steward:held-attack-password@db/steward",
    "OPENAI_API_KEY": "sk-held-attack-openai",
}


def test_a_command_never_sees_the_servers_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's environment holds its tokens; a command run the way serve runs it (no env given)
    gets none of them, and `$NAME` in a parameter is not expanded either."""
    for name, value in SERVER_SECRETS.items():
        monkeypatch.setenv(name, value)
    printer = "import json, os, sys; print(json.dumps({'env': dict(os.environ), 'argv': sys.argv[1:]}))"
    spec = ActionSpec(
        name="demo-command",
        description="prints its environment",
        executor=ExecutorSpec(kind="command", program=sys.executable, args=("-c", printer, "{note}")),
    )
    note = "$SLACK_BOT_TOKEN ${STEWARD_AUDIT_KEY} %OPENAI_API_KEY%"
    result = allow_listed([sys.executable])(spec, {"note": note}, "req-env")
    assert result.ok, result.output
    printed = json.loads(result.output)
    assert printed["argv"] == [note]
    assert not set(printed["env"]) & set(SERVER_SECRETS)
    assert not [value for value in SERVER_SECRETS.values() if value in result.output]


# ---- 9. audit rows edited, deleted or reordered, through `steward audit verify`


def _light_services(tmp_path: Path, policies: Path) -> Services:
    """Services without a knowledge base (no embedding model), on the data dir of this test."""
    return Services(
        Settings(data_dir=tmp_path / "data", policies_dir=policies),
        clock=RunningClock(TUESDAY_NOON),
    )


def _edit(connection: sa.Connection, first: int) -> None:
    connection.execute(sa.update(audit_log).where(audit_log.c.seq == first).values(actor="U0EVIL"))


def _delete(connection: sa.Connection, first: int) -> None:
    connection.execute(sa.delete(audit_log).where(audit_log.c.seq == first))


def _reorder(connection: sa.Connection, first: int) -> None:
    for old, new in ((first, -1), (first + 1, first), (-1, first + 1)):
        connection.execute(sa.update(audit_log).where(audit_log.c.seq == old).values(seq=new))


@pytest.mark.parametrize("tamper", [_edit, _delete, _reorder], ids=["edit", "delete", "reorder"])
def test_steward_audit_verify_fails_on_an_edited_deleted_or_reordered_row(
    tmp_path: Path,
    policies: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tamper: Callable[[sa.Connection, int], None],
) -> None:
    """One approval entry changed, removed or swapped with the next: the command exits 1 and names it."""
    services = _light_services(tmp_path, policies)
    for _ in range(2):
        view, _decision = services.approvals.submit(PROD_ROLLBACK, Actor(user_id=REQUESTER, channel="COPS"))
        services.approvals.approve(view.request_id, MLP2)
    monkeypatch.setenv("STEWARD_DATA_DIR", str(tmp_path / "data"))
    assert main(["audit", "verify"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    with services.records.begin() as connection:
        first = connection.execute(
            sa.select(sa.func.min(audit_log.c.seq)).where(audit_log.c.kind == "approval")
        ).scalar_one()
        tamper(connection, int(first))
    services.close()
    assert main(["audit", "verify"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("audit log BROKEN") and re.search(rf"entry {first}\b|entry {first + 1}\b", err), err


# ---- 10. kill -9 of ingest

KILLED_INGEST = """
import os, signal, sys
from pathlib import Path
from sqlalchemy import event
from bot.config import Settings
from bot.wiring import Services

services = Services(Settings(data_dir=Path(sys.argv[1])))

@event.listens_for(services.catalog.engine, "before_cursor_execute")
def die(connection, cursor, statement, parameters, context, executemany):
    # Inside the catalog transaction that forgets the removed documents, after its first statement.
    if statement.lstrip().upper().startswith("DELETE FROM KB_CHUNKS"):
        os.kill(os.getpid(), signal.SIGKILL)

services.ingestor.run([Path(sys.argv[2])])
print("the ingest finished without reaching the kill point")
"""


def test_an_ingest_killed_inside_its_catalog_write_leaves_a_usable_catalog(
    small_kb: Path, make_services: Callable[..., Services], tmp_path: Path
) -> None:
    """SIGKILL in the middle of the write transaction (no cleanup runs): the catalog opens, the next
    ingest finishes the job, and the catalog and vectors agree again."""
    first = make_services()
    first.ingestor.run([small_kb])
    first.close()
    gone = ["guides/vendor-questions.txt", "runbooks/gpu-node-drain.md"]
    for relative in gone:
        (small_kb / relative).unlink()
    child = subprocess.run(
        [sys.executable, "-c", KILLED_INGEST, str(tmp_path / "data"), str(small_kb)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr
    after = make_services()
    documents, _chunks = after.catalog.count()  # the interrupted transaction is rolled back, not half-applied
    assert documents == 5
    report = after.ingestor.run([small_kb])
    assert sorted(report.removed) == gone
    assert sorted(document.path for document in after.catalog.documents()) == sorted(
        {
            "runbooks/model-rollback.md",
            "decisions/0001-drift-thresholds.md",
            "decisions/0007-drift-thresholds-v2.md",
        }
    )
    assert after.catalog.count()[1] == after.vectors.count()
    assert after.answers.ask("How do I roll back the fraud-scorer model?").citations


# ---- the table above


def test_every_test_the_table_names_exists() -> None:
    """Each `file::test_name` in this module's docstring is a test function defined in that file."""
    named = re.findall(r"(tests/[\w/]+\.py)::(\w+)", __doc__ or "")
    assert len(named) >= 30
    defined = {
        file: {
            node.name
            for node in ast.parse((ROOT / file).read_text(encoding="utf-8")).body
            if isinstance(node, ast.FunctionDef)
        }
        for file in {file for file, _name in named}
    }
    missing = [
        f"{file}::{name}" for file, name in named if not name.startswith("test_") or name not in defined[file]
    ]
    assert missing == []
