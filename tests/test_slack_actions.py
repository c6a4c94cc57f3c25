"""Guarded actions in Slack, end to end: `/steward run`, plain requests, the approval card and its clicks."""

from __future__ import annotations

import datetime as dt
import html
import json
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from slack_sdk import WebClient
from slack_sdk.models.views import View

from bot.actions.approvals import ApprovalService
from bot.actions.models import ActionSpec, ExecutorSpec, ParamSpec
from bot.actions.phrases import read_request
from bot.actions.policy.gate import PolicyFolder
from bot.answers.runbooks import RunbookExcerpts
from bot.metrics import REGISTRY
from bot.slack.action_cards import CardFacts, RunbookExcerpt, approval_card, conflict_text
from bot.slack.payloads import (
    ACTION_APPROVE,
    ACTION_CANCEL,
    ACTION_HELPFUL,
    ACTION_PICK_ACTION,
    ACTION_REJECT,
    ACTION_REVOKE,
    BLOCK_CHANNEL,
    BLOCK_PARAM_PREFIX,
    BLOCK_PICK_ACTION,
    BLOCK_REJECT_REASON,
    INPUT_CHANNEL,
    INPUT_PARAM,
    INPUT_REJECT_REASON,
    SHORTCUT_REQUEST_ACTION,
    RejectMetadata,
    RequestValue,
)
from bot.slack.usergroups import SlackUserGroups
from bot.slack.workspace import Installation
from bot.store.action_requests import ActionRequestStore, action_requests
from bot.wiring import Services
from tests.conftest import ROOT, write_tree
from tests.fakes.webhook import WebhookReceiver
from tests.request_views import request_view
from tests.slackbot import CHANNEL, USER, Reply, RunningBot, blocks_text, running_bot
from tests.support.clock import SettableClock
from tests.support.slack import FakeSlack, command_body

TUESDAY = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC).timestamp()
FRIDAY_EVENING = dt.datetime(2026, 11, 27, 18, 0, tzinfo=dt.UTC).timestamp()  # 19:00 in Berlin: frozen
MLP1, MLP2, SRE1 = "U0000MLP01", "U0000MLP02", "U0000SRE01"
PROD_RETRAIN = "run retrain-model model=fraud-scorer env=prod"
PROD_ROLLBACK = "run rollback-model model=fraud-scorer version=12 env=prod"


@pytest.fixture
def clock() -> SettableClock:
    """Tuesday 2026-11-24, 10:00 UTC, unless a test moves it."""
    return SettableClock(TUESDAY)


@pytest.fixture
def kb(small_kb: Path) -> Path:
    """The small knowledge base plus the retraining runbook that governs retrain-model."""
    shutil.copy(ROOT / "knowledge/runbooks/failed-retraining-pipeline.md", small_kb / "runbooks")
    return small_kb


@pytest.fixture
def services(
    make_services: Callable[..., Services], kb: Path, tmp_path: Path, clock: SettableClock
) -> Services:
    """Services over the knowledge base, a private copy of the starter policies and the settable clock."""
    policies = shutil.copytree(ROOT / "policies", tmp_path / "policies")
    built = make_services(policies_dir=policies)
    built.ingestor.run([kb])
    built.override(
        "approvals", ApprovalService(ActionRequestStore(built.records), lambda: built.policy(), clock=clock)
    )
    return built


def _private(bot: RunningBot) -> list[dict[str, Any]]:
    """What `/steward` answered through its response_url."""
    return [call.args for call in bot.slack.calls("response_url")]


def _whispers(bot: RunningBot, user: str) -> list[str]:
    """The ephemeral messages `user` got."""
    return [str(c.args.get("text")) for c in bot.slack.calls("chat.postEphemeral") if c.args["user"] == user]


def _run(bot: RunningBot, text: str, user: str = USER) -> str:
    """`/steward TEXT` that posts a request; returns the ts of its top-level message (the thread)."""
    assert bot.command(text, user=user).status == 200
    bot.settle()
    roots = bot.bot_posts(CHANNEL)
    assert roots, f"nothing posted; answered privately: {_private(bot)}"
    return str(roots[-1]["ts"])


def _card(bot: RunningBot, thread_ts: str) -> dict[str, Any]:
    """The approval card in a thread, as it is now."""
    cards = [m for m in bot.bot_posts(CHANNEL, thread_ts) if "Approval needed" in blocks_text(m)]
    assert len(cards) == 1, [blocks_text(m) for m in bot.bot_posts(CHANNEL, thread_ts)]
    return cards[0]


def _has_buttons(message: dict[str, Any]) -> bool:
    return any(block.get("type") == "actions" for block in message.get("blocks") or [])


def _reject(bot: RunningBot, card: dict[str, Any], user: str, reason: str) -> None:
    """Click Reject and submit the modal with a reason."""
    bot.click(card, ACTION_REJECT, user=user)
    bot.settle()
    view = bot.slack.calls("views.open")[-1].args["view"]
    values = {BLOCK_REJECT_REASON: {INPUT_REJECT_REASON: {"type": "plain_text_input", "value": reason}}}
    assert bot.submit_view(view, values, user=user).status == 200
    bot.settle()


# ---- /steward run


def test_run_with_bad_parameters_lists_the_problems_and_the_usage_privately(bot: RunningBot) -> None:
    """Invalid parameters get an ephemeral list of every problem and the usage; nothing is posted."""
    bot.command("run retrain-model model=Fraud_Scorer env=production")
    bot.settle()
    (reply,) = _private(bot)
    assert reply["response_type"] == "ephemeral"
    assert "model:" in reply["text"] and "env:" in reply["text"]
    assert "/steward run retrain-model model=<string> env=staging|prod [reason=<string>]" in reply["text"]
    assert bot.bot_posts(CHANNEL) == []


def test_run_with_an_unknown_action_lists_the_actions(bot: RunningBot) -> None:
    """An unknown action is answered privately with a suggestion and every action's usage."""
    bot.command("run rollback-modle model=fraud-scorer")
    bot.settle()
    (reply,) = _private(bot)
    assert reply["response_type"] == "ephemeral"
    assert "did you mean 'rollback-model'" in reply["text"]
    assert "/steward run pause-agent" in reply["text"] and "/steward run rotate-secret" in reply["text"]


def test_run_alone_lists_every_action_with_its_usage(bot: RunningBot) -> None:
    """`/steward run` with nothing after it shows the catalog."""
    bot.command("run")
    bot.settle()
    (reply,) = _private(bot)
    assert reply["response_type"] == "ephemeral"
    assert (
        "/steward run rollback-model model=<string> version=<integer at least 1> env=staging|prod"
        in (reply["text"])
    )


def test_an_allowed_staging_request_runs_once_and_posts_the_result(
    bot: RunningBot, receiver: WebhookReceiver
) -> None:
    """A self-service request runs at once: the rule is named, the webhook called once, the result posted."""
    thread = _run(bot, "run retrain-model model=fraud-scorer env=staging reason=drift")
    root = bot.message(CHANNEL, thread)
    assert f"<@{USER}> requests: `retrain-model model=fraud-scorer env=staging reason=drift`" in root["text"]
    allowed, result = bot.bot_posts(CHANNEL, thread)
    assert "Allowed by rule `retrain-staging-self-service`" in allowed["text"]
    assert "(policies/30-models.yaml:" in allowed["text"]
    assert "retrain-model succeeded" in blocks_text(result)
    assert len(receiver.requests) == 1
    assert json.loads(receiver.requests[0].body)["params"]["model"] == "fraud-scorer"


def test_a_frozen_production_request_is_denied_with_the_rule(bot: RunningBot, clock: SettableClock) -> None:
    """During the weekend freeze a production retrain is refused: reason and rule, no card."""
    clock.now = FRIDAY_EVENING
    thread = _run(bot, PROD_RETRAIN)
    (denied,) = bot.bot_posts(CHANNEL, thread)
    assert "*denied*" in denied["text"] and "Weekend change freeze" in denied["text"]
    assert "`prod-weekend-freeze` (policies/20-freeze.yaml:" in denied["text"]
    assert not _has_buttons(denied)


# ---- the approval card


def test_a_production_retrain_shows_an_approval_card(bot: RunningBot) -> None:
    """The card shows request, rule with file:line, why, a runbook excerpt, 0 of 1 approvals, the deadline."""
    thread = _run(bot, PROD_RETRAIN)
    card = _card(bot, thread)
    text = blocks_text(card)
    assert "`retrain-model model=fraud-scorer env=prod`" in text
    assert "`retrain-prod-one-approver` (policies/30-models.yaml:48)" in text
    assert "Production retraining needs one approver from ml-platform." in text
    assert "*Runbook* Failed retraining pipeline" in text
    assert "0 of 1 from ml-platform: none yet" in text
    deadline = int(TUESDAY + 240 * 60)
    assert f"<!date^{deadline}^{{date_short_pretty}} {{time}}|2026-11-24 14:00 UTC>" in text
    assert f"<@{USER}>" in text and "medium" in text
    buttons = [e["action_id"] for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert buttons == [ACTION_APPROVE, ACTION_REJECT, ACTION_CANCEL]


def test_the_runbook_excerpt_is_short(bot: RunningBot) -> None:
    """The quoted passage of the runbook stays within 400 characters."""
    card = _card(bot, _run(bot, PROD_RETRAIN))
    runbook = next(b for b in card["blocks"] if "*Runbook*" in json.dumps(b))
    quote = runbook["text"]["text"].split("\n>", 1)[1]
    assert 0 < len(html.unescape(quote)) <= 400


def test_a_runbook_missing_from_the_knowledge_base_is_named(bot: RunningBot) -> None:
    """Without its runbook ingested, the card says which runbook it could not quote."""
    card = _card(bot, _run(bot, "run rotate-secret secret_name=llm-gateway/openai-api-key env=prod"))
    assert "`runbooks/leaked-secret-rotation.md` is not in the knowledge base" in blocks_text(card)


def test_the_runbook_excerpt_is_kept_for_a_minute_then_read_again(services: Services, kb: Path) -> None:
    """Cards are redrawn at every click: the excerpt is looked up once a minute, and follows an ingest."""
    spec = services.policy().action("retrain-model")
    assert spec is not None
    now = [0.0]
    excerpts = RunbookExcerpts(lambda: services.answers, None, keep_seconds=60, clock=lambda: now[0])
    assert excerpts(spec).title
    (kb / str(spec.runbook)).unlink()
    services.ingestor.run([kb])
    now[0] = 59
    assert excerpts(spec).title  # still the kept one
    now[0] = 61
    assert excerpts(spec) == RunbookExcerpt(str(spec.runbook))  # gone from the knowledge base


def test_the_requester_cannot_approve_their_own_request(bot: RunningBot, receiver: WebhookReceiver) -> None:
    """Self-approval is refused privately; nothing runs."""
    card = _card(bot, _run(bot, PROD_RETRAIN, user=MLP1))
    bot.click(card, ACTION_APPROVE, user=MLP1)
    bot.settle()
    assert any("you are the requester" in text for text in _whispers(bot, MLP1))
    assert receiver.requests == []


def test_an_approver_outside_the_group_is_told_which_group_is_needed(bot: RunningBot) -> None:
    """An SRE cannot approve a production retrain; the reply names ml-platform."""
    card = _card(bot, _run(bot, PROD_RETRAIN))
    bot.click(card, ACTION_APPROVE, user=SRE1)
    bot.settle()
    assert any("approvers must be in ml-platform" in text for text in _whispers(bot, SRE1))


def test_an_approved_request_its_replica_never_ran_is_run_once_by_housekeeping(
    bot: RunningBot, receiver: WebhookReceiver, services: Services, clock: SettableClock
) -> None:
    """The deciding approval was recorded and the replica died before claiming the run: a live replica's
    housekeeping runs it, once, and posts the result in its thread."""
    thread = _run(bot, PROD_RETRAIN)
    with services.records.connect() as connection:
        (request_id,) = connection.execute(sa.text("SELECT request_id FROM action_requests")).scalars()
    assert services.approvals.approve(request_id, MLP2).changed  # recorded; nothing ran it
    assert receiver.requests == []
    flows = bot.app.actions
    assert flows is not None
    assert flows.run_stranded(bot.app.bolt.client, older_than_seconds=90) == []  # not yet: maybe just slow
    clock.now += 91
    assert flows.run_stranded(bot.app.bolt.client, older_than_seconds=90) == [request_id]
    assert flows.run_stranded(bot.app.bolt.client, older_than_seconds=90) == []
    assert len(receiver.requests) == 1
    assert any("retrain-model succeeded" in blocks_text(m) for m in bot.bot_posts(CHANNEL, thread))


def test_a_freeze_that_began_after_the_quorum_stops_the_run_and_says_why_in_the_thread(
    bot: RunningBot, receiver: WebhookReceiver, services: Services, clock: SettableClock
) -> None:
    """Requested and approved on Friday at 16:59, run claimed after 17:00 (Berlin): held, not run."""
    clock.now = dt.datetime(2026, 11, 27, 15, 59, tzinfo=dt.UTC).timestamp()  # 16:59 in Berlin
    thread = _run(bot, PROD_RETRAIN)
    with services.records.connect() as connection:
        (request_id,) = connection.execute(sa.text("SELECT request_id FROM action_requests")).scalars()
    assert services.approvals.approve(request_id, MLP2).ready_to_run  # recorded; its replica died
    clock.now += 120  # 17:01: the weekend freeze has begun
    flows = bot.app.actions
    assert flows is not None
    assert flows.run_stranded(bot.app.bolt.client, older_than_seconds=90) == [request_id]
    bot.settle()
    assert receiver.requests == []
    told = [blocks_text(m) for m in bot.bot_posts(CHANNEL, thread)]
    assert any("Held at the moment of running by `prod-weekend-freeze`" in text for text in told), told
    view = services.approvals.get(request_id)
    assert view is not None and view.status == "pending"
    card = _card(bot, thread)
    bot.click(card, ACTION_APPROVE, user=SRE1)
    bot.settle()
    assert receiver.requests == []


def test_an_eligible_approval_runs_the_action_once_and_updates_the_card(
    bot: RunningBot, receiver: WebhookReceiver
) -> None:
    """One ml-platform approval runs the retrain exactly once; the card shows who approved and success."""
    thread = _run(bot, PROD_RETRAIN)
    card = _card(bot, thread)
    bot.click(card, ACTION_APPROVE, user=MLP2)
    bot.settle()
    assert len(receiver.requests) == 1
    updated = bot.message(CHANNEL, card["ts"])
    assert "*Succeeded*, approved by <@U0000MLP02>" in blocks_text(updated)
    assert "1 of 1 from ml-platform: <@U0000MLP02>" in blocks_text(updated)
    assert not _has_buttons(updated)
    assert any("retrain-model succeeded" in blocks_text(m) for m in bot.bot_posts(CHANNEL, thread))


def test_a_click_is_acknowledged_while_every_worker_is_busy(
    bot: RunningBot, receiver: WebhookReceiver
) -> None:
    """Slack wants an answer within 3 s: a click's acknowledgement must not wait for a free worker."""
    thread = _run(bot, PROD_RETRAIN, user=SRE1)
    card = _card(bot, thread)
    release = threading.Event()
    for _ in range(8):  # more than the workers: all of them are busy
        bot.app.executor.submit(release.wait, 30)
    try:
        reply = bot.click(card, ACTION_APPROVE, user=MLP1)
    finally:
        release.set()
    assert reply.status == 200 and reply.seconds < 1, reply
    bot.settle()
    assert len(receiver.requests) == 1


def test_a_slack_user_group_in_the_policy_counts_its_members(
    bot: RunningBot, receiver: WebhookReceiver
) -> None:
    """ml-platform includes the user group S0MLREVIEW: its members (read from Slack, kept) approve."""
    groups = Path(str(bot.services.settings.policies_dir)) / "00-groups.yaml"
    text = groups.read_text().replace(
        "    - U0000MLP03\n  sre:", "    - U0000MLP03\n    - S0MLREVIEW\n  sre:"
    )
    groups.write_text(text)
    bot.slack.set_user_group("S0MLREVIEW", ["UREVIEWER"])
    card = _card(bot, _run(bot, PROD_RETRAIN, user=SRE1))
    bot.click(card, ACTION_APPROVE, user="UOUTSIDER")
    bot.settle()
    assert "ml-platform" in _whispers(bot, "UOUTSIDER")[-1] and not receiver.requests
    bot.click(card, ACTION_APPROVE, user="UREVIEWER")
    bot.settle()
    assert len(receiver.requests) == 1
    assert len(bot.slack.calls("usergroups.users.list")) == 1  # looked up once, then kept


def test_an_unreadable_user_group_counts_nobody_and_is_asked_again() -> None:
    """A group Slack does not know is empty (fail closed) and not kept, so a fix applies at once."""
    with FakeSlack() as slack:
        members = SlackUserGroups(WebClient(token="xoxb-test", base_url=slack.api_url))
        assert members("S0MISSING") == frozenset()
        slack.set_user_group("S0MISSING", ["U1"])
        assert members("S0MISSING") == {"U1"}


def test_an_interrupted_run_is_reported_in_its_thread(
    bot: RunningBot, clock: SettableClock, receiver: WebhookReceiver
) -> None:
    """A run claimed by a process that died: the thread says so, and it is not run again (not idempotent)."""
    thread = _run(bot, PROD_RETRAIN, user=SRE1)
    button = next(e for b in _card(bot, thread)["blocks"] if b["type"] == "actions" for e in b["elements"])
    request_id = RequestValue.model_validate_json(button["value"]).request_id
    assert bot.services.approvals.approve(request_id, MLP1).ready_to_run
    assert bot.services.approvals.claim(request_id)  # ... and then the process died
    clock.now += 3600
    assert bot.app.actions is not None
    assert bot.app.actions.recover(bot.app.bolt.client, 900) == [(request_id, "needs_attention")]
    bot.settle()
    notice = bot.bot_posts(CHANNEL, thread)[-1]["text"]
    assert "was interrupted" in notice and "will not run again by itself" in notice
    assert not receiver.requests


def test_a_click_after_the_run_changes_nothing(bot: RunningBot, receiver: WebhookReceiver) -> None:
    """A late click on the old card is refused privately and runs nothing again."""
    card = _card(bot, _run(bot, PROD_RETRAIN))
    bot.click(card, ACTION_APPROVE, user=MLP2)
    bot.settle()
    bot.click(card, ACTION_APPROVE, user="U0000MLP03")
    bot.settle()
    assert len(receiver.requests) == 1
    assert any("already succeeded" in text for text in _whispers(bot, "U0000MLP03"))


def test_a_rejection_asks_for_a_reason_and_the_card_shows_it(bot: RunningBot) -> None:
    """Reject opens a modal; its reason ends up on the card with who rejected, and the buttons go."""
    card = _card(bot, _run(bot, PROD_RETRAIN))
    _reject(bot, card, MLP2, "Labels for October are not in yet")
    updated = bot.message(CHANNEL, card["ts"])
    assert "*Rejected* by <@U0000MLP02>: Labels for October are not in yet" in blocks_text(updated)
    assert not _has_buttons(updated)


def test_a_blank_rejection_reason_keeps_the_modal_open(bot: RunningBot) -> None:
    """A reason of only spaces is answered with a field error in the acknowledgement."""
    card = _card(bot, _run(bot, PROD_RETRAIN))
    bot.click(card, ACTION_REJECT, user=MLP2)
    bot.settle()
    view = bot.slack.calls("views.open")[-1].args["view"]
    values = {BLOCK_REJECT_REASON: {INPUT_REJECT_REASON: {"type": "plain_text_input", "value": "  "}}}
    reply = bot.submit_view(view, values, user=MLP2)
    assert json.loads(reply.body)["response_action"] == "errors"


def test_someone_who_may_not_reject_gets_no_modal(bot: RunningBot) -> None:
    """An outsider's Reject is refused privately, without opening the form."""
    card = _card(bot, _run(bot, PROD_RETRAIN))
    bot.click(card, ACTION_REJECT, user=SRE1)
    bot.settle()
    assert bot.slack.calls("views.open") == []
    assert any("reject" in text and "ml-platform" in text for text in _whispers(bot, SRE1))


def test_the_requester_can_cancel(bot: RunningBot) -> None:
    """Cancel by the requester ends the request; the card says who cancelled."""
    card = _card(bot, _run(bot, PROD_RETRAIN))
    bot.click(card, ACTION_CANCEL, user=MLP2)
    bot.settle()
    assert any("Only the requester" in text for text in _whispers(bot, MLP2))
    bot.click(card, ACTION_CANCEL, user=USER)
    bot.settle()
    updated = bot.message(CHANNEL, card["ts"])
    assert f"*Cancelled* by <@{USER}>" in blocks_text(updated) and not _has_buttons(updated)


def test_an_approval_can_be_revoked_before_the_quorum(bot: RunningBot) -> None:
    """A first approval shows on the card with a revoke button; revoking takes it off again."""
    card = _card(bot, _run(bot, PROD_ROLLBACK))
    bot.click(card, ACTION_APPROVE, user=MLP2)
    bot.settle()
    approved = bot.message(CHANNEL, card["ts"])
    assert "1 of 2 from ml-platform or sre: <@U0000MLP02>" in blocks_text(approved)
    bot.click(approved, ACTION_REVOKE, user=MLP2)
    bot.settle()
    revoked = bot.message(CHANNEL, card["ts"])
    assert "0 of 2 from ml-platform or sre: none yet" in blocks_text(revoked)
    assert ACTION_REVOKE not in blocks_text(revoked)


# ---- expiry


def test_the_sweep_expires_overdue_requests_in_their_thread(bot: RunningBot, clock: SettableClock) -> None:
    """Past the deadline, the sweep expires the request and says so in its thread."""
    thread = _run(bot, PROD_RETRAIN)
    clock.now += 241 * 60
    assert bot.app.actions is not None
    assert len(bot.app.actions.sweep(bot.app.bolt.client)) == 1
    assert any("expired" in m["text"] and "nothing ran" in m["text"] for m in bot.bot_posts(CHANNEL, thread))


def test_the_sweep_redraws_the_card_as_expired_without_buttons(bot: RunningBot, clock: SettableClock) -> None:
    """Past the deadline, the card itself turns to expired and loses its buttons (not only the thread)."""
    thread = _run(bot, PROD_RETRAIN)
    card = _card(bot, thread)
    assert _has_buttons(card)
    clock.now += 241 * 60
    assert bot.app.actions is not None
    assert len(bot.app.actions.sweep(bot.app.bolt.client)) == 1
    (update,) = [call for call in bot.slack.calls("chat.update") if call.args["ts"] == card["ts"]]
    assert update.args["text"]
    redrawn = bot.message(CHANNEL, card["ts"])
    assert "*Expired*" in blocks_text(redrawn) and "Waiting for approval" not in blocks_text(redrawn)
    assert not _has_buttons(redrawn)


def test_a_click_on_an_expired_request_is_refused_and_the_card_shows_it(
    bot: RunningBot, clock: SettableClock, receiver: WebhookReceiver
) -> None:
    """An approval after the deadline runs nothing, tells the clicker, and the card turns to expired."""
    card = _card(bot, _run(bot, PROD_RETRAIN))
    clock.now += 241 * 60
    bot.click(card, ACTION_APPROVE, user=MLP2)
    bot.settle()
    assert receiver.requests == []
    assert any("expired" in text for text in _whispers(bot, MLP2))
    updated = bot.message(CHANNEL, card["ts"])
    assert "*Expired*" in blocks_text(updated) and not _has_buttons(updated)


# ---- the "Request an action" shortcut


def _form_state(action: str, channel: str | None, params: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The state Slack sends with the request form: action, channel and parameter inputs."""
    values: dict[str, Any] = {
        BLOCK_PICK_ACTION: {
            ACTION_PICK_ACTION: {"type": "static_select", "selected_option": {"value": action}}
        },
        BLOCK_CHANNEL: {INPUT_CHANNEL: {"type": "conversations_select", "selected_conversation": channel}},
    }
    for name, element in params.items():
        values[BLOCK_PARAM_PREFIX + name] = {INPUT_PARAM: element}
    return values


def _open_form(bot: RunningBot, action: str) -> dict[str, Any]:
    """Use the shortcut, pick `action`; returns the form as Steward last drew it."""
    shortcut = {
        "type": "shortcut",
        "callback_id": SHORTCUT_REQUEST_ACTION,
        "trigger_id": "trigger-3",
        "user": {"id": USER, "username": USER.lower()},
        "team": {"id": "T0FAKE"},
        "api_app_id": "A0FAKE",
        "action_ts": "1.0",
    }
    assert bot.interact(shortcut).status == 200
    bot.settle()
    opened = bot.slack.calls("views.open")[-1].args["view"]
    pick = {
        "type": "block_actions",
        "user": {"id": USER, "username": USER.lower()},
        "team": {"id": "T0FAKE"},
        "api_app_id": "A0FAKE",
        "trigger_id": "trigger-4",
        "container": {"type": "view", "view_id": "V1"},
        "view": {**opened, "id": "V1", "hash": "h1", "state": {"values": _form_state(action, None, {})}},
        "actions": [
            {
                "type": "static_select",
                "action_id": ACTION_PICK_ACTION,
                "block_id": BLOCK_PICK_ACTION,
                "selected_option": {"value": action},
                "action_ts": "2.0",
            }
        ],
    }
    assert bot.interact(pick).status == 200
    bot.settle()
    (update,) = bot.slack.calls("views.update")
    assert update.args["view_id"] == "V1"
    return dict(update.args["view"])


def test_the_request_form_is_generated_from_the_parameters(bot: RunningBot) -> None:
    """Enums become selects, integers number inputs with bounds, booleans radio buttons, strings text."""
    form = _open_form(bot, "toggle-feature-flag")
    fields = {
        b["block_id"].removeprefix(BLOCK_PARAM_PREFIX): b for b in form["blocks"] if b["type"] == "input"
    }
    assert fields["flag"]["element"]["type"] == "plain_text_input" and not fields["flag"]["optional"]
    assert fields["enabled"]["element"]["type"] == "radio_buttons"
    assert fields["enabled"]["element"]["initial_option"]["value"] == "yes" and fields["enabled"]["optional"]
    percent = fields["traffic_percent"]["element"]
    assert (percent["type"], percent["min_value"], percent["max_value"]) == ("number_input", "0", "100")
    assert [o["value"] for o in fields["env"]["element"]["options"]] == ["staging", "prod"]


def test_the_request_form_shows_field_errors(bot: RunningBot) -> None:
    """An invalid value and a missing one are reported on their fields; the modal stays open."""
    form = _open_form(bot, "retrain-model")
    values = _form_state(
        "retrain-model", CHANNEL, {"model": {"type": "plain_text_input", "value": "Fraud_Scorer"}}
    )
    reply = bot.submit_view(form, values)
    errors = json.loads(reply.body)["errors"]
    assert set(errors) == {BLOCK_PARAM_PREFIX + "model", BLOCK_PARAM_PREFIX + "env"}
    assert "pattern" in errors[BLOCK_PARAM_PREFIX + "model"]
    assert bot.bot_posts(CHANNEL) == []


def test_a_submitted_request_form_posts_the_card_in_the_chosen_channel(bot: RunningBot) -> None:
    """A valid form becomes the same request: a top-level message and the approval card in its thread."""
    form = _open_form(bot, "retrain-model")
    params: dict[str, dict[str, Any]] = {
        "model": {"type": "plain_text_input", "value": "fraud-scorer"},
        "env": {"type": "static_select", "selected_option": {"value": "prod"}},
    }
    assert bot.submit_view(form, _form_state("retrain-model", CHANNEL, params)).status == 200
    bot.settle()
    (root,) = bot.bot_posts(CHANNEL)
    assert "`retrain-model model=fraud-scorer env=prod`" in blocks_text(_card(bot, root["ts"]))


# ---- mentions


def test_a_mention_requesting_an_action_creates_the_same_card(bot: RunningBot) -> None:
    """ "retrain fraud-scorer in prod" becomes the same request, its card in the mention's thread."""
    ts = bot.say("retrain fraud-scorer in prod")
    bot.settle()
    text = blocks_text(_card(bot, ts))
    assert "`retrain-model model=fraud-scorer env=prod`" in text
    assert "`retrain-prod-one-approver`" in text and "0 of 1 from ml-platform" in text


def test_an_incomplete_mention_request_says_what_is_missing(bot: RunningBot) -> None:
    """A request without its version gets, in the thread, what is missing and the exact command."""
    ts = bot.say("roll back fraud-scorer in prod")
    bot.settle()
    (reply,) = bot.bot_posts(CHANNEL, ts)
    assert "version: missing" in reply["text"]
    assert "`model=fraud-scorer` `env=prod`" in reply["text"]
    assert (
        "`/steward run rollback-model model=<string> version=<integer at least 1> env=staging|prod`"
        in (reply["text"])
    )


def test_a_request_in_a_direct_message_is_sent_to_a_channel(bot: RunningBot) -> None:
    """Approvers cannot see a DM: the request is not made there, and Steward says where to make it."""
    ts = bot.say("retrain fraud-scorer in prod", channel="D0DIRECT", mention=False)
    bot.settle()
    (reply,) = bot.bot_posts("D0DIRECT", ts)
    assert "Requests are made in a channel" in reply["text"]
    assert not any("Approval needed" in blocks_text(m) for m in bot.slack.messages("D0DIRECT"))


def test_a_question_mention_is_still_answered(bot: RunningBot) -> None:
    """A question about rollbacks is answered from the knowledge base; no request is made."""
    ts = bot.say("How do I roll back the fraud-scorer model in production?")
    bot.settle()
    (answer,) = bot.bot_posts(CHANNEL, ts)
    assert "Model rollback" in blocks_text(answer) and ACTION_HELPFUL in blocks_text(answer)
    assert "Approval needed" not in blocks_text(answer)


def test_another_bots_mention_never_requests_an_action(services: Services, receiver: WebhookReceiver) -> None:
    """A configured bot's words never request an action: a request is pointed at the agent API (no
    abstention, no knowledge gap); its questions are answered as anyone's."""
    with running_bot(services, answer_bots=("BHELPER",)) as bot:
        text = f"<@{bot.slack.bot_user_id}> retrain fraud-scorer in staging"
        ts = bot.slack.add_message(CHANNEL, text, "UHELPER", bot_id="BHELPER")
        event = {"type": "app_mention", "channel": CHANNEL, "text": text, "ts": ts}
        bot.event({**event, "bot_id": "BHELPER", "user": "UHELPER"})
        bot.settle()
        (reply,) = bot.bot_posts(CHANNEL, ts)
        assert "agent API" in reply["text"] and "steward agents add" in reply["text"]
        assert receiver.requests == []  # nothing ran
        assert services.conversations.gaps(("open",)) == []

        question = f"<@{bot.slack.bot_user_id}> How do I roll back the fraud-scorer model in production?"
        asked = bot.slack.add_message(CHANNEL, question, "UHELPER", bot_id="BHELPER")
        bot.event(
            {"type": "app_mention", "channel": CHANNEL, "text": question, "ts": asked, "bot_id": "BHELPER"}
        )
        bot.settle()
        (answer,) = bot.bot_posts(CHANNEL, asked)
        assert "Model rollback" in blocks_text(answer)


def test_a_broken_policy_is_reported_privately(
    make_services: Callable[..., Services], tmp_path: Path
) -> None:
    """When the policy files cannot be loaded, `/steward run` says so and points to `steward policy check`."""
    with running_bot(make_services(policies_dir=tmp_path / "missing")) as bot:
        bot.command(PROD_RETRAIN)
        bot.settle()
        (reply,) = _private(bot)
        assert reply["response_type"] == "ephemeral" and "steward policy check" in reply["text"]


def test_the_card_links_the_runbook_when_its_url_is_known() -> None:
    """With a source URL, the runbook title on the card is a link."""
    view = request_view()
    runbook = RunbookExcerpt(
        "runbooks/r.md", "Retraining", "Step 1", "Find the failing task.", "https://kb.example/runbooks/r.md"
    )
    card = approval_card(view, CardFacts("medium", "policies/30-models.yaml:48", runbook))
    texts = [block["text"]["text"] for block in card.blocks if "text" in block]
    assert (
        "*Runbook* <https://kb.example/runbooks/r.md|Retraining> · Step 1\n>Find the failing task." in texts
    )


# ---- reading plain requests


@pytest.fixture(scope="module")
def starter_policy() -> Any:
    """The starter policy, as the parser sees it."""
    return PolicyFolder(ROOT / "policies")().policy


@pytest.mark.parametrize(
    ("text", "action", "raw"),
    [
        (
            "roll back fraud-scorer to version 12 in prod",
            "rollback-model",
            {"model": "fraud-scorer", "version": "12", "env": "prod"},
        ),
        (
            "revert fraud-scorer v7 production",
            "rollback-model",
            {"model": "fraud-scorer", "version": "7", "env": "prod"},
        ),
        (
            "retrain the churn-predictor model on staging",
            "retrain-model",
            {"model": "churn-predictor", "env": "staging"},
        ),
        (
            "retrain fraud-scorer in prod because drift alert",
            "retrain-model",
            {"model": "fraud-scorer", "env": "prod", "reason": "drift alert"},
        ),
        ("pause agent support-assistant", "pause-agent", {"agent": "support-assistant"}),
        (
            "scale fraud-scorer to 8 replicas in prod",
            "scale-service",
            {"service": "fraud-scorer", "replicas": "8", "env": "prod"},
        ),
        (
            "rotate secret llm-gateway/openai-api-key in staging",
            "rotate-secret",
            {"secret_name": "llm-gateway/openai-api-key", "env": "staging"},
        ),
        (
            "set flag support_assistant_canary to 30% in prod",
            "toggle-feature-flag",
            {"flag": "support_assistant_canary", "traffic_percent": "30", "env": "prod"},
        ),
        (
            "disable flag support_assistant_canary in staging",
            "toggle-feature-flag",
            {"flag": "support_assistant_canary", "enabled": "no", "env": "staging"},
        ),
        (
            "run promote-model model=fraud-scorer version=3 env=staging",
            "promote-model",
            {"model": "fraud-scorer", "version": "3", "env": "staging"},
        ),
    ],
)
def test_plain_requests_are_read_into_parameters(
    starter_policy: Any, text: str, action: str, raw: dict[str, str]
) -> None:
    """Verbs name the action; names, versions, environments and numbers fill its parameters."""
    request = read_request(text, starter_policy)
    assert request is not None and request.action == action and request.raw == raw


@pytest.mark.parametrize(
    "text",
    [
        "How do I roll back the fraud-scorer model in production?",
        "rollback steps for fraud-scorer?",
        "rollbacks in prod are slow today",
        "who approves a retrain in prod",
        "please explain the scale limits",
    ],
)
def test_questions_are_not_read_as_requests(starter_policy: Any, text: str) -> None:
    """Without an action verb at the start (or as an incomplete question), a mention is a question."""
    assert read_request(text, starter_policy) is None


@pytest.mark.parametrize(
    ("text", "conflicts"),
    [
        # the two examples
        ("roll back fraud-scorer staging to version 2 in prod", {"env": ("staging", "prod")}),
        ("rollback-model model=fraud-scorer version=2 env=prod env=staging", {"env": ("prod", "staging")}),
        # three values, an alias beside key=value, full-width letters, numbers, names, booleans, reasons
        ("rollback-model model=a model=b model=c version=2 env=prod", {"model": ("a", "b", "c")}),
        ("roll back fraud-scorer to version 2 in production env=staging", {"env": ("staging", "prod")}),
        ("roll back fraud-scorer staging to version 2 in ｐｒｏｄ", {"env": ("staging", "prod")}),
        ("roll back fraud-scorer to version 2 in staging ｅｎｖ＝ｐｒｏｄ", {"env": ("prod", "staging")}),
        ("roll back fraud-scorer from version 13 to version 12 in prod", {"version": ("13", "12")}),
        ("roll back fraud-scorer churn-model to version 2", {"model": ("fraud-scorer", "churn-model")}),
        ("enable flag support_canary off in prod", {"enabled": ("yes", "no")}),
        ("retrain fraud-scorer in prod reason=drift because new labels", {"reason": ("drift", "new labels")}),
        ("scale ranking-api to 8 replicas in prod replicas=9", {"replicas": ("9", "8")}),
        # the same value twice, however written, is no conflict
        ("roll back fraud-scorer to version 2 in PROD, yes prod", {}),
        ("roll back fraud-scorer to version 2 in production env=prod", {}),
        ("roll back fraud-scorer to version 12 in prod version=012", {}),
        ("run promote-model model=fraud-scorer version=3 env=staging env=staging", {}),
        ("scale fraud-scorer to 8 replicas in prod", {}),
        ("roll back fraud-scorer-v2 to version 12 in prod", {}),
        ("roll back fraud-scorer quickly to version 2 in prod", {}),
        ("retrain fraud-scorer in prod because staging drifted", {}),
    ],
)
def test_a_parameter_read_with_two_values_is_a_conflict(
    starter_policy: Any, text: str, conflicts: dict[str, tuple[str, ...]]
) -> None:
    """Every value the words give a parameter is read; two different ones are a conflict, in order."""
    request = read_request(text, starter_policy)
    assert request is not None and request.conflicts == conflicts


def test_plain_words_do_not_take_an_environment_for_a_name(starter_policy: Any) -> None:
    """ "roll back prod fraud-scorer": prod is the environment, not the model (once read as both)."""
    request = read_request("roll back prod fraud-scorer to version 2", starter_policy)
    assert request is not None and request.raw == {"model": "fraud-scorer", "version": "2", "env": "prod"}


def _requests(services: Services) -> int:
    """How many action requests exist (none before the first: its tables are made on first use)."""
    if not sa.inspect(services.approvals.engine).has_table(action_requests.name):
        return 0
    with services.approvals.engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(action_requests)).scalar_one())


@pytest.mark.parametrize(
    ("text", "reading"),
    [
        ("roll back fraud-scorer staging to version 2 in prod", "I read env as both `staging` and `prod`"),
        (
            "rollback-model model=fraud-scorer version=2 env=prod env=staging",
            "I read env as both `prod` and `staging`",
        ),
        ("retrain fraud-scorer in staging and in prod", "I read env as both `staging` and `prod`"),
    ],
)
def test_a_mention_with_conflicting_words_is_refused_with_the_reading(
    bot: RunningBot, services: Services, receiver: WebhookReceiver, text: str, reading: str
) -> None:
    """Nothing is requested or run; the thread shows what was read and asks which one."""
    ts = bot.say(text)
    bot.settle()
    (reply,) = bot.bot_posts(CHANNEL, ts)
    assert f"{reading}; say which one" in reply["text"] and "Nothing was requested" in reply["text"]
    assert _requests(services) == 0 and receiver.requests == []


def test_conflicting_values_are_shown_as_text_never_as_mentions(bot: RunningBot, services: Services) -> None:
    """A value such as <!channel> is escaped in the reading: it notifies nobody."""
    ts = bot.say("retrain fraud-scorer in prod reason=<!channel> because <@U0BOSS> said so")
    bot.settle()
    (reply,) = bot.bot_posts(CHANNEL, ts)
    assert "`&lt;!channel&gt;` and `&lt;@U0BOSS&gt; said so`" in reply["text"]
    assert "<!channel>" not in reply["text"] and "<@U0BOSS>" not in reply["text"]
    assert _requests(services) == 0


def test_a_secret_parameter_read_twice_is_not_repeated() -> None:
    """The reading of a secret parameter says that it differs, not what the values are."""
    spec = ActionSpec(
        name="set-token",
        description="Set a token.",
        params=(ParamSpec(name="token", secret=True), ParamSpec(name="env", enum=("staging", "prod"))),
        executor=ExecutorSpec(kind="webhook", url="https://hooks.example/t"),
    )
    text = conflict_text("set-token", {"token": ("hunter2", "hunter3"), "env": ("staging", "prod")}, spec)
    assert "hunter" not in text
    assert "I read token 2 times, with different values; say which one" in text
    assert "I read env as both `staging` and `prod`; say which one" in text


def test_run_with_a_parameter_given_twice_differently_is_refused_privately(
    bot: RunningBot, services: Services
) -> None:
    """`/steward run … env=prod env=staging`: the private reply shows the reading; nothing is posted."""
    bot.command("run rollback-model model=fraud-scorer version=2 env=prod env=staging")
    bot.settle()
    (reply,) = _private(bot)
    assert reply["response_type"] == "ephemeral"
    assert "I read env as both `prod` and `staging`; say which one" in reply["text"]
    assert bot.bot_posts(CHANNEL) == [] and _requests(services) == 0


def test_run_with_the_same_value_twice_is_one_request(bot: RunningBot, services: Services) -> None:
    """`env=prod env=prod` says one thing: the request is made, once."""
    thread = _run(bot, "run retrain-model model=fraud-scorer env=prod env=prod")
    assert "`retrain-model model=fraud-scorer env=prod`" in bot.message(CHANNEL, thread)["text"]
    assert _requests(services) == 1


# ---- requests are made in channels only


def _command_in(bot: RunningBot, text: str, channel: str, channel_name: str) -> Reply:
    """`/steward TEXT` typed in a conversation Slack names `channel_name` (a DM is `directmessage`)."""
    body = command_body(
        text=text,
        user_id=USER,
        channel_id=channel,
        channel_name=channel_name,
        response_url=bot.slack.response_url("cmd"),
    )
    return bot.send(body, "application/x-www-form-urlencoded")


@pytest.mark.parametrize(
    ("channel", "channel_name"),
    [("D0DIRECT", "directmessage"), ("G0GROUPDM", "mpdm-asker--dana--lee-1"), ("C0ODDNAME", "mpdm-x--y-1")],
)
def test_run_in_a_direct_message_or_group_dm_is_refused_and_nothing_is_recorded(
    bot: RunningBot, services: Services, channel: str, channel_name: str
) -> None:
    """Approvers cannot see a DM or group DM: the private reply says to use a channel; nothing is posted."""
    assert _command_in(bot, PROD_RETRAIN, channel, channel_name).status == 200
    bot.settle()
    (reply,) = _private(bot)
    assert reply["response_type"] == "ephemeral"
    assert "not made in direct messages or group DMs" in reply["text"] and "in a channel" in reply["text"]
    assert bot.slack.calls("chat.postMessage") == [] and _requests(services) == 0


def test_run_in_a_private_channel_is_a_request(bot: RunningBot, services: Services) -> None:
    """A private channel with an old G… id is a channel (conversations.info says so): the request is made."""
    bot.slack.set_conversation("G0PRIVATE", "private")
    assert _command_in(bot, PROD_RETRAIN, "G0PRIVATE", "privategroup").status == 200
    bot.settle()
    (root,) = bot.bot_posts("G0PRIVATE")
    assert "Approval needed" in blocks_text(bot.bot_posts("G0PRIVATE", root["ts"])[0])
    assert _requests(services) == 1


def test_a_conversation_slack_will_not_name_gets_no_request(bot: RunningBot, services: Services) -> None:
    """When conversations.info fails (a missing scope), nothing is requested, and the reply says why."""
    bot.slack.fail("conversations.info", status=200, error="missing_scope")
    assert _command_in(bot, PROD_RETRAIN, "G0UNKNOWN", "privategroup").status == 200
    bot.settle()
    (reply,) = _private(bot)
    assert "Slack said `missing_scope`" in reply["text"] and "`mpim:read`" in reply["text"]
    assert _requests(services) == 0


@pytest.mark.parametrize("channel_type", ["mpim", None])
def test_a_mention_in_a_group_dm_is_not_a_request(
    bot: RunningBot, services: Services, channel_type: str | None
) -> None:
    """A mention that reads as a request in a group DM (told by the event, or by conversations.info for a
    G… id) is answered with where to ask; nothing is recorded."""
    bot.slack.set_conversation("G0GROUPDM", "mpim")
    text = f"<@{bot.slack.bot_user_id}> retrain fraud-scorer in prod"
    ts = bot.slack.add_message("G0GROUPDM", text, USER)
    event = {"type": "app_mention", "channel": "G0GROUPDM", "user": USER, "text": text, "ts": ts}
    bot.event({**event, "channel_type": channel_type} if channel_type else event)
    bot.settle()
    (reply,) = bot.bot_posts("G0GROUPDM", ts)
    assert "Requests are made in a channel" in reply["text"]
    assert _requests(services) == 0
    assert len(bot.slack.calls("conversations.info")) == (0 if channel_type else 1)


def test_a_request_in_a_group_dm_thread_is_sent_to_a_channel(bot: RunningBot, services: Services) -> None:
    """A follow-up in a group DM's thread that reads as a request is not answered as a question either."""
    ts = bot.say("How do I roll back a model?", channel="G0GROUPDM")  # Steward answers: a sticky thread
    bot.settle()
    text = "retrain fraud-scorer in prod"
    reply_ts = bot.slack.add_message("G0GROUPDM", text, USER, thread_ts=ts)
    event = {"type": "message", "channel": "G0GROUPDM", "channel_type": "mpim", "user": USER}
    bot.event({**event, "text": text, "ts": reply_ts, "thread_ts": ts})
    bot.settle()
    assert "Requests are made in a channel" in bot.bot_posts("G0GROUPDM", ts)[-1]["text"]
    assert _requests(services) == 0


# ---- only the workspace Steward is installed in


def _refused(kind: str) -> float:
    """How many payloads of this kind were refused as another workspace's, so far."""
    return REGISTRY.get_sample_value("steward_slack_other_team_total", {"kind": kind}) or 0.0


@pytest.mark.parametrize(
    "who",
    [
        {"team": {"id": "T0OTHER"}},  # another workspace that installed the app
        {"user_team": "T0OTHER"},  # a person of another organization, in a Slack Connect channel
        {"team": None, "user_team": None},  # no team at all
        {"enterprise": {"id": "E0ELSEWHERE"}},  # our team id, but an organization we are not in
    ],
)
def test_a_click_from_another_workspace_is_not_counted(
    bot: RunningBot, services: Services, who: dict[str, Any]
) -> None:
    """An eligible approver's click that carries another team id changes nothing; it is counted as refused."""
    card = _card(bot, _run(bot, PROD_RETRAIN))
    button = next(e for b in card["blocks"] if b["type"] == "actions" for e in b["elements"])
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": MLP1, "username": "mlp1", "team_id": who.get("user_team", bot.slack.team_id)},
        "team": who.get("team", {"id": bot.slack.team_id}),
        "api_app_id": "A0FAKE",
        "trigger_id": "t",
        "channel": {"id": CHANNEL},
        "container": {"type": "message", "message_ts": card["ts"], "channel_id": CHANNEL},
        "message": card,
        "actions": [
            {"type": "button", "action_id": ACTION_APPROVE, "block_id": "b", "value": button["value"]}
        ],
    }
    if "enterprise" in who:
        payload["enterprise"] = who["enterprise"]
    before = _refused("block_actions")
    reply = bot.interact(payload)
    bot.settle()
    request_id = RequestValue.model_validate_json(button["value"]).request_id
    view = services.approvals.get(request_id)
    assert view is not None and view.status == "pending" and view.approvers == ()
    assert bot.slack.calls("chat.update") == [] and bot.slack.calls("chat.postEphemeral") == []
    assert (reply.status, reply.body) == (200, "")
    assert _refused("block_actions") == before + 1


def test_the_same_click_from_this_workspace_counts(bot: RunningBot, receiver: WebhookReceiver) -> None:
    """The control: the click with this workspace's ids is the approval that runs the retrain."""
    card = _card(bot, _run(bot, PROD_RETRAIN))
    assert bot.click(card, ACTION_APPROVE, user=MLP1).status == 200
    bot.settle()
    assert len(receiver.requests) == 1


def test_a_command_from_another_workspace_is_refused_privately(bot: RunningBot, services: Services) -> None:
    """`/steward run` with another team id: a private line in the acknowledgement; nothing else happens."""
    body = command_body(text=PROD_RETRAIN, team_id="T0OTHER", response_url=bot.slack.response_url("cmd"))
    before = _refused("command")
    reply = bot.send(body, "application/x-www-form-urlencoded")
    bot.settle()
    assert reply.status == 200
    assert json.loads(reply.body) == {
        "response_type": "ephemeral",
        "text": "This Steward serves another Slack workspace, so nothing was done here.",
    }
    assert _refused("command") == before + 1
    assert bot.slack.calls("chat.postMessage") == [] and _private(bot) == [] and _requests(services) == 0


def test_a_form_from_another_workspace_is_not_recorded(bot: RunningBot, services: Services) -> None:
    """A rejection submitted with another team id rejects nothing; Slack is shown a valid modal instead."""
    card = _card(bot, _run(bot, PROD_RETRAIN))
    bot.click(card, ACTION_REJECT, user=MLP1)
    bot.settle()
    view = bot.slack.calls("views.open")[-1].args["view"]
    values = {BLOCK_REJECT_REASON: {INPUT_REJECT_REASON: {"type": "plain_text_input", "value": "no"}}}
    payload = {
        "type": "view_submission",
        "user": {"id": MLP1, "team_id": "T0OTHER"},
        "team": {"id": "T0OTHER"},
        "api_app_id": "A0FAKE",
        "view": {**view, "id": "V1", "state": {"values": values}},
    }
    reply = bot.interact(payload)
    bot.settle()
    answer = json.loads(reply.body)
    assert answer["response_action"] == "update"
    assert View(**answer["view"]).to_dict() == answer["view"]  # what slack_sdk accepts, unchanged
    request = services.approvals.get(RejectMetadata.model_validate_json(view["private_metadata"]).request_id)
    assert request is not None and request.status == "pending"


def test_a_shortcut_from_another_workspace_opens_nothing(bot: RunningBot) -> None:
    """The "Request an action" shortcut with another team id opens no form."""
    shortcut = {
        "type": "shortcut",
        "callback_id": SHORTCUT_REQUEST_ACTION,
        "trigger_id": "trigger-3",
        "user": {"id": USER, "team_id": "T0OTHER"},
        "team": {"id": "T0OTHER"},
        "api_app_id": "A0FAKE",
    }
    before = _refused("shortcut")
    assert bot.interact(shortcut).status == 200
    bot.settle()
    assert bot.slack.calls("views.open") == [] and _refused("shortcut") == before + 1


@pytest.mark.parametrize(
    ("installation", "ids", "refused"),
    [
        # a workspace of an Enterprise Grid: that workspace only
        (Installation("T1", "E1"), {"team": {"id": "T1"}, "enterprise": {"id": "E1"}}, False),
        (Installation("T1", "E1"), {"team": {"id": "T2"}, "enterprise": {"id": "E1"}}, True),
        (Installation("T1", "E1"), {"team": {"id": "T1"}, "user": {"team_id": "T2"}}, True),
        (Installation("T1", None), {"team": {"id": "T1"}, "enterprise": {"id": "E9"}}, True),
        (Installation("T1", None), {"team_id": "T1"}, False),
        (Installation("T1", None), {}, True),
        # installed for the whole organization: every workspace of it, no other organization
        (Installation("", "E1", org_wide=True), {"team": {"id": "T7"}, "enterprise": {"id": "E1"}}, False),
        (Installation("", "E1", org_wide=True), {"team_id": "T7", "enterprise_id": "E1"}, False),
        (Installation("", "E1", org_wide=True), {"team": {"id": "T7"}, "enterprise": {"id": "E2"}}, True),
        (Installation("", "E1", org_wide=True), {"team": {"id": "T7"}}, True),
    ],
)
def test_which_payloads_belong_to_the_installation(
    installation: Installation, ids: dict[str, Any], refused: bool
) -> None:
    """Enterprise Grid: a workspace install takes its workspace; an organization install, its organization."""
    assert (installation.refuses(ids) is not None) == refused


def test_the_installation_is_read_from_auth_test() -> None:
    """Team, organization and an organization-wide install, as auth.test reports them."""
    with FakeSlack(team_id="T0ONE", enterprise_id="E0ORG", enterprise_install=True) as slack:
        reply = WebClient(token="xoxb-test", base_url=slack.api_url).auth_test().data
        assert isinstance(reply, dict)
        assert Installation.from_auth_test(reply) == Installation("T0ONE", "E0ORG", org_wide=True)


# ---- the deployment's allow-list of programs


@pytest.fixture
def marker_action(services: Services, tmp_path: Path) -> Path:
    """A command action `touch-marker` the policy allows; returns the file its program creates."""
    marker = tmp_path / "ran"
    script = tmp_path / "touch-marker.sh"
    script.write_text(f'#!/bin/sh\ntouch "{marker}"\necho touched\n', encoding="utf-8")
    script.chmod(0o755)
    policy = f"""
        actions:
          touch-marker:
            description: Touch a file.
            executor: {{kind: command, program: "{script}"}}
        rules:
          - {{name: touch-allowed, actions: touch-marker, outcome: allow, reason: harmless}}
    """
    write_tree(services.settings.policies_dir, {"50-marker.yaml": policy})
    return marker


@pytest.mark.parametrize(("allowed", "runs"), [(None, True), (("true",), False)])
def test_commands_run_only_programs_the_deployment_allows(
    services: Services, marker_action: Path, allowed: tuple[str, ...] | None, runs: bool
) -> None:
    """STEWARD_ALLOWED_PROGRAMS is the second key: a program it leaves out fails without running."""
    with running_bot(services, allowed_programs=allowed) as bot:
        thread = _run(bot, "run touch-marker")
        result = bot.bot_posts(CHANNEL, thread)[-1]
    assert marker_action.exists() == runs
    if not runs:
        assert "is not in the allowed programs" in blocks_text(result)
