"""Credentials people type (in an ordinary action parameter, a question, a reply, a reason, a title) are
masked before Steward stores, audits, logs or posts them, and whoever typed one is told to rotate it.

Each test searches a full dump for the raw value: every row of every table of every database in the data
dir, every Web API call Steward made to the fake Slack, the files it wrote and its log records.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.actions.approvals import DENIED, SUCCEEDED, ApprovalService
from bot.actions.models import ActionRequest, ActionSpec, Actor, ApprovalRequirement, Decision
from bot.actions.policy.gate import PolicyFolder
from bot.actions.request_state import no_waiting_with_secrets, redacted, secret_values
from bot.cli import main
from bot.slack.payloads import (
    ACTION_ASK_EXPERT,
    ACTION_NOT_HELPFUL,
    ACTION_REJECT,
    ACTION_SAVE_GUIDANCE,
    BLOCK_REASON,
    BLOCK_REJECT_REASON,
    INPUT_REASON,
    INPUT_REJECT_REASON,
)
from bot.store.action_requests import ActionRequestStore
from bot.store.conversations import ConversationStore, knowledge_gaps
from bot.wiring import Services
from tests.conftest import ROOT
from tests.databases import StateDatabase
from tests.fakes.webhook import WebhookReceiver
from tests.slackbot import CHANNEL, EXPERT, USER, RunningBot, blocks_text, running_bot
from tests.support.clock import TUESDAY_NOON

AWS_KEY = "AKIAZ7Q4XJ2LMNB5RT3W"
SLACK_TOKEN = "xoxb-2048675309-4096123456789-Qw3rTy7UiOp9AsDfGhJkLzXc"
GITHUB_TOKEN = "ghp_7Rt2vYx9Lm4Nb7Kc1Zp5Wd3Hf6Gj0Ts8Ua2Ve"
RAW = (AWS_KEY, SLACK_TOKEN, GITHUB_TOKEN)
ROTATE = "rotate it"
ROLLBACK = "How do I roll back the fraud-scorer model in production?"
UNKNOWN = "How often do we rotate the feature store encryption key?"
EXPERTS = "CEXPERTS"
MLP1 = "U0000MLP01"
# A program that prints its note back (masked when stored) and reversed (proof it got the raw value).
ECHO_ACTION = f"""
actions:
  note-incident:
    description: Append a note to the incident log.
    risk: low
    executor:
      kind: command
      program: {sys.executable}
      args: ["-c", "import sys; print(sys.argv[1]); print(sys.argv[1][::-1])", "{{note}}"]
    params:
      note: {{description: The note}}
rules:
  - name: notes-are-self-service
    actions: note-incident
    outcome: allow
    reason: Notes are self-service.
"""


# ---- the dump every test searches


def _tables(engine: sa.Engine) -> str:
    """Every row of every table of a database."""
    with engine.connect() as connection:
        names = sa.inspect(connection).get_table_names()
        return "\n".join(
            f"{name}: {tuple(row)}"
            for name in names
            for row in connection.execute(sa.select(sa.text("*")).select_from(sa.table(name)))
        )


def _databases(root: Path) -> str:
    """Every row of every table of every SQLite database below `root`."""
    dumps: list[str] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        with path.open("rb") as file:
            if file.read(16) != b"SQLite format 3\x00":
                continue
        engine = sa.create_engine(f"sqlite:///{path}")
        try:
            dumps.append(_tables(engine))
        finally:
            engine.dispose()
    return "\n".join(dumps)


def _files(root: Path) -> str:
    """The text of every file below `root` that is not a database."""
    return "\n".join(
        path.read_text(errors="replace")
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.suffix in (".md", ".yaml", ".txt", ".json")
    )


def _calls(bot: RunningBot) -> str:
    """Every Web API call Steward made (and every response_url post), with all its arguments."""
    return json.dumps([[call.method, call.args] for call in bot.slack.calls()], ensure_ascii=False)


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)


def _everything(bot: RunningBot, caplog: pytest.LogCaptureFixture, *roots: Path) -> str:
    settings = bot.services.settings
    places = (settings.data_dir, *roots)
    return "\n".join(
        [_calls(bot), _logged(caplog)]
        + [_databases(root) for root in places]
        + [_files(root) for root in roots]
    )


def _assert_no_raw(everything: str, *markers: str) -> None:
    """No raw credential anywhere; the masks are there (so the dump is not vacuously clean)."""
    assert [value for value in RAW if value in everything] == []
    for marker in markers:
        assert marker in everything, marker


def _whispers(bot: RunningBot, user: str = USER) -> list[str]:
    return [str(c.args.get("text")) for c in bot.slack.calls("chat.postEphemeral") if c.args["user"] == user]


def _private(bot: RunningBot) -> list[str]:
    return [str(call.args.get("text")) for call in bot.slack.calls("response_url")]


@pytest.fixture(autouse=True)
def _steward_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Steward's own log records at INFO, to search them too."""
    caplog.set_level(logging.INFO, logger="steward")


# ---- action parameters


@pytest.fixture
def action_services(make_services: Callable[..., Services], small_kb: Path, tmp_path: Path) -> Services:
    """The small knowledge base with the retraining runbook, and a private copy of the starter policies
    plus an action whose program prints its note back."""
    shutil.copy(ROOT / "knowledge/runbooks/failed-retraining-pipeline.md", small_kb / "runbooks")
    policies = shutil.copytree(ROOT / "policies", tmp_path / "policies")
    (policies / "50-notes.yaml").write_text(ECHO_ACTION)
    built = make_services(policies_dir=policies)
    built.ingestor.run([small_kb])
    return built


@pytest.fixture
def action_bot(action_services: Services) -> Iterator[RunningBot]:
    with running_bot(action_services) as running:
        yield running


def _thread(bot: RunningBot) -> str:
    roots = bot.bot_posts(CHANNEL)
    assert roots, f"nothing posted; answered privately: {_private(bot)}"
    return str(roots[-1]["ts"])


def test_an_aws_key_in_an_ordinary_parameter_runs_at_once_but_is_never_stored_audited_or_posted(
    action_bot: RunningBot, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """Allowed: the webhook gets the key; the request row, the audit, the posts and the logs only ever
    say [redacted:aws-access-key], and the requester is told privately to rotate it."""
    action_bot.command(f"run retrain-model model=fraud-scorer env=staging reason={AWS_KEY}")
    action_bot.settle()
    thread = _thread(action_bot)
    root = action_bot.message(CHANNEL, thread)
    assert "reason='[redacted:aws-access-key]'" in root["text"]
    assert "retrain-model succeeded" in blocks_text(action_bot.bot_posts(CHANNEL, thread)[-1])
    (call,) = receiver.requests
    assert json.loads(call.body)["params"]["reason"] == AWS_KEY
    (notice,) = _whispers(action_bot)
    assert "`reason`" in notice and "aws-access-key" in notice and ROTATE in notice
    everything = _everything(action_bot, caplog)
    _assert_no_raw(everything, "action_requests", "audit_log", '"reason": "[redacted:aws-access-key]"')


def test_a_request_that_must_wait_with_an_aws_key_is_denied_and_names_the_parameter(
    action_bot: RunningBot, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """Production needs an approval, and the key would be gone by then: denied, the reason names the
    parameter and says to pass a reference; no card, nothing runs, nothing raw anywhere."""
    action_bot.command(f"run retrain-model model=fraud-scorer env=prod reason={AWS_KEY}")
    action_bot.settle()
    (denied,) = action_bot.bot_posts(CHANNEL, _thread(action_bot))
    assert "*denied*" in denied["text"] and "Approval needed" not in blocks_text(denied)
    assert "what looks like a secret (aws-access-key) in `reason`" in denied["text"]
    assert "Pass a reference instead" in denied["text"]
    assert receiver.requests == []
    assert any(ROTATE in text for text in _whispers(action_bot))
    _assert_no_raw(_everything(action_bot, caplog), "denied", "[redacted:aws-access-key]")


def test_an_aws_key_in_a_mention_request_is_treated_the_same(
    action_bot: RunningBot, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """A request written in a mention: denied the same way, and no table or post has the key."""
    ts = action_bot.say(f"run retrain-model model=fraud-scorer env=prod reason={AWS_KEY}")
    action_bot.settle()
    (denied,) = action_bot.bot_posts(CHANNEL, ts)
    assert "*denied*" in denied["text"] and "in `reason`" in denied["text"]
    assert receiver.requests == []
    assert any(ROTATE in text for text in _whispers(action_bot))
    _assert_no_raw(_everything(action_bot, caplog), "[redacted:aws-access-key]")


def test_a_key_in_a_mention_request_that_does_not_validate_is_masked_in_the_reply(
    action_bot: RunningBot, caplog: pytest.LogCaptureFixture
) -> None:
    """The reply says what was misread, in the channel's thread: the key in it is masked."""
    ts = action_bot.say(f"run rollback-model model=fraud-scorer version={AWS_KEY} env=prod")
    action_bot.settle()
    (reply,) = action_bot.bot_posts(CHANNEL, ts)
    assert "version" in reply["text"] and "[redacted:aws-access-key]" in reply["text"]
    _assert_no_raw(_everything(action_bot, caplog), "[redacted:aws-access-key]")


def test_a_key_written_as_a_parameter_name_is_masked_in_the_private_reply(
    action_bot: RunningBot, caplog: pytest.LogCaptureFixture
) -> None:
    """`/steward run` with the key where a name goes: the list of problems has it masked."""
    action_bot.command(f"run retrain-model model=fraud-scorer env=staging {AWS_KEY}=1")
    action_bot.settle()
    (reply,) = _private(action_bot)
    assert "[redacted:aws-access-key]" in reply
    _assert_no_raw(_everything(action_bot, caplog), "[redacted:aws-access-key]")


def test_a_program_that_prints_the_key_back_has_its_output_stored_and_posted_masked(
    action_bot: RunningBot, caplog: pytest.LogCaptureFixture
) -> None:
    """The program gets the raw note (it prints it reversed); its output is stored and posted masked."""
    action_bot.command(f"run note-incident note={AWS_KEY}")
    action_bot.settle()
    result = action_bot.bot_posts(CHANNEL, _thread(action_bot))[-1]
    assert "note-incident succeeded" in blocks_text(result)
    assert AWS_KEY[::-1] in blocks_text(result)  # the program had the real key
    everything = _everything(action_bot, caplog)
    _assert_no_raw(everything, SUCCEEDED, "[redacted:aws-access-key]")
    assert everything.count(AWS_KEY[::-1]) >= 2  # stored and posted


def test_a_rejection_reason_with_a_token_is_masked_on_the_card(
    action_bot: RunningBot, caplog: pytest.LogCaptureFixture
) -> None:
    """The approver's reason is shown on the card and audited, masked."""
    action_bot.command("run retrain-model model=fraud-scorer env=prod")
    action_bot.settle()
    thread = _thread(action_bot)
    card = next(m for m in action_bot.bot_posts(CHANNEL, thread) if "Approval needed" in blocks_text(m))
    action_bot.click(card, ACTION_REJECT, user=MLP1)
    action_bot.settle()
    view = action_bot.slack.calls("views.open")[-1].args["view"]
    reason = f"use the service token {SLACK_TOKEN} instead"
    values = {BLOCK_REJECT_REASON: {INPUT_REJECT_REASON: {"type": "plain_text_input", "value": reason}}}
    assert action_bot.submit_view(view, values, user=MLP1).status == 200
    action_bot.settle()
    assert "[redacted:slack-token]" in blocks_text(action_bot.message(CHANNEL, str(card["ts"])))
    _assert_no_raw(_everything(action_bot, caplog), "rejected")


def _gateway_key() -> ActionSpec:
    return ActionSpec.model_validate(
        {
            "name": "set-gateway-key",
            "description": "Put a new key into the gateway.",
            "executor": {"kind": "webhook", "url": "https://hooks.example.com/key"},
            "params": [
                {"name": "env", "enum": ["staging", "prod"]},
                {"name": "key", "secret": True},
                {"name": "note", "required": False},
            ],
        }
    )


@pytest.mark.parametrize(
    ("note", "kind"),
    [
        (f"leaked {AWS_KEY} yesterday", "aws-access-key"),  # inside a sentence
        (f"_{AWS_KEY}_", "aws-access-key"),  # Slack italics
        (f"https://admin:{'Wq7pL2zR9vK'}@db.internal/steward", "url-password"),
        (f"password={'Hx7pQ2mZ9wLk'}", "password"),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0t\n",
            "private-key",
        ),
    ],
)
def test_a_credential_in_an_ordinary_parameter_is_a_secret_parameter(note: str, kind: str) -> None:
    """It goes to the run, is stored masked with its kind, and stops a request that must wait."""
    spec = _gateway_key()
    request = ActionRequest(action=spec.name, params={"env": "prod", "key": "vault:gw/key", "note": note})
    assert secret_values(request, spec) == {"key": "vault:gw/key", "note": note}
    stored = redacted(request, spec)
    assert stored["key"] == "[redacted]" and f"[redacted:{kind}]" in stored["note"]
    assert stored["env"] == "prod"
    waiting = Decision(
        outcome="require_approval",
        rule="gateway-key-prod",
        reason="Prod keys need security.",
        policy_version="v",
        approval=ApprovalRequirement(count=1, groups=("security",)),
        evaluated_at=dt.datetime(2026, 11, 24, 10, tzinfo=dt.UTC),
    )
    decision = no_waiting_with_secrets(waiting, secret_values(request, spec))
    assert decision.outcome == "deny" and decision.approval is None
    assert decision.reason.startswith("Prod keys need security. But it carries the secret parameter `key`")
    assert f"what looks like a secret ({kind}) in `note`" in decision.reason


def test_words_that_only_look_technical_are_not_secret_parameters() -> None:
    """Names of secrets, versions, hosts, e-mail addresses: ordinary parameters, stored as they are."""
    spec = _gateway_key()
    note = "rotate llm-gateway/openai-api-key v1.2.3 on 10.0.0.12, tell jane.doe@example.com"
    request = ActionRequest(action=spec.name, params={"env": "prod", "key": "k", "note": note})
    assert secret_values(request, spec) == {"key": "k"}
    assert redacted(request, spec)["note"] == note


def test_the_service_stores_a_credential_parameter_masked_on_both_databases(
    state_db: StateDatabase, tmp_path: Path
) -> None:
    """Through the approval service (SQLite and PostgreSQL): the request row and the audit are masked."""
    policies = shutil.copytree(ROOT / "policies", tmp_path / "policies")
    service = ApprovalService(
        ActionRequestStore(state_db.migrated_engine()), PolicyFolder(policies), clock=lambda: TUESDAY_NOON
    )
    request = ActionRequest(
        action="retrain-model", params={"model": "fraud-scorer", "env": "prod", "reason": AWS_KEY}
    )
    view, decision = service.submit(request, Actor(user_id="UOUTSIDER", channel="COPS"), "1.0")
    assert view.status == DENIED and "in `reason`" in decision.reason
    assert view.params["reason"] == "[redacted:aws-access-key]"
    dumped = _tables(state_db.engine())
    assert "action_requests: " in dumped and "audit_log: " in dumped
    assert [value for value in RAW if value in dumped] == []


# ---- questions and what people type


@pytest.fixture
def services(make_services: Callable[..., Services], small_kb: Path) -> Services:
    """The small knowledge base, with an experts channel and a guidance inbox inside the test's folder."""
    built = make_services(guidance_inbox=small_kb / "inbox", experts_channel=EXPERTS)
    built.ingestor.run([small_kb])
    return built


def test_a_question_with_a_token_in_a_mention_is_stored_masked_and_the_asker_told(
    bot: RunningBot, caplog: pytest.LogCaptureFixture
) -> None:
    """The answer log has the question masked; the asker is told privately to rotate the token."""
    ts = bot.say(f"{ROLLBACK} I tried with {SLACK_TOKEN}")
    bot.settle()
    assert "Model rollback" in blocks_text(bot.bot_posts(CHANNEL, ts)[-1])
    (notice,) = _whispers(bot)
    assert "slack-token" in notice and ROTATE in notice
    _assert_no_raw(_everything(bot, caplog), "answer_log", "I tried with [redacted:slack-token]")


def test_slash_ask_reposts_the_question_masked(bot: RunningBot, caplog: pytest.LogCaptureFixture) -> None:
    """The command's text was private: the "asked:" post the channel sees has the token masked."""
    bot.command(f"ask {ROLLBACK} token {SLACK_TOKEN}")
    bot.settle()
    (root,) = bot.bot_posts(CHANNEL)
    assert root["text"] == f"<@{USER}> asked: {ROLLBACK} token [redacted:slack-token]"
    assert any(ROTATE in text for text in _whispers(bot))
    _assert_no_raw(_everything(bot, caplog), "answer_log")


def test_slash_ask_answered_privately_still_tells_and_masks(
    bot: RunningBot, caplog: pytest.LogCaptureFixture
) -> None:
    """Where Steward cannot post, the private answer comes with the notice; the log is masked."""
    bot.slack.fail("chat.postMessage", status=200, times=1, error="not_in_channel")
    bot.command(f"ask {ROLLBACK} token {SLACK_TOKEN}")
    bot.settle()
    assert any(ROTATE in text for text in _private(bot))
    _assert_no_raw(_everything(bot, caplog), "token [redacted:slack-token]")


def test_ask_an_expert_and_save_as_guidance_keep_credentials_masked(
    bot: RunningBot, services: Services, small_kb: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The gap, the experts-channel post, the expert's saved reply and the draft file: all masked."""
    ts = bot.say(f"{UNKNOWN} Our key is {AWS_KEY}")
    bot.settle()
    abstention = bot.bot_posts(CHANNEL, ts)[-1]
    bot.click(abstention, ACTION_ASK_EXPERT)
    bot.settle()
    (posted,) = bot.bot_posts(EXPERTS)
    assert "Our key is [redacted:aws-access-key]" in posted["text"]
    answer = f"Rotate it every 90 days; the vault token is {GITHUB_TOKEN}"
    reply = bot.say(answer, user=EXPERT, thread_ts=ts, mention=False)
    bot.settle()
    offer = next(c.args for c in bot.slack.calls("chat.postEphemeral") if c.args["user"] == EXPERT)
    bot.click({"channel": CHANNEL, "ts": reply, "blocks": offer["blocks"]}, ACTION_SAVE_GUIDANCE, user=EXPERT)
    bot.settle()
    (draft,) = (small_kb / "inbox").glob("*.md")
    assert "[redacted:github-token]" in draft.read_text() and "[redacted:aws-access-key]" in draft.read_text()
    assert "aws-access-key" not in draft.name and "akia" not in draft.name.lower()
    assert any("github-token" in text and ROTATE in text for text in _whispers(bot, EXPERT))
    (gap,) = services.conversations.gaps()
    assert gap.question == f"{UNKNOWN} Our key is [redacted:aws-access-key]"
    _assert_no_raw(_everything(bot, caplog, small_kb / "inbox"), "knowledge_gaps")


def test_a_gap_recorded_raw_before_masking_is_forwarded_masked(
    bot: RunningBot, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """A question stored before this release (raw) is masked when it is posted to the experts."""
    ts = bot.say(UNKNOWN)
    bot.settle()
    with services.conversations.engine.begin() as connection:
        connection.execute(sa.update(knowledge_gaps).values(question=f"{UNKNOWN} key {AWS_KEY}"))
    bot.click(bot.bot_posts(CHANNEL, ts)[-1], ACTION_ASK_EXPERT)
    bot.settle()
    (posted,) = bot.bot_posts(EXPERTS)
    assert "key [redacted:aws-access-key]" in posted["text"]
    assert AWS_KEY not in _calls(bot)


def test_a_not_helpful_reason_with_a_token_is_stored_masked(
    bot: RunningBot, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """The reason of a vote is stored masked, and its author told."""
    ts = bot.say(ROLLBACK)
    bot.settle()
    bot.click(bot.bot_posts(CHANNEL, ts)[-1], ACTION_NOT_HELPFUL)
    bot.settle()
    view = bot.slack.calls("views.open")[-1].args["view"]
    values = {BLOCK_REASON: {INPUT_REASON: {"type": "plain_text_input", "value": f"my token {SLACK_TOKEN}"}}}
    assert bot.submit_view(view, values).status == 200
    bot.settle()
    (row,) = services.conversations.feedback_rows()
    assert row["reason"] == "my token [redacted:slack-token]"
    assert any(ROTATE in text for text in _whispers(bot))
    _assert_no_raw(_everything(bot, caplog), "feedback")


def test_the_assistant_pane_titles_its_thread_masked(
    bot: RunningBot, caplog: pytest.LogCaptureFixture
) -> None:
    """The pane's first question becomes the thread's title: masked."""
    channel, thread = bot.open_pane()
    bot.say(f"{ROLLBACK} {SLACK_TOKEN}", channel=channel, thread_ts=thread, mention=False)
    bot.settle()
    (title,) = [c.args["title"] for c in bot.slack.calls("assistant.threads.setTitle")]
    assert title.endswith("[redacted:slack-token]")
    _assert_no_raw(_everything(bot, caplog), "answer_log")


def test_an_incident_title_with_a_token_is_posted_and_stored_masked(
    bot: RunningBot, caplog: pytest.LogCaptureFixture
) -> None:
    """`/steward incident open`: the declaration the channel sees and the incident row are masked."""
    bot.command(f'incident open "fraud-scorer down, logs show {SLACK_TOKEN}" sev=2')
    bot.settle()
    (posted,) = bot.bot_posts(CHANNEL)
    assert "[redacted:slack-token]" in posted["text"]
    assert any(ROTATE in text for text in _private(bot))
    _assert_no_raw(_everything(bot, caplog), "incidents")


def test_the_conversation_store_masks_what_it_keeps_on_both_databases(state_db: StateDatabase) -> None:
    """Answers, gaps and feedback reasons, whoever calls the store (SQLite and PostgreSQL)."""
    store = ConversationStore(state_db.migrated_engine())
    answer = store.record_answer(
        channel=CHANNEL,
        thread_ts="1.0",
        asker=USER,
        question=f"why {AWS_KEY}?",
        cited=[],
        confidence=0.1,
        abstained=True,
    )
    store.open_gap(question=f"why {AWS_KEY}?", channel=CHANNEL, thread_ts="1.0", asker=USER, owners=[])
    store.set_feedback_reason(store.record_feedback(answer, USER, False), USER, f"see {SLACK_TOKEN}")
    dumped = _tables(state_db.engine())
    assert "why [redacted:aws-access-key]?" in dumped and "see [redacted:slack-token]" in dumped
    assert [value for value in RAW if value in dumped] == []


def test_cli_ask_with_a_token_says_to_rotate_it_and_keeps_nothing_raw(
    small_kb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`steward ask` searches without the token, tells the person to rotate it, and writes it nowhere."""
    data = tmp_path / "cli-data"
    monkeypatch.setenv("STEWARD_DATA_DIR", str(data))
    assert main(["ingest", str(small_kb)]) == 0
    capsys.readouterr()
    assert main(["ask", f"{ROLLBACK} {SLACK_TOKEN}"]) == 0
    out, err = capsys.readouterr()
    assert "Model rollback" in out
    assert "steward: note:" in err and "slack-token" in err and ROTATE in err
    dumped = _databases(data)
    assert "kb_documents" in dumped
    assert [value for value in RAW if value in out + err + dumped] == []
