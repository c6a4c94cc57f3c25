"""The `steward` command line: output, exit codes and messages for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import main
from bot.config import load_settings
from bot.store.conversations import GAP_OPEN, ConversationStore, Gap
from tests.servers import free_port
from tests.support.records import migrated_engine


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


ROLLBACK = "How do I roll back the fraud-scorer model in production?"
UNKNOWN = "How often do we rotate the feature store encryption key?"  # the small knowledge base does not say
AWS_KEY = "AKIAZ7Q4XJ2LMNB5RT3W"


@pytest.fixture
def empty_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """STEWARD_DATA_DIR set to a data dir nothing was ingested into."""
    data = tmp_path / "d"
    monkeypatch.setenv("STEWARD_DATA_DIR", str(data))
    return data


@pytest.fixture
def ingested(
    small_kb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Path:
    """The small knowledge base ingested through the CLI into a private data dir."""
    monkeypatch.setenv("STEWARD_DATA_DIR", str(tmp_path / "cli-data"))
    code, out, _ = _run(capsys, "ingest", str(small_kb))
    assert code == 0
    assert "added 5, updated 0, removed 0, unchanged 0, skipped 0" in out
    assert "chunks/s" in out
    return small_kb


def test_ask_prints_answer_sources_and_confidence(ingested: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The terminal answer has cited text, a numbered source list and a confidence line."""
    code, out, _ = _run(capsys, "ask", ROLLBACK)
    assert code == 0
    assert "Sources:" in out
    assert "[1] Model rollback — runbooks/model-rollback.md" in out
    assert "owner: @dana" in out
    assert "confidence" in out


def test_ask_json_and_kind_filter(ingested: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints the documented object; --kind restricts the sources."""
    code, out, _ = _run(capsys, "ask", "drift thresholds PSI", "--kind", "decision", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["citations"] and all(c["path"].startswith("decisions/") for c in data["citations"])
    assert isinstance(data["confidence"], float)


def _recorded() -> tuple[ConversationStore, list[Gap]]:
    """The records `steward` keeps in the data dir the test set: the answer log's store, the gaps."""
    store = ConversationStore(migrated_engine(load_settings().resolved_database_url))
    return store, store.gaps()


def test_ask_records_the_answer_as_slack_does(ingested: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`steward ask` logs its answer (source "cli", the asker given with --as) and opens no gap."""
    code, out, _ = _run(capsys, "ask", ROLLBACK, "--as", "dana", "--json")
    assert code == 0 and not json.loads(out)["abstained"]
    store, gaps = _recorded()
    logged = store.answer(1)
    assert logged is not None and store.answer(2) is None
    assert (logged.channel, logged.asker, logged.thread_ts, logged.abstained) == ("cli", "dana", "", False)
    assert "runbooks/model-rollback.md" in logged.cited
    assert logged.question == ROLLBACK
    assert gaps == []


def test_ask_opens_a_knowledge_gap_when_it_abstains(
    ingested: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An abstention from the command line is a knowledge gap, as in Slack (credentials in the question
    masked); the asker is the login name."""
    code, out, err = _run(capsys, "ask", f"{UNKNOWN} Ours is {AWS_KEY}")
    assert code == 0 and "abstained" in out
    assert "it is in your shell history" in err
    store, [gap] = _recorded()
    logged = store.answer(1)
    assert logged is not None and logged.abstained and logged.channel == "cli"
    assert (gap.channel, gap.status, gap.source) == ("cli", GAP_OPEN, "abstention")
    for question in (gap.question, logged.question):
        assert question.startswith(UNKNOWN) and AWS_KEY not in question
    assert gap.asker == logged.asker and gap.asker  # whoever runs the command (getpass.getuser)


@pytest.mark.parametrize("name", ["", "x" * 33])
def test_ask_as_takes_a_name_the_answer_log_can_hold(
    name: str, empty_data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--as with an empty or over-long name is a usage error (exit 2) naming the limit."""
    with pytest.raises(SystemExit) as exit_:
        main(["ask", "anything?", "--as", name])
    assert exit_.value.code == 2
    assert "give a name of 1 to 32 characters" in capsys.readouterr().err


def test_reingest_reports_unchanged(ingested: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A second run over the same tree changes nothing."""
    code, out, _ = _run(capsys, "ingest", str(ingested))
    assert code == 0 and "unchanged 5" in out


def test_malformed_front_matter_is_listed_in_the_summary(
    ingested: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The summary names the file and line of broken front matter."""
    (ingested / "bad.md").write_text("---\ntags: [a\n---\n# Bad\n")
    code, out, _ = _run(capsys, "ingest", str(ingested))
    assert code == 0
    assert "skipped bad.md: malformed front matter, line 2" in out


@pytest.mark.parametrize("question", ["", "   "])
def test_empty_question_is_a_usage_error(
    question: str, empty_data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit code 2 and a usage message, no traceback."""
    code, _, err = _run(capsys, "ask", question)
    assert code == 2
    assert "usage error: the question is empty" in err


def test_nonexistent_path_fails_clearly(
    tmp_path: Path, empty_data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit code 1 naming the path."""
    code, _, err = _run(capsys, "ingest", str(tmp_path / "missing"))
    assert code == 1
    assert f"{tmp_path / 'missing'}: no such file or folder" in err


def test_ask_before_ingest_says_what_to_run(empty_data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty knowledge base is explained."""
    code, _, err = _run(capsys, "ask", "anything?")
    assert code == 1
    assert "the knowledge base is empty: run `steward ingest PATH...` first" in err
    assert "--rebuild" not in err


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("STEWARD_ABSTAIN_BELOW", "lots", "STEWARD_ABSTAIN_BELOW"),
        # A provider whose LangChain package is not installed: advice, not a traceback.
        (
            "STEWARD_LLM",
            "nosuchprovider:some-model",
            "STEWARD_LLM='nosuchprovider:some-model' cannot be used",
        ),
    ],
)
def test_bad_setting_names_the_variable(
    variable: str,
    value: str,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    empty_data_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A setting Steward cannot use is reported with its environment variable name, exit code 1."""
    monkeypatch.setenv(variable, value)
    code, _, err = _run(capsys, "ask", "anything?")
    assert code == 1
    assert message in err


def test_eval_prints_the_figures_and_writes_the_report(
    ingested: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """recall@5, MRR@10, hint@5, abstention and latency; one report line per question."""
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        json.dumps(
            {
                "id": "q1",
                "question": "how do I roll back fraud-scorer in production",
                "relevant": ["runbooks/model-rollback.md"],
                "answer_hint": "two approvers",
                "kind": "answerable",
            }
        )
        + "\n"
        + json.dumps(
            {
                "id": "q2",
                "question": "Tokyo Kafka broker Kubernetes version",
                "relevant": [],
                "kind": "unanswerable",
            }
        )
        + "\n"
    )
    report = tmp_path / "out" / "report.jsonl"
    code, out, _ = _run(capsys, "eval", str(questions), "--report", str(report))
    assert code == 0
    assert "recall@5 1.000" in out and "hint@5 1.000" in out
    assert "abstention: 1/1 unanswerable, 0/1 answerable" in out
    assert "latency p50" in out
    assert "hint@1 1.000" in out and "answer-hint" in out and "fragment lines" in out
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["q1", "q2"]
    assert set(rows[0]) >= {"id", "abstained", "answer", "citations", "retrieved", "latency_ms"}
    assert set(rows[0]) >= {"answer_hint", "reads_the_hint", "fragment_lines"}
    assert set(rows[0]["retrieved"][0]) == {"path", "section", "text", "score"}


def test_eval_names_the_bad_line(
    tmp_path: Path, empty_data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A question file with a broken line is refused with its line number."""
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "ok?"}\n{not json\n')
    code, _, err = _run(capsys, "eval", str(questions))
    assert code == 1
    assert "q.jsonl, line 2: not JSON" in err


def test_eval_names_a_question_file_that_is_not_utf8(
    tmp_path: Path, empty_data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Latin-1 question file: exit 1 with the file, the line and the byte, no traceback."""
    questions = tmp_path / "q.jsonl"
    questions.write_bytes(b'{"question": "ok?"}\n{"question": "caf\xe9?"}\n')
    code, _, err = _run(capsys, "eval", str(questions))
    assert code == 1
    assert f"{questions}, line 2: not UTF-8 text (byte 37 is 0xe9); save the question file as UTF-8" in err


def test_console_script_and_unreachable_chroma(tmp_path: Path) -> None:
    """The installed `steward` script runs; an unreachable Chroma server is named, with exit 1."""
    url = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "STEWARD_DATA_DIR": str(tmp_path / "d"), "STEWARD_CHROMA_URL": url}
    script = Path(sys.executable).with_name("steward")
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_text("# A\n\ntext\n")
    result = subprocess.run(
        [str(script), "ingest", str(kb)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert f"cannot reach the Chroma server at {url}" in result.stderr
    assert "Traceback" not in result.stderr


def _oncall_as_slack_group(tmp_path: Path) -> Path:
    """The starter policies, with the on-call group pointed at a Slack user group (as PagerDuty keeps)."""
    import shutil

    from tests.conftest import ROOT

    folder = shutil.copytree(ROOT / "policies", tmp_path / "policies")
    groups = folder / "00-groups.yaml"
    text = groups.read_text(encoding="utf-8")
    assert "  oncall:\n    - sre\n    - U0000MLP03\n" in text
    groups.write_text(text.replace("  oncall:\n    - sre\n    - U0000MLP03\n", "  oncall:\n    - S0ONCALL\n"))
    return folder


def test_policy_explain_looks_up_slack_user_groups_when_a_token_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As `steward serve` decides: the person paged through the S… group may pause an agent alone."""
    from tests.support.slack import FakeSlack

    monkeypatch.setenv("STEWARD_POLICIES_DIR", str(_oncall_as_slack_group(tmp_path)))
    monkeypatch.setenv("STEWARD_DATA_DIR", str(tmp_path / "data"))
    argv = ("policy", "explain", "pause-agent", "agent=support-assistant", "--as", "U0PAGED")
    with FakeSlack() as slack:
        slack.set_user_group("S0ONCALL", ["U0PAGED"])
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-cli")
        monkeypatch.setenv("SLACK_API_URL", slack.api_url)
        code, out, err = _run(capsys, *argv)
        assert code == 0, err
        assert "pause-agent-oncall" in out and "oncall" in out, out
        assert "counted nobody" not in out
        assert [call.args.get("usergroup") for call in slack.calls("usergroups.users.list")] == ["S0ONCALL"]

    monkeypatch.delenv("SLACK_BOT_TOKEN")
    code, out, err = _run(capsys, *argv)
    assert code == 0, err
    assert "Slack user groups (S…) counted nobody: set SLACK_BOT_TOKEN" in out, out
