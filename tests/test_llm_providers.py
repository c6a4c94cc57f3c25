"""The real `langchain-openai` client against a scripted OpenAI-compatible server on loopback.

Settings reach the wire (base URL, key, model, temperature), failures fall back to the extractive
answer with a reason and without the key, and the timeout bounds the whole call.
"""

from __future__ import annotations

import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.answers.llm import NO_KEY, PROVIDERS, AnswerStream
from bot.config import Settings, SettingsError, load_settings
from bot.wiring import Services
from tests.conftest import ROOT
from tests.fakes.openai_server import FakeOpenAI
from tests.servers import free_port

QUESTION = "How do I roll back the fraud-scorer model in production?"
KEY = "sk-test-4f9c2a7e1b"
REPLY = "Move the `production` alias back to the previous version [1]."
# Far above what a timed-out call needs here, far below the minutes a retrying or joined client took.
MARGIN_SECONDS = 15.0


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    """A fresh scripted server."""
    with FakeOpenAI() as running:
        yield running


@pytest.fixture
def llm_services(make_services: Callable[..., Services], small_kb: Path) -> Callable[..., Services]:
    """Services over the ingested small knowledge base with `STEWARD_LLM` and its settings."""

    def build(**settings: object) -> Services:
        values: dict[str, object] = {"llm": "openai:llama3.1", "llm_timeout_seconds": 10.0}
        values.update(settings)
        services = make_services(**values)
        services.ingestor.run([small_kb])
        return services

    return build


def test_the_answer_comes_from_the_server_with_the_settings_on_the_wire(
    server: FakeOpenAI, llm_services: Callable[..., Services]
) -> None:
    """Base URL, key, model and temperature are sent; the passages go as delimited data."""
    server.answer(REPLY)
    services = llm_services(llm_base_url=server.base_url, llm_api_key=KEY, llm_temperature=0.2)
    answer = services.answers.ask(QUESTION)
    assert answer.answer == REPLY
    assert answer.written_by == "openai:llama3.1" and answer.fallback_reason is None
    (request,) = server.wait_for_requests(1)
    assert request.path == "/v1/chat/completions"
    assert request.bearer == KEY
    assert request.body["model"] == "llama3.1"
    assert request.body["temperature"] == 0.2
    assert not request.body.get("stream")
    system, human = request.body["messages"]
    assert system["role"] == "system" and "untrusted data" in system["content"]
    assert '<passage id="1" title="Model rollback"' in human["content"]
    assert "Move the MLflow registered model alias `production` back" in human["content"]
    assert human["content"].rstrip().endswith(QUESTION)


def test_no_temperature_is_sent_unless_set(server: FakeOpenAI, llm_services: Callable[..., Services]) -> None:
    """Unset STEWARD_LLM_TEMPERATURE leaves the server's default."""
    server.answer(REPLY)
    llm_services(llm_base_url=server.base_url, llm_api_key=KEY).answers.ask(QUESTION)
    (request,) = server.wait_for_requests(1)
    assert "temperature" not in request.body


def test_a_base_url_without_a_key_never_gets_the_openai_key(
    server: FakeOpenAI, llm_services: Callable[..., Services], monkeypatch: pytest.MonkeyPatch
) -> None:
    """OPENAI_API_KEY is OpenAI's: a server named by STEWARD_LLM_BASE_URL gets a placeholder instead."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-openai-key")
    server.answer(REPLY)
    answer = llm_services(llm_base_url=server.base_url).answers.ask(QUESTION)
    assert answer.written_by == "openai:llama3.1"
    (request,) = server.wait_for_requests(1)
    assert request.bearer == NO_KEY


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (401, "refused the API key (HTTP 401): check STEWARD_LLM_API_KEY"),
        (403, "denied access (HTTP 403)"),
        (404, "knows no such model or path (HTTP 404)"),
        (429, "is rate limiting (HTTP 429)"),
        (500, "failed (HTTP 500)"),
        (503, "failed (HTTP 503)"),
    ],
)
def test_http_errors_fall_back_once_with_the_status(
    status: int, reason: str, server: FakeOpenAI, llm_services: Callable[..., Services]
) -> None:
    """An error status falls back at once, naming the server and the status, never the key; no retry."""
    server.fail(status)
    answer = llm_services(llm_base_url=server.base_url, llm_api_key=KEY).answers.ask(QUESTION)
    assert answer.written_by == "extractive" and not answer.abstained and "[1]" in answer.answer
    assert answer.fallback_reason is not None
    assert answer.fallback_reason.startswith(f"the LLM server at {server.base_url} {reason}")
    assert KEY not in answer.model_dump_json()
    assert len(server.requests) == 1, "the client's own retries are off: the budget is Steward's"


def test_connection_refused_is_named(llm_services: Callable[..., Services]) -> None:
    """Nothing listening at the base URL: the fallback says the server could not be reached."""
    url = f"http://127.0.0.1:{free_port()}/v1"
    answer = llm_services(llm_base_url=url, llm_api_key=KEY).answers.ask(QUESTION)
    assert answer.written_by == "extractive"
    assert answer.fallback_reason == f"cannot reach the LLM server at {url} (connection refused)"


def test_credentials_in_the_base_url_are_not_shown(llm_services: Callable[..., Services]) -> None:
    """A user name and password in STEWARD_LLM_BASE_URL stay out of the fallback reason."""
    port = free_port()
    answer = llm_services(llm_base_url=f"http://steward:hunter2@127.0.0.1:{port}/v1").answers.ask(QUESTION)
    assert (
        answer.fallback_reason
        == f"cannot reach the LLM server at http://127.0.0.1:{port}/v1 (connection refused)"
    )


def test_a_server_that_never_answers_costs_the_budget_only(
    server: FakeOpenAI, llm_services: Callable[..., Services]
) -> None:
    """The answer falls back when the timeout is spent, not when the client gives up."""
    server.hang()
    services = llm_services(llm_base_url=server.base_url, llm_api_key=KEY, llm_timeout_seconds=1.0)
    started = time.monotonic()
    answer = services.answers.ask(QUESTION)
    elapsed = time.monotonic() - started
    assert answer.written_by == "extractive"
    assert answer.fallback_reason == f"the LLM server at {server.base_url} did not answer within 1 s"
    assert elapsed < 1.0 + MARGIN_SECONDS
    assert len(server.wait_for_requests(1)) == 1


def _stream(services: Services) -> AnswerStream:
    """The LLM's streamed answer to QUESTION over the passages retrieval found for it."""
    writer = services.writer
    assert writer is not None
    return writer.stream(QUESTION, services.retriever.search(QUESTION, None, limit=3).documents)


def test_a_streamed_answer_arrives_as_it_is_written(
    server: FakeOpenAI, llm_services: Callable[..., Services]
) -> None:
    """The first deltas are read while the server still holds the rest; the whole is then checked."""
    server.answer(REPLY)
    rest = server.pause_stream(after=2)
    services = llm_services(llm_base_url=server.base_url, llm_api_key=KEY)
    stream = _stream(services)
    deltas = iter(stream)
    first = [next(deltas), next(deltas)]
    assert first == ["Move ", "the "], "two words arrived before the server sent the third"
    assert stream.result is None
    rest.set()
    assert "".join([*first, *deltas]) == REPLY
    assert stream.result is not None and stream.result.text == REPLY
    (request,) = server.wait_for_requests(1)
    assert request.body["stream"] is True and request.bearer == KEY


def test_a_streamed_answer_is_checked_at_the_end(
    server: FakeOpenAI, llm_services: Callable[..., Services]
) -> None:
    """An uncited streamed answer is shown as it comes but rejected at the end, like a plain one."""
    server.answer("Just do it, trust me.", pieces=["Just do ", "it, ", "trust me."])
    services = llm_services(llm_base_url=server.base_url, llm_api_key=KEY)
    stream = _stream(services)
    assert list(stream) == ["Just do ", "it, ", "trust me."]
    assert stream.result is not None and stream.result.text is None
    assert stream.result.rejected_because == "the LLM answer cites no passage"


def test_a_stream_that_stalls_ends_at_the_budget(
    server: FakeOpenAI, llm_services: Callable[..., Services]
) -> None:
    """The timeout covers the whole stream: what came is kept, then the reason says it was late."""
    server.answer(REPLY)
    server.pause_stream(after=1)  # never released (3 s: ample for the first word to arrive on loopback)
    services = llm_services(llm_base_url=server.base_url, llm_api_key=KEY, llm_timeout_seconds=3.0)
    stream = _stream(services)
    started = time.monotonic()
    assert list(stream) == ["Move "]
    assert time.monotonic() - started < 3.0 + MARGIN_SECONDS
    assert stream.result is not None and stream.result.text is None
    assert stream.result.rejected_because == (
        f"the LLM server at {server.base_url} did not finish its answer within 3 s"
    )


def test_a_stream_refused_by_the_server_yields_nothing(
    server: FakeOpenAI, llm_services: Callable[..., Services]
) -> None:
    """HTTP 401 before the first delta: no text, and the reason."""
    server.fail(401)
    services = llm_services(llm_base_url=server.base_url, llm_api_key=KEY)
    stream = _stream(services)
    assert list(stream) == []
    assert stream.result is not None and stream.result.rejected_because is not None
    assert "refused the API key (HTTP 401)" in stream.result.rejected_because


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "nosuchprovider:some-model",
            "unknown provider 'nosuchprovider': use one of openai, anthropic, ollama",
        ),
        ("gpt-4o-mini", "write it as provider:model, for example openai:gpt-4o-mini"),
    ],
)
def test_an_unknown_provider_is_refused(spec: str, message: str, tmp_path: Path) -> None:
    """The setting and what to write instead, when the chat model is built."""
    with pytest.raises(SettingsError) as refused:
        _ = Services(Settings(data_dir=tmp_path, llm=spec)).chat_model
    assert f"STEWARD_LLM={spec!r} cannot be used: {message}" in str(refused.value)


@pytest.mark.parametrize(
    ("provider", "module", "package"),
    [
        ("openai", "langchain_openai", "langchain-openai"),
        ("anthropic", "langchain_anthropic", "langchain-anthropic"),
        ("ollama", "langchain_ollama", "langchain-ollama"),
    ],
)
def test_a_missing_provider_package_names_the_extra_to_install(
    provider: str,
    module: str,
    package: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The provider's package not importable: the exact pip command, with the setting."""
    monkeypatch.setitem(sys.modules, module, None)  # how Python sees a package that is not installed
    with pytest.raises(SettingsError) as refused:
        _ = Services(Settings(data_dir=tmp_path, llm=f"{provider}:some-model")).chat_model
    assert str(refused.value) == (
        f"STEWARD_LLM='{provider}:some-model' cannot be used: the {package} package is not installed: "
        f"pip install 'steward[{provider}]'. Or unset STEWARD_LLM."
    )


def test_each_provider_gets_the_budget_and_no_retries(tmp_path: Path) -> None:
    """openai, anthropic: timeout = budget and max_retries 0; ollama: the HTTP timeout and the key."""

    def model(spec: str) -> Any:
        settings = Settings(
            data_dir=tmp_path,
            llm=spec,
            llm_base_url="http://127.0.0.1:9/v1",
            llm_api_key=KEY,
            llm_timeout_seconds=7.0,
        )
        return Services(settings).chat_model

    openai = model("openai:m")
    assert (openai.request_timeout, openai.max_retries) == (7.0, 0)
    anthropic = model("anthropic:claude-x")
    assert (anthropic.default_request_timeout, anthropic.max_retries) == (7.0, 0)
    ollama = model("ollama:llama3.1")
    assert ollama.client_kwargs["timeout"] == 7.0
    assert ollama.client_kwargs["headers"] == {"Authorization": f"Bearer {KEY}"}
    assert KEY not in repr(openai) and KEY not in repr(anthropic)


def test_each_provider_has_its_extra_and_the_image_carries_openai_and_ollama() -> None:
    """`pip install 'steward[PROVIDER]'` installs the package the refusal names; the image has two."""
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    for provider in PROVIDERS.values():
        assert any(dep.startswith(provider.package) for dep in optional[provider.extra]), provider
    assert any(dep.startswith("langchain-openai") for dep in optional["dev"]), "tests run the real client"
    dockerfile = (ROOT / "deploy" / "docker" / "Dockerfile").read_text(encoding="utf-8")
    assert '"/tmp/steward[openai,ollama]"' in dockerfile


def test_openai_without_any_key_is_refused_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No STEWARD_LLM_API_KEY, no base URL, no OPENAI_API_KEY: refused when built, naming the settings."""
    for variable in ("OPENAI_API_KEY", "OPENAI_ADMIN_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(SettingsError) as refused:
        _ = Services(Settings(data_dir=tmp_path, llm="openai:gpt-4o-mini")).chat_model
    message = str(refused.value)
    assert message.startswith("STEWARD_LLM='openai:gpt-4o-mini' cannot be used: ")
    assert "STEWARD_LLM_API_KEY" in message


def test_the_llm_settings_keep_the_key_secret_and_read_blank_as_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The key is a SecretStr that no repr shows; blank values mean unset; the URL must be http(s)."""
    monkeypatch.setenv("STEWARD_LLM_API_KEY", KEY)
    monkeypatch.setenv("STEWARD_LLM_BASE_URL", " http://localhost:11434/v1 ")
    monkeypatch.setenv("STEWARD_LLM_TEMPERATURE", "0")
    settings = load_settings()
    assert settings.llm_api_key is not None and settings.llm_api_key.get_secret_value() == KEY
    assert KEY not in repr(settings) and KEY not in str(settings.model_dump())
    assert settings.llm_base_url == "http://localhost:11434/v1" and settings.llm_temperature == 0
    for variable in ("STEWARD_LLM_API_KEY", "STEWARD_LLM_BASE_URL", "STEWARD_LLM_TEMPERATURE"):
        monkeypatch.setenv(variable, "")
    blank = load_settings()
    assert (blank.llm_api_key, blank.llm_base_url, blank.llm_temperature) == (None, None, None)
    monkeypatch.setenv("STEWARD_LLM_BASE_URL", "localhost:11434")
    monkeypatch.setenv("STEWARD_LLM_TEMPERATURE", "3")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert "STEWARD_LLM_BASE_URL: Value error, 'localhost:11434' is not an http(s) URL" in str(refused.value)
    assert "STEWARD_LLM_TEMPERATURE: Input should be less than or equal to 2" in str(refused.value)
