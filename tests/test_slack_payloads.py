"""Every payload Steward sends is one Slack takes: the checker itself, the fake's use of it, and stress cases.

The checker (tests/slack_payloads.py) is slack_sdk's own Block Kit models plus the documented limits they
skip; the fake Slack runs it on every message and view, so the whole Slack suite is checked too.
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.actions.approvals import EXPIRED, PENDING, RequestView
from bot.actions.models import ActionSpec, ExecutorSpec, ParamSpec
from bot.actions.policy.rules import Policy
from bot.answers.models import Answer, Citation
from bot.digests.drift import dataset_drift
from bot.digests.drift_digest import MonitorResult
from bot.digests.governance import GovernanceReport
from bot.digests.governance import render_text as render_governance
from bot.incidents.digest import gather, render_text
from bot.incidents.records import IncidentStore
from bot.slack.action_cards import CardFacts, RunbookExcerpt, approval_card, request_form
from bot.slack.blocks import MAX_BUTTON_TEXT, answer_messages, button
from bot.slack.digests import drift_messages, text_messages
from bot.slack.home import KnowledgeState, home_view
from bot.store.catalog import DocumentRecord
from tests.request_views import request_view
from tests.slack_payloads import (
    PayloadError,
    check_message,
    check_view,
    message_problems,
    view_problems,
)
from tests.support.records import migrated_engine
from tests.support.slack import FakeSlack

LONG_TITLE = "Rolling back the fraud scorer after a failed retraining " * 6  # 336 characters
ANGLES = "DB <primary> & <replica> down & failing over "  # Slack's three control characters


def section(text: str) -> dict[str, Any]:
    """A mrkdwn section."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def actions(*elements: dict[str, Any]) -> dict[str, Any]:
    """An actions block."""
    return {"type": "actions", "elements": list(elements)}


def plain_button(text: str = "Go", value: str = "v", action_id: str = "go") -> dict[str, Any]:
    """A button as Block Kit spells it."""
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
        "value": value,
    }


def modal(title: str = "Ask", blocks: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    """A modal view."""
    return {
        "type": "modal",
        "title": {"type": "plain_text", "text": title},
        "blocks": blocks or [section("hi")],
        **extra,
    }


# ---- the checker


def test_a_valid_message_and_view_pass() -> None:
    """A small message with a button, and a small modal, have no problems."""
    check_message([section("Roll back *now*"), actions(plain_button())], "Roll back now")
    check_view(modal())
    check_view({"type": "home", "blocks": [section("Steward")]})


@pytest.mark.parametrize(
    ("blocks", "text", "problem"),
    [
        ([section("x")] * 51, "t", "51 blocks, Slack allows 50"),
        ([section("x" * 3001)], "t", "3000"),  # slack_sdk's own check
        ([{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}], "t", "150"),
        ([actions(plain_button(text="b" * 76))], "t", "button text of 76 characters, Slack allows 75"),
        ([actions(plain_button(value="v" * 2001))], "t", "button value of 2001 characters"),
        ([actions(plain_button(action_id="a" * 256))], "t", "action_id of 256 characters"),
        ([{**section("x"), "block_id": "b" * 256}], "t", "block_id of 256 characters"),
        (
            [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}],
            "t",
            "11 section fields, Slack allows 10",
        ),
        (
            [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]}],
            "t",
            "section field 0 of 2001 characters",
        ),
        (
            [{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}],
            "t",
            "11 context elements, Slack allows 10",
        ),
        ([{"type": "sektion", "text": {"type": "mrkdwn", "text": "x"}}], "t", "not a known block"),
        ([{**section("x"), "txet": "typo"}], "t", "fields slack_sdk does not know"),
        ([section("x")], "", "without a `text` fallback"),
        ([section("x")], None, "without a `text` fallback"),
    ],
)
def test_what_slack_refuses_in_a_message_is_named(
    blocks: list[dict[str, Any]], text: Any, problem: str
) -> None:
    """Each limit Slack enforces on a message is reported, and check_message raises listing it."""
    assert any(problem in found for found in message_problems(blocks, text)), message_problems(blocks, text)
    with pytest.raises(PayloadError, match=re.escape(problem)):
        check_message(blocks, text)


@pytest.mark.parametrize(
    ("view", "problem"),
    [
        (modal(title="Request an action, please"), "modal title of 25 characters, Slack allows 24"),
        (modal(submit={"type": "plain_text", "text": "s" * 25}), "modal submit of 25 characters"),
        (modal(callback_id="c" * 256), "callback_id of 256 characters"),
        (modal(blocks=[section("x")] * 101), "101 blocks, Slack allows 100"),
        ({"type": "home", "blocks": [section("x" * 3001)]}, "3000"),
        ({"type": "home", "blocks": []}, "between 1 and 100 blocks"),  # slack_sdk's View
    ],
)
def test_what_slack_refuses_in_a_view_is_named(view: dict[str, Any], problem: str) -> None:
    """Each limit Slack enforces on a view is reported, and check_view raises listing it."""
    assert any(problem in found for found in view_problems(view)), view_problems(view)
    with pytest.raises(PayloadError, match=re.escape(problem)):
        check_view(view)


def test_steward_buttons_keep_slacks_75_character_label() -> None:
    """A long label is clipped to the 75 characters Slack allows on a button (MAX_BUTTON_TEXT was 150)."""
    made = button("Approve " + "the request " * 20, "steward_go", "v")
    assert MAX_BUTTON_TEXT == 75 and len(made["text"]["text"]) == 75
    check_message([actions(made)], "t")


# ---- the fake Slack checks every payload


def test_the_fake_refuses_invalid_blocks_like_slack_and_records_them(
    slack: FakeSlack, client: WebClient
) -> None:
    """chat.postMessage with a 3,001-character section gets invalid_blocks, and the problem is recorded."""
    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(channel="C1", text="t", blocks=[section("x" * 3001)])
    assert refused.value.response["error"] == "invalid_blocks"
    assert slack.messages("C1") == []
    assert any("3000" in problem for problem in slack.take_violations())
    assert slack.take_violations() == []  # taken: the check after this test sees none


def test_the_fake_checks_views_updates_ephemerals_and_response_urls(
    slack: FakeSlack, client: WebClient
) -> None:
    """Every method carrying blocks or a view is checked; a post without fallback text is taken, but noted."""
    ts = client.chat_postMessage(channel="C1", text="t", blocks=[section("ok")])["ts"]
    attempts: list[Callable[[], object]] = [
        lambda: client.chat_update(channel="C1", ts=ts, text="t", blocks=[section("x")] * 51),
        lambda: client.chat_postEphemeral(
            channel="C1", user="U1", text="t", blocks=[actions(plain_button("b" * 76))]
        ),
        lambda: client.chat_stopStream(channel="C1", ts=ts, blocks=[section("x")] * 51),
        lambda: client.views_open(trigger_id="1.2", view=modal(title="t" * 25)),
        lambda: client.views_push(trigger_id="1.2", view=modal(callback_id="c" * 256)),
        lambda: client.views_update(view_id="V1", view=modal(blocks=[section("x")] * 101)),
        lambda: client.views_publish(user_id="U1", view={"type": "home", "blocks": [section("x" * 3001)]}),
    ]
    for attempt in attempts:
        with pytest.raises(SlackApiError):
            attempt()
    request = urllib.request.Request(
        slack.response_url(),
        data=b'{"text": "t", "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "'
        + b"h" * 151
        + b'"}}]}',
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as answered:
        urllib.request.urlopen(request, timeout=5)
    assert answered.value.code == 400
    client.chat_postMessage(channel="C1", text="", blocks=[section("no fallback")])  # Slack takes it
    methods = list(dict.fromkeys(problem.split(":")[0] for problem in slack.take_violations()))
    assert methods == [
        "chat.update",
        "chat.postEphemeral",
        "chat.stopStream",
        "views.open",
        "views.push",
        "views.update",
        "views.publish",
        "response_url",
        "chat.postMessage",
    ]


# ---- stress: what Steward renders from big or hostile input


def _answer(text: str, citations: list[Citation] | None = None) -> Answer:
    return Answer(
        question="q",
        answer=text,
        abstained=False,
        confidence=0.9,
        citations=citations
        if citations is not None
        else [Citation(path="runbooks/a.md", title="A", section="")],
    )


def _check_all(messages: list[Any]) -> None:
    assert messages
    for message in messages:
        check_message(message.blocks, message.text)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("Roll back the model now " * 420, id="10,000-character paragraph"),
        pytest.param(
            "| step | command | owner |\n|---|---|---|\n"
            + "\n".join(
                f"| {i} | `mlflow models set-alias --version {i}` | @dana & <sre> |" for i in range(500)
            ),
            id="500-row table",
        ),
        pytest.param(
            "# " + LONG_TITLE + "\n\n" + "## " + LONG_TITLE + "\n\nDo it [1].", id="300-character headings"
        ),
        pytest.param((ANGLES * 80 + "\n\n") * 30, id="ampersands and angle brackets"),
    ],
)
def test_answers_from_big_or_hostile_text_fit_slack(text: str) -> None:
    """A long paragraph, a big table, long headings and `&<>` give messages Slack takes."""
    _check_all(
        answer_messages(_answer(text), answer_id=7, gap_id=None, source_url=lambda c: "https://kb.example/a")
    )


def test_sources_with_long_and_hostile_titles_and_owners_fit_slack() -> None:
    """Twenty-five sources with 300-character titles, headings and owners full of `&<>` fit Slack."""
    citations = [
        Citation(
            path=f"runbooks/{i}.md",
            title=ANGLES + LONG_TITLE,
            section=LONG_TITLE,
            owner=ANGLES * 8,
            status="accepted",
        )
        for i in range(25)
    ]
    messages = answer_messages(
        _answer("See [1].", citations),
        answer_id=1,
        gap_id=None,
        source_url=lambda c: f"https://kb.example/{c.path}",
    )
    _check_all(messages)


def _request(params: dict[str, Any], status: str = PENDING) -> RequestView:
    """A retraining request needing two approvers, its reason full of `&<>`."""
    return request_view(
        request_id="r-1",
        params=params,
        thread_ts="1.000100",
        status=status,
        reason=ANGLES * 3,
        required_count=2,
        required_groups=("ml-platform", "sre"),
        deadline=1_800_000_000.0,
    )


def test_an_approval_card_with_a_3000_character_parameter_fits_and_says_it_was_cut() -> None:
    """The parameter is cut to fit its section, its code span stays closed, and the card says it was cut."""
    runbook = RunbookExcerpt(path="runbooks/r.md", title=LONG_TITLE, section=LONG_TITLE, text=ANGLES * 50)
    card = approval_card(
        _request({"model": "fraud-scorer", "note": ANGLES[:10] * 300}), CardFacts("high", "p.yaml:1", runbook)
    )
    check_message(card.blocks, card.text)
    head = card.blocks[0]["text"]["text"]
    assert head.count("`") % 2 == 0, head
    assert re.search(r"cut: [\d,]+ of 3,040 characters shown", head), head[-120:]


def test_an_expired_card_has_no_buttons() -> None:
    """The card of an expired request says so and offers nothing to click."""
    card = approval_card(_request({"model": "fraud-scorer"}, status=EXPIRED), CardFacts("high", None, None))
    check_message(card.blocks, card.text)
    assert not any(block["type"] == "actions" for block in card.blocks)
    assert "*Expired*" in str(card.blocks)


def test_the_app_home_with_twelve_stale_300_character_titles_is_a_valid_view() -> None:
    """Twelve stale documents with 300-character titles (and `&<>` owners) give a Home tab Slack takes."""
    stale: list[tuple[str, str, str | None]] = [
        (ANGLES + LONG_TITLE, "2025-01-15", ANGLES * 4) for _ in range(12)
    ]
    view = home_view(
        KnowledgeState(documents=40, last_ingest=None, stale=stale, open_gaps=2, drafts_waiting=1)
    )
    check_view(view)
    text = str(view["blocks"])
    assert "…and 2 more" in text and "&lt;primary&gt; &amp;" in text


def test_a_drift_digest_with_200_drifted_columns_fits_slack() -> None:
    """Three models with 200 drifted columns each (long names) give a parent and replies Slack takes."""
    rng = np.random.default_rng(5)
    names = [f"feature_{i:03d}_" + "x" * 100 for i in range(200)]
    reference = {name: rng.normal(0, 1, 300) for name in names}
    current = {name: rng.normal(3, 1, 300) for name in names}
    drift = dataset_drift(dict.fromkeys(names, "numeric"), reference, current)
    assert len(drift.drifted) == 200
    results = [
        MonitorResult(
            model=f"{ANGLES}{i}",
            reference="ref.csv",
            current="cur.csv",
            drift=drift,
            reference_rows=300,
            current_rows=300,
        )
        for i in range(3)
    ]
    parent, replies = drift_messages("daily <drift> & more", results, dt.date(2026, 11, 24), "say")
    assert parent is not None
    _check_all([parent, *replies])


def test_an_incident_digest_with_300_incidents_fits_slack(tmp_path: Path) -> None:
    """300 incidents with long titles full of `&<>` give digest messages Slack takes."""
    engine = migrated_engine(tmp_path / "state.db")
    try:
        store = IncidentStore(engine)
        start = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
        for i in range(300):
            store.declare(
                f"{ANGLES}{LONG_TITLE}{i}", "2", "fraud-scorer", "UASKER", "CINC", start.timestamp() + i
            )
        report = gather(store, start, start + dt.timedelta(days=1))
        text = render_text("incidents <weekly> & more", report)
        assert LONG_TITLE not in text  # titles in the list are clipped
        _check_all(text_messages(text))
    finally:
        engine.dispose()


def test_a_governance_digest_clips_long_titles_and_fits_slack() -> None:
    """Stale and superseded documents with 300-character titles are listed clipped, in posts Slack takes."""
    documents = [
        DocumentRecord(
            doc_id=str(i),
            root="kb",
            path=f"runbooks/{i}-{'x' * 300}.md",
            content_hash="h",
            title=ANGLES + LONG_TITLE,
            owner=ANGLES * 8,
            review_by="2025-01-15",
            superseded_by="decisions/" + "y" * 300,
        )
        for i in range(12)
    ]
    since = dt.datetime(2026, 11, 17, tzinfo=dt.UTC)
    report = GovernanceReport(
        since, since + dt.timedelta(days=7), stale=documents, superseded_cited=[(d, 3) for d in documents]
    )
    text = render_governance("governance <weekly> & more", report)
    assert LONG_TITLE not in text and max(len(line) for line in text.splitlines()) < 600
    _check_all(text_messages(text))


def test_the_request_form_offers_only_what_slack_can_show_as_options() -> None:
    """An enum with a value over Slack's 150 characters, or over 100 values, is asked for as text;
    an action name too long for an option is left out of the picker: the form still opens."""
    hook = ExecutorSpec(kind="webhook", url="https://hooks.example/t")
    spec = ActionSpec(
        name="pause-agent",
        description=ANGLES * 20,
        params=(
            ParamSpec(name="agent", enum=("support-bot", "a" * 151), description=LONG_TITLE * 10),
            ParamSpec(name="region", enum=tuple(f"region-{i}" for i in range(101))),
            ParamSpec(name="env", enum=("staging", "prod"), default="prod"),
        ),
        executor=hook,
    )
    long_name = ActionSpec(name="x" * 151, description="d", executor=hook)
    policy = Policy(
        actions={spec.name: spec, long_name.name: long_name},
        rules=(),
        groups={},
        version="v1",
        action_sources={},
        files=(),
    )
    view = request_form(policy, spec)
    check_view(view)
    elements = {block["block_id"]: block["element"]["type"] for block in view["blocks"] if "element" in block}
    assert elements["steward_param_agent"] == elements["steward_param_region"] == "plain_text_input"
    assert elements["steward_param_env"] == "static_select"
