"""`steward ask` and `steward serve` with an LLM: refusals at start, the footer, and no hang at exit."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.cli import main
from tests.conftest import ROOT
from tests.fakes.openai_server import FakeOpenAI

QUESTION = "How do I roll back the fraud-scorer model in production?"
KEY = "sk-test-cli-7d3e9b"
# Far above what falling back needs, far below the minutes a retrying client or a joined thread took.
MARGIN_SECONDS = 15.0
STEWARD = Path(sys.executable).with_name("steward")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def data_dir(
    small_kb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Path:
    """The small knowledge base ingested through the CLI (no LLM needed for that)."""
    folder = tmp_path / "cli-data"
    monkeypatch.setenv("STEWARD_DATA_DIR", str(folder))
    code, _, err = _run(capsys, "ingest", str(small_kb))
    assert code == 0, err
    return folder


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    """A fresh scripted OpenAI-compatible server."""
    with FakeOpenAI() as running:
        yield running


def test_ask_footer_says_the_extractive_answer_was_used_and_why(
    data_dir: Path,
    server: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """HTTP 401: the extractive answer, a footer naming the server and the status; the key nowhere."""
    server.fail(401)
    monkeypatch.setenv("STEWARD_LLM", "openai:llama3.1")
    monkeypatch.setenv("STEWARD_LLM_BASE_URL", server.base_url)
    monkeypatch.setenv("STEWARD_LLM_API_KEY", KEY)
    with caplog.at_level(logging.DEBUG):
        code, out, err = _run(capsys, "ask", QUESTION)
    assert code == 0, err
    assert (
        f"written by extractive because the LLM server at {server.base_url} refused the API key (HTTP 401)"
        in out
    )
    assert server.wait_for_requests(1)[0].bearer == KEY, "the key was sent, and only to the server"
    assert KEY not in out + err + caplog.text


def test_ask_footer_names_the_llm_that_wrote_the_answer(
    data_dir: Path, server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An accepted answer: the text and `written by openai:MODEL`, no reason."""
    server.answer("Move the `production` alias back to the previous version [1].")
    monkeypatch.setenv("STEWARD_LLM", "openai:llama3.1")
    monkeypatch.setenv("STEWARD_LLM_BASE_URL", server.base_url)
    code, out, err = _run(capsys, "ask", QUESTION)
    assert code == 0, err
    assert out.startswith("Move the `production` alias back to the previous version [1].")
    assert "written by openai:llama3.1)" in out


@pytest.mark.parametrize(
    ("spec", "blocked", "message"),
    [
        ("nosuchprovider:some-model", None, "unknown provider 'nosuchprovider'"),
        (
            "openai:gpt-4o-mini",
            "langchain_openai",
            "the langchain-openai package is not installed: pip install 'steward[openai]'",
        ),
    ],
)
def test_ask_refuses_an_unusable_provider_without_a_traceback(
    spec: str,
    blocked: str | None,
    message: str,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Exit 1 and one line naming STEWARD_LLM and what to do, before any question is answered."""
    if blocked:
        monkeypatch.setitem(sys.modules, blocked, None)  # how Python sees a package that is not installed
    monkeypatch.setenv("STEWARD_LLM", spec)
    code, out, err = _run(capsys, "ask", QUESTION)
    assert code == 1 and out == ""
    assert err.startswith(f"steward: error: STEWARD_LLM={spec!r} cannot be used: {message}")


def _env(**variables: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **variables}


@pytest.mark.slow
def test_serve_refuses_a_missing_provider_package_at_start(tmp_path: Path) -> None:
    """`steward serve` with the provider's package missing stops at start with the pip command."""
    code = (
        "import sys; sys.modules['langchain_openai'] = None; "
        "from bot.cli import main; sys.exit(main(['serve', '--port', '0', '--host', '127.0.0.1']))"
    )
    env = _env(
        STEWARD_DATA_DIR=str(tmp_path / "d"),
        STEWARD_LLM="openai:gpt-4o-mini",
        SLACK_BOT_TOKEN="xoxb-test",
        SLACK_SIGNING_SECRET="test-secret",
        SLACK_API_URL="http://127.0.0.1:9/api/",
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1, result.stderr
    assert "STEWARD_LLM='openai:gpt-4o-mini' cannot be used" in result.stderr
    assert "pip install 'steward[openai]'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_ask_against_a_server_that_never_answers_returns_within_the_budget(
    data_dir: Path, server: FakeOpenAI
) -> None:
    """The installed `steward ask`, timeout 3 s: from the request to the exit of the process, about 3 s."""
    server.hang()
    env = _env(
        STEWARD_DATA_DIR=str(data_dir),
        STEWARD_LLM="openai:llama3.1",
        STEWARD_LLM_BASE_URL=server.base_url,
        STEWARD_LLM_API_KEY=KEY,
        STEWARD_LLM_TIMEOUT_SECONDS="3",
    )
    process = subprocess.Popen(
        [str(STEWARD), "ask", QUESTION], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        (request,) = server.wait_for_requests(1, timeout=300)  # start-up loads the embedding model first
        out, err = process.communicate(timeout=3 + 120)
    finally:
        process.kill()
    exited = time.monotonic()  # the same system-wide monotonic clock as the server's request time
    assert process.returncode == 0, err
    assert exited - request.at < 3 + MARGIN_SECONDS, f"{exited - request.at:.1f} s from request to exit"
    assert (
        f"written by extractive because the LLM server at {server.base_url} did not answer within 3 s" in out
    )
    assert "[1]" in out
    assert KEY not in out + err


@pytest.mark.slow
def test_an_abandoned_llm_call_does_not_hold_up_the_exit(tmp_path: Path) -> None:
    """A model call that ignores every timeout: the writer gives up at its budget and the process exits."""
    script = tmp_path / "slow_llm.py"
    script.write_text(
        "import sys\n"
        "from bot.answers.llm import LLMWriter\n"
        "from tests.fakes.chat import ScriptedChatModel\n"
        "writer = LLMWriter(ScriptedChatModel(reply='late [1]', delay=600), 'scripted', 0.5)\n"
        "print('asking', flush=True)\n"
        "print(writer.write('how do I roll back?', []).rejected_because, flush=True)\n"
    )
    process = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=ROOT,
        env=_env(PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "asking\n"
        asked = time.monotonic()
        out, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    exited = time.monotonic()
    assert process.returncode == 0
    assert out.strip() == "the LLM did not answer within 0.5 s"
    assert exited - asked < 0.5 + MARGIN_SECONDS, f"{exited - asked:.1f} s from asking to exit"
