"""Block Kit for answers: Slack's limits, splitting, sources, confidence and the buttons."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bot.answers.models import Answer, Citation
from bot.slack import payloads
from bot.slack.blocks import SHORTENED, RenderedMessage, answer_messages, confidence_label, split_mrkdwn

ROLLBACK = Citation(
    path="runbooks/model-rollback.md",
    title="Model rollback",
    section="Rollback › Steps",
    owner="@dana.okafor",
    status="accepted",
)
OLD_DRIFT = Citation(
    path="decisions/0001-drift.md",
    title="Drift thresholds",
    section="Decision",
    status="superseded",
    superseded_by="decisions/0007-drift-v2.md",
)


def kb_url(citation: Citation) -> str | None:
    """Every document has a URL in the docs site."""
    return f"https://kb.example/{citation.path}"


def no_url(citation: Citation) -> str | None:
    """No docs site is configured."""
    return None


def make_answer(text: str = "Roll back with **make rollback** [1].", **fields: Any) -> Answer:
    """An answer citing the rollback runbook, overridable field by field."""
    values: dict[str, Any] = {
        "question": "How do I roll back?",
        "answer": text,
        "abstained": False,
        "confidence": 0.82,
        "citations": [ROLLBACK],
    }
    values.update(fields)
    return Answer(**values)


def long_markdown(chars: int) -> str:
    """Paragraphs, lists, long code blocks and an overlong line, about `chars` characters of Markdown."""
    parts: list[str] = []
    n = 0
    while sum(len(part) + 2 for part in parts) < chars:
        n += 1
        parts.append(f"## Step {n}\n\nRun the **rollback** for `service_{n}` & check <the alias> [1].")
        parts.append("- first item with *emphasis*\n    - nested item\n- second item [2]")
        code = "\n".join(
            f"kubectl rollout undo deployment/fraud-scorer-{n}-{i} && echo ok" for i in range(90)
        )
        parts.append(f"```bash\n{code}\n```")
        if n % 3 == 0:
            parts.append(" ".join(f"word{i}" for i in range(700)))
    return "\n\n".join(parts)


def all_blocks(messages: list[RenderedMessage]) -> list[dict[str, Any]]:
    """The blocks of all messages, in order."""
    return [block for message in messages for block in message.blocks]


def texts(messages: list[RenderedMessage], kind: str = "section") -> list[str]:
    """The mrkdwn texts of every block of one type."""
    found: list[str] = []
    for block in all_blocks(messages):
        if block["type"] == kind == "section":
            found.append(block["text"]["text"])
        elif block["type"] == kind == "context":
            found.extend(element["text"] for element in block["elements"])
    return found


def buttons(messages: list[RenderedMessage]) -> list[dict[str, Any]]:
    """Every button of every actions block."""
    return [
        element
        for block in all_blocks(messages)
        if block["type"] == "actions"
        for element in block["elements"]
    ]


def assert_valid_block_kit(messages: list[RenderedMessage]) -> None:
    """Block shapes and Slack's documented limits."""
    assert messages
    for message in messages:
        assert 0 < len(message.text) <= 300
        assert 0 < len(message.blocks) <= 50
        for block in message.blocks:
            assert block["type"] in {"section", "context", "divider", "actions"}
            if block["type"] == "section":
                assert block["text"]["type"] == "mrkdwn"
                assert 0 < len(block["text"]["text"]) <= 3000
            elif block["type"] == "context":
                assert 0 < len(block["elements"]) <= 10
                assert all(e["type"] == "mrkdwn" and 0 < len(e["text"]) <= 3000 for e in block["elements"])
            elif block["type"] == "actions":
                for button in block["elements"]:
                    assert button["type"] == "button"
                    assert button["text"]["type"] == "plain_text" and button["text"]["emoji"] is True
                    assert 0 < len(button["text"]["text"]) <= 150
                    assert 0 < len(button["value"]) <= 2000
                    assert button["action_id"]


def test_long_answer_keeps_slack_limits_and_balanced_code_fences() -> None:
    """A 40,000-character answer with code blocks fits sections, messages and fences."""
    markdown = long_markdown(40_000)
    assert len(markdown) >= 40_000
    messages = answer_messages(make_answer(markdown), answer_id=1, gap_id=None, source_url=kb_url)
    assert_valid_block_kit(messages)
    for text in texts(messages):
        assert text.count("```") % 2 == 0, text[:200]
    assert len(texts(messages)) > 14  # the answer really was split


def test_split_pieces_lose_no_text() -> None:
    """Joining the pieces (without the fences added at cuts) gives back every word, in order."""
    text = long_markdown(20_000)
    pieces = split_mrkdwn(text)
    assert all(len(piece) <= 3000 for piece in pieces)
    assert " ".join(pieces).replace("```", " ").split() == text.replace("```", " ").split()


def test_split_code_block_is_closed_and_reopened() -> None:
    """A code block longer than a piece ends each piece with ``` and starts the next with ```."""
    code = "\n".join(f"line {i:04d} of the script" for i in range(400))
    pieces = split_mrkdwn(f"Intro\n\n```\n{code}\n```\n\nOutro")
    assert len(pieces) > 1
    assert all(piece.count("```") == 2 for piece in pieces[:-1])
    assert pieces[0].endswith("\n```") and pieces[1].startswith("```\n")


def test_split_prefers_paragraph_boundaries() -> None:
    """Pieces end at a paragraph break, not in the middle of a paragraph."""
    paragraphs = ["\n".join(f"p{p} line {i}" for i in range(60)) for p in range(5)]
    pieces = split_mrkdwn("\n\n".join(paragraphs))
    assert len(pieces) > 1
    for piece in pieces:
        assert piece.split("\n")[-1].endswith("line 59")


def test_split_cuts_an_overlong_line_at_spaces() -> None:
    """A single line longer than the limit is cut between words."""
    words = [f"w{i}" for i in range(2000)]
    pieces = split_mrkdwn(" ".join(words), limit=1000)
    assert all(len(piece) <= 1000 for piece in pieces)
    assert " ".join(pieces).split() == words


def test_short_text_is_one_piece() -> None:
    """Text within the limit comes back unchanged."""
    assert split_mrkdwn("short *text*") == ["short *text*"]


def test_answer_too_long_for_the_message_budget_is_shortened_with_a_marker() -> None:
    """Past max_messages the answer is cut, marked, and still followed by sources and buttons."""
    markdown = long_markdown(250_000)  # about 85 sections: more than two messages hold
    messages = answer_messages(
        make_answer(markdown), answer_id=3, gap_id=None, source_url=kb_url, max_messages=2
    )
    assert_valid_block_kit(messages)
    assert len(messages) == 2
    assert len(messages[0].blocks) == 50
    assert SHORTENED in texts(messages)
    last = messages[-1].blocks
    assert last[-1]["type"] == "actions" and last[-1]["block_id"] == payloads.BLOCK_FEEDBACK
    assert last[-2]["elements"][0]["text"].startswith("Confidence:")
    assert any(block.get("text", {}).get("text") == "*Sources*" for block in last)
    shortened_at = texts(messages).index(SHORTENED)
    assert texts(messages)[shortened_at + 1] == "*Sources*"


def test_answer_needing_several_messages_keeps_order_and_ends_with_the_tail() -> None:
    """Continuations carry the text in order; sources, confidence and buttons are in the last message."""
    markdown = long_markdown(190_000)  # about 65 sections: two messages
    messages = answer_messages(
        make_answer(markdown), answer_id=3, gap_id=None, source_url=kb_url, max_messages=5
    )
    assert_valid_block_kit(messages)
    assert len(messages) > 1
    assert SHORTENED not in texts(messages)
    assert all(message.blocks[-1]["type"] != "actions" for message in messages[:-1])
    assert messages[-1].blocks[-1]["type"] == "actions"
    steps = [int(n) for text in texts(messages) for n in re.findall(r"\*Step (\d+)\*", text)]
    assert steps == list(range(1, markdown.count("## Step") + 1))
    assert messages[1].text.startswith("Steward's answer, continued")


def test_feedback_button_values_parse_back() -> None:
    """Helpful / Not helpful carry payloads.FeedbackValue JSON for the posted answer."""
    messages = answer_messages(make_answer(), answer_id=42, gap_id=None, source_url=kb_url)
    assert_valid_block_kit(messages)
    helpful, not_helpful = buttons(messages)
    assert helpful["action_id"] == payloads.ACTION_HELPFUL
    assert not_helpful["action_id"] == payloads.ACTION_NOT_HELPFUL
    assert payloads.FeedbackValue.model_validate_json(helpful["value"]) == payloads.FeedbackValue(
        answer_id=42, helpful=True
    )
    assert payloads.FeedbackValue.model_validate_json(not_helpful["value"]) == payloads.FeedbackValue(
        answer_id=42, helpful=False
    )


def test_no_feedback_buttons_without_an_answer_id() -> None:
    """An answer that was not recorded gets no buttons."""
    messages = answer_messages(make_answer(), answer_id=None, gap_id=None, source_url=kb_url)
    assert buttons(messages) == []


def test_abstention_offers_an_expert_and_no_feedback() -> None:
    """An abstention shows its text, the owners and an "Ask an expert" button carrying the gap."""
    answer = make_answer(
        "Steward does not know this. **Dana** might.",
        abstained=True,
        confidence=0.2,
        citations=[],
        owners=["@dana", "<@U0123ABC>"],
    )
    messages = answer_messages(answer, answer_id=None, gap_id=9, source_url=kb_url)
    assert_valid_block_kit(messages)
    assert messages[0].text == "Steward does not know this one"
    assert texts(messages)[0] == "Steward does not know this. *Dana* might."
    assert "Who might know: @dana, <@U0123ABC>" in texts(messages, "context")
    [expert] = buttons(messages)
    assert expert["action_id"] == payloads.ACTION_ASK_EXPERT and expert["style"] == "primary"
    assert payloads.ExpertValue.model_validate_json(expert["value"]) == payloads.ExpertValue(gap_id=9)
    assert not any(t.startswith("Confidence") for t in texts(messages, "context"))


def test_title_with_pipe_and_angle_bracket_is_a_working_link() -> None:
    """`|`, `>` and `&` in a title neither end the link nor split it."""
    citation = ROLLBACK.model_copy(update={"title": "Rollback | canary > blue & green"})
    messages = answer_messages(make_answer(citations=[citation]), answer_id=1, gap_id=None, source_url=kb_url)
    source = texts(messages)[-1]
    link = re.fullmatch(r"\*\[1\]\* <([^<>|]+)\|([^<>|]+)>\n.*", source, re.DOTALL)
    assert link is not None, source
    assert link[1] == "https://kb.example/runbooks/model-rollback.md"
    assert link[2] == "Rollback ∣ canary &gt; blue &amp; green"


def test_citation_without_url_is_escaped_plain_text() -> None:
    """No URL: the title is plain, escaped text, with the section, owner and status below."""
    citation = ROLLBACK.model_copy(update={"title": "Rollback <v2>"})
    messages = answer_messages(make_answer(citations=[citation]), answer_id=1, gap_id=None, source_url=no_url)
    assert texts(messages)[-1] == "*[1]* Rollback &lt;v2&gt;\nRollback › Steps · @dana.okafor · accepted"


def test_superseded_citation_names_its_successor() -> None:
    """A superseded source says what replaced it."""
    messages = answer_messages(
        make_answer(citations=[OLD_DRIFT]), answer_id=1, gap_id=None, source_url=no_url
    )
    assert texts(messages)[-1].endswith("Decision · superseded · superseded by decisions/0007-drift-v2.md")


def test_warnings_are_escaped_context_blocks_after_the_answer() -> None:
    """Each warning is its own context block with :warning:, before the sources."""
    answer = make_answer(warnings=["[1] Model <rollback> is stale.", "[2] Other & more."])
    blocks = all_blocks(answer_messages(answer, answer_id=1, gap_id=None, source_url=kb_url))
    assert [b["type"] for b in blocks[:4]] == ["section", "context", "context", "divider"]
    assert blocks[1]["elements"][0]["text"] == ":warning: [1] Model &lt;rollback&gt; is stale."


def test_confidence_hint_names_label_score_and_writer() -> None:
    """The context line reads `Confidence: high (0.82) · written by extractive`."""
    messages = answer_messages(make_answer(), answer_id=1, gap_id=None, source_url=kb_url)
    assert "Confidence: high (0.82) · written by extractive" in texts(messages, "context")


@pytest.mark.parametrize(
    ("confidence", "label"),
    [(0.95, "high"), (0.8, "high"), (0.79, "medium"), (0.65, "medium"), (0.64, "low"), (0.0, "low")],
)
def test_confidence_label(confidence: float, label: str) -> None:
    """>= 0.8 is high, >= 0.65 medium, anything else low."""
    assert confidence_label(confidence) == label


def test_fallback_text_is_plain_and_short() -> None:
    """Notification text drops Markdown markers and stays within about 200 characters."""
    answer = make_answer("**Roll back** with [the runbook](https://x.example) " + "and wait " * 100)
    [message] = answer_messages(answer, answer_id=1, gap_id=None, source_url=kb_url)
    assert message.text.startswith("Roll back with the runbook and wait")
    assert len(message.text) <= 201 and message.text.endswith("…")
    assert "*" not in message.text and "https" not in message.text


def test_dozens_of_sources_and_warnings_still_fit_one_tail() -> None:
    """Sixty sources and thirty warnings share blocks so the buttons still close the last message."""
    citations = [ROLLBACK.model_copy(update={"title": f"Doc {n}"}) for n in range(60)]
    answer = make_answer(long_markdown(60_000), citations=citations, warnings=[f"w{n}" for n in range(30)])
    messages = answer_messages(answer, answer_id=5, gap_id=None, source_url=kb_url, max_messages=1)
    assert_valid_block_kit(messages)
    assert messages[-1].blocks[-1]["block_id"] == payloads.BLOCK_FEEDBACK
    sources = "\n".join(texts(messages))
    assert all(
        f"*[{n}]* <https://kb.example/runbooks/model-rollback.md|Doc {n - 1}>" in sources for n in (1, 60)
    )
    assert len([t for t in texts(messages, "context") if t.startswith(":warning:")]) == 30


def test_owner_given_as_a_slack_mention_stays_a_mention() -> None:
    """An owner recorded as `<@U…>` (expert guidance) is not escaped into text."""
    citation = ROLLBACK.model_copy(update={"owner": "<@U0123ABC>"})
    messages = answer_messages(make_answer(citations=[citation]), answer_id=1, gap_id=None, source_url=no_url)
    assert texts(messages)[-1].endswith("Rollback › Steps · <@U0123ABC> · accepted")
