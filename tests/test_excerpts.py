"""Readable excerpts: whole sentences, lists with their lead-in, table rows under their header, code cut on
line boundaries; and the eval figures that measure what the reader sees."""

from __future__ import annotations

import pytest

from bot.answers.evaluation import fragment_lines, reads_the_hint
from bot.answers.excerpts import grow, leads_in, parse, read_on, tidy
from bot.config import Settings
from bot.markdown import split_sentences
from bot.wiring import Services
from tests.conftest import ROOT, TODAY

FAILOVER = """\
The gateway fails over from the primary to the secondary provider when either:

- **3 consecutive timeouts** occur (no first token within 20 seconds), or
- the **error rate exceeds 20% over a 5-minute window**.

Failing back is manual."""

FRESHNESS = """\
Each model has a freshness limit.

| Model | Normal cadence | Freshness limit (page if exceeded) |
|---|---|---|
| fraud-scorer | weekly, Sunday 02:00 UTC | 21 days since last successful retrain |
| doc-ranker | bi-weekly | 45 days |
| churn-predictor | monthly | 60 days |"""


@pytest.fixture(scope="module")
def services_over_knowledge(tmp_path_factory: pytest.TempPathFactory, embedder: object) -> Services:
    """The starter knowledge base, ingested once for this module."""
    services = Services(Settings(data_dir=tmp_path_factory.mktemp("starter")))
    services.override("embedder", embedder)
    services.ingestor.run([ROOT / "knowledge"])
    services.answers.today = lambda: TODAY
    return services


def _unit(text: str, containing: str):  # type: ignore[no-untyped-def]
    parsed = parse(text)
    unit = next(u for u in parsed.units if containing in u.text)
    return parsed, unit


def test_a_lead_in_keeps_the_list_it_introduces() -> None:
    """The sentence ending in `:` is shown with both criteria, not alone."""
    parsed, unit = _unit(FAILOVER, "fails over")
    excerpt = grow(parsed, unit, 650)
    assert excerpt.startswith("The gateway fails over")
    assert "3 consecutive timeouts" in excerpt and "error rate exceeds 20%" in excerpt
    assert fragment_lines(excerpt) == []


def test_a_list_item_comes_with_its_lead_in() -> None:
    """An item that matches is shown under the sentence that introduces its list."""
    parsed, unit = _unit(FAILOVER, "error rate")
    excerpt = grow(parsed, unit, 650)
    assert excerpt.splitlines()[0].startswith("The gateway fails over") and "error rate" in excerpt


def test_a_table_row_is_shown_under_its_header() -> None:
    """fraud-scorer's row comes with the header row and separator, so its 21 days read as a limit."""
    parsed, unit = _unit(FRESHNESS, "fraud-scorer")
    excerpt = grow(parsed, unit, 200)
    lines = excerpt.splitlines()
    assert lines[0].startswith("| Model") and lines[1].startswith("|---") and "21 days" in lines[2]
    assert fragment_lines(excerpt) == []


def test_a_long_code_block_is_cut_on_a_line_with_its_fence_closed() -> None:
    """Code too long for the budget keeps whole lines and a closing fence."""
    code = (
        "Run:\n\n```bash\n"
        + "\n".join(f"kubectl rollout restart deploy/app-{n}" for n in range(40))
        + "\n```"
    )
    parsed = parse(code)
    unit = next(u for u in parsed.units if u.kind == "code")
    excerpt = grow(parsed, unit, 300)
    lines = excerpt.splitlines()
    assert lines[0] == "Run:" and lines[1] == "```bash" and lines[-1] == "```"
    assert all(line.startswith("kubectl rollout restart deploy/app-") for line in lines[2:-1])
    assert len(excerpt) <= 330


def test_pieces_a_chunk_boundary_cut_are_not_shown() -> None:
    """A paragraph that starts in lower case (the end of an earlier sentence) or stops mid-sentence
    is shown from its first whole sentence to its last whole one."""
    parsed = parse("the old limit was 60 s. The new limit is 20 s. Timeouts count towards the rule once the")
    assert [u.text for u in parsed.units] == ["The new limit is 20 s."]


def test_sentences_are_not_split_after_abbreviations() -> None:
    """`e.g.` does not end a sentence."""
    assert split_sentences("Use a tag, e.g. Skip it. Then stop.") == [
        "Use a tag, e.g. Skip it.",
        "Then stop.",
    ]


def test_sentences_keep_their_own_line_breaks() -> None:
    """Chunking cuts long paragraphs with the same splitter: a wrapped sentence keeps its break, and
    `i.e.` ends no sentence there either."""
    assert split_sentences("One line\nwraps here. Next, i.e. Then this.\nLast.") == [
        "One line\nwraps here.",
        "Next, i.e. Then this.",
        "Last.",
    ]


def test_tidy_cuts_a_dangling_lead_in_and_a_mid_sentence_start() -> None:
    """A last line that leads in to nothing shown, and a first line that starts mid-sentence, go."""
    assert tidy("and then restart it.\nCheck the logs.\nThen do this:") == "Check the logs."


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("The gateway fails over when either: [1]", ["The gateway fails over when either: [1]"]),
        ("_Failover_ [1]\nThe gateway fails over when either:\n- 3 timeouts, or\n- errors", []),
        ("Model — cadence [1]\n| Model | Limit |\n|---|---|", ["| Model | Limit |", "|---|---|"]),
        ("| Model | Limit |\n|---|---|\n| fraud-scorer | 21 days |", []),
        (
            "when the slack account is deactivated the webhooks stay. [1]",
            ["when the slack account is deactivated the webhooks stay. [1]"],
        ),
        ("- restart the pod\n  and wait for it", []),
        ("_Steps_ [2]\n```\nmake a\n```", []),
        ("2. Expand the disk:\n\n   a. Check the class:\n\n      ```\n      oc get sc\n      ```", []),
        ("1. Verify the pool:\n\n   nat_ip_count = M * P / 64,512", []),
        ("_Steps_ [1]\n\nand then restart it.", ["and then restart it."]),
    ],
)
def test_fragment_lines_are_counted(answer: str, expected: list[str]) -> None:
    """Lead-ins with nothing after them, header rows without data and mid-sentence starts count;
    a lead-in with its list, wrapped list items, code and labels do not."""
    assert fragment_lines(answer) == expected


def test_reading_on_stops_before_a_lead_in_whose_list_does_not_fit() -> None:
    """The first excerpt reads on into the next paragraph, but not into a lead-in it would have to
    show without what it introduces (here the list comes under a heading of its own)."""
    text = (
        "Wraparound shuts the database down.\n\n"
        "Recovery takes hours of maintenance.\n\n"
        "To avoid it, consider these actions:\n\n"
        "## Short term\n\n"
        "- vacuum the largest tables"
    )
    parsed = parse(text)
    first = parsed.units[0]
    excerpt = read_on(parsed, first, grow(parsed, first, 300), 300)
    assert excerpt == "Wraparound shuts the database down.\nRecovery takes hours of maintenance."
    assert fragment_lines(excerpt) == []


def test_the_hint_is_read_with_markup_ignored() -> None:
    """`*`, `_` and backticks do not hide a hint; an empty hint is never read."""
    assert reads_the_hint("Set **skip-scheduling** on the `instance`", "`skip-scheduling` on the instance")
    assert not reads_the_hint("anything", "")


def test_the_starter_failover_answer_states_both_criteria(services_over_knowledge: Services) -> None:
    """The question the issue quoted: the answer now gives the criteria, labelled with their section."""
    answer = services_over_knowledge.answers.ask("When does the gateway fail over to the secondary provider?")
    assert not answer.abstained
    assert "3 consecutive timeouts" in answer.answer and "20%" in answer.answer
    assert fragment_lines(answer.answer) == []
    first_label = answer.answer.splitlines()[0]
    assert first_label.startswith("_") and "[1]" in first_label
    label = first_label.split("_")[1]
    assert answer.citations[0].section.endswith(label)


def test_the_starter_freshness_answer_shows_fraud_scorers_row(services_over_knowledge: Services) -> None:
    """Not the header row alone: fraud-scorer's row and its 21 days."""
    answer = services_over_knowledge.answers.ask("How fresh must the fraud-scorer model be?")
    assert "| fraud-scorer |" in answer.answer and "21 days" in answer.answer
    assert fragment_lines(answer.answer) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ADRs are published to our knowledge base:", True),
        ("1. A default pool for workloads, with labels plus:", True),
        ("Check the class:\n```\noc get sc:", False),  # inside an unclosed code block
        ("Check the class:\n- oc get sc", False),
    ],
)
def test_a_lead_in_alone_is_recognised(text: str, expected: bool) -> None:
    """What is never shown as an excerpt of its own, or as the end of one."""
    assert leads_in(text) is expected
