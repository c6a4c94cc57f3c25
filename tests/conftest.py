"""Shared fixtures: the embedding models (the fake in the unit tier, the real one loaded once where a test
needs its semantics), small knowledge trees, isolated settings."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from slack_sdk import WebClient

from bot.config import Settings
from bot.demo.predictions import DEMO_DRIFT_FROM, DEMO_START, prediction_log, write_csv
from bot.index.embedding import Embedder
from bot.wiring import Services
from tests.databases import StateDatabase, fresh_postgres_database, state_database
from tests.fakes.webhook import WebhookReceiver
from tests.slackbot import RunningBot, running_bot
from tests.support.clock import TUESDAY_NOON, RunningClock
from tests.support.embedding import FakeEmbedder
from tests.support.slack import FakeSlack, payload_violations
from tests.support.tiers import mark_tiers

ROOT = Path(__file__).resolve().parents[1]
TODAY = dt.date(2026, 11, 24)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's STEWARD_* or SLACK_* variables or .env file."""
    for name in list(os.environ):
        if name.startswith(("STEWARD_", "SLACK_")) and name != "STEWARD_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The packaged all-MiniLM-L6-v2, loaded once for the whole run: for tests that need its semantics
    (ranking, abstention, the starter questions), which the tiers keep out of the unit tier."""
    model = Embedder()
    model.embed(["warm up"])
    return model


@pytest.fixture(scope="session")
def fake_embedder() -> FakeEmbedder:
    """The hashed-words stand-in (tests/support/embedding.py): vectors without torch or a model load."""
    return FakeEmbedder()


@pytest.fixture(autouse=True)
def _fake_model_in_the_unit_tier(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """In the unit tier, Services a test builds itself (the CLI's, a restarted process's) build the fake
    model too, so an index is written and read by the same model."""
    if request.node.get_closest_marker("unit") is not None:
        monkeypatch.setattr("bot.wiring.Embedder", FakeEmbedder)


@pytest.fixture
def services_embedder(request: pytest.FixtureRequest) -> Embedder:
    """The model `make_services` gives Services: the fake in the unit tier, the real one in the other
    tiers (they run Steward as it is deployed) and for a test marked `real_model`."""
    if request.node.get_closest_marker("unit") is not None:
        fake: Embedder = request.getfixturevalue("fake_embedder")
        return fake
    real: Embedder = request.getfixturevalue("embedder")
    return real


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """Write files (relative path -> text, dedented) below root."""
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


SMALL_KB = {
    "runbooks/model-rollback.md": """
        ---
        title: Model rollback
        kind: runbook
        status: accepted
        owner: "@dana"
        tags: [models, rollback]
        services: [fraud-scorer]
        last_reviewed: 2026-06-01
        review_by: 2027-06-01
        ---
        # Model rollback

        ## When to roll back
        Roll back when the shadow error rate doubles or the business KPI drops for 30 minutes.

        ## How to roll back
        Move the MLflow registered model alias `production` back to the previous version.
        Production rollbacks need two approvers from ml-platform or sre.

        ```bash
        mlflow models set-alias --name fraud-scorer --alias production --version 11
        ```
        """,
    "runbooks/gpu-node-drain.md": """
        ---
        title: Draining a GPU node
        owner: "@sam"
        review_by: 2025-01-15
        ---
        # Draining a GPU node

        Cordon the node, then evict the inference pods one at a time so that the serving
        deployment keeps its minimum replicas. Uncordon after the driver upgrade finishes.
        """,
    "decisions/0001-drift-thresholds.md": """
        # Drift thresholds

        Status: Superseded by [ADR 0007](0007-drift-thresholds-v2.md)

        ## Decision
        A feature drifts when its population stability index (PSI) exceeds 0.25.
        """,
    "decisions/0007-drift-thresholds-v2.md": """
        ---
        owner: "@lee"
        tags: [drift]
        ---
        # Drift thresholds, second version

        ## Status
        Accepted

        ## Decision
        A feature drifts when its population stability index (PSI) is 0.2 or more, and is
        watched between 0.1 and 0.2. A data set drifts when more than 30% of its features drift.
        """,
    "guides/vendor-questions.txt": """
        Vendor questionnaire for AI suppliers

        Ask every AI vendor where inference runs, how long prompts are retained, whether
        customer data trains their models, and for their SOC 2 Type II report.
        """,
}


@pytest.fixture
def small_kb(tmp_path: Path) -> Path:
    """A five-document knowledge base with a superseded chain and a stale document."""
    return write_tree(tmp_path / "kb", SMALL_KB)


@pytest.fixture
def make_services(tmp_path: Path, services_embedder: Embedder) -> Iterator[Callable[..., Services]]:
    """Build Services on a private data dir, sharing one embedder (`services_embedder` says which)."""
    built: list[Services] = []

    def build(
        chat_model: object = None, clock: Callable[[], float] | None = None, **overrides: object
    ) -> Services:
        values: dict[str, object] = {"data_dir": tmp_path / "data"}
        values.update(overrides)
        # The policy reads a Tuesday noon that runs on, never the machine's weekday (the weekend freeze).
        settings = Settings(**values)  # type: ignore[arg-type]
        services = Services(settings, chat_model=chat_model, clock=clock or RunningClock(TUESDAY_NOON))
        services.override("embedder", services_embedder)
        services.answers.today = lambda: TODAY
        built.append(services)
        return services

    yield build
    for services in built:
        services.close()


@pytest.fixture
def services(make_services: Callable[..., Services], small_kb: Path) -> Services:
    """Services over the small knowledge base, ingested (a test module may provide its own)."""
    built = make_services()
    built.ingestor.run([small_kb])
    return built


@pytest.fixture
def bot(services: Services) -> Iterator[RunningBot]:
    """Steward serving on loopback against a fresh fake Slack (the test module provides `services`)."""
    with running_bot(services) as running:
        yield running


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    """A running fake Slack on loopback (a test module may provide its own)."""
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def client(slack: FakeSlack) -> WebClient:
    """slack_sdk's WebClient pointed at the fake Slack."""
    return WebClient(token="xoxb-test", base_url=slack.api_url)


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[WebhookReceiver]:
    """The retraining pipeline's webhook: a receiver on loopback, its URL and signing key set where the
    starter policies read them (a test module may provide its own `receiver`)."""
    with WebhookReceiver() as hook:
        monkeypatch.setenv("RETRAIN_WEBHOOK_URL", hook.url)
        monkeypatch.setenv("ACTIONS_WEBHOOK_SECRET", "test-webhook-key")
        yield hook


@pytest.fixture(params=["sqlite", "postgresql"])
def state_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateDatabase]:
    """An empty state database: a SQLite file, then a private PostgreSQL schema (skipped without one)."""
    with state_database(request.param, tmp_path) as database:
        yield database


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The starter digests.yaml beside the demo's daily CSV files (drift from 2026-10-29); read only."""
    root = tmp_path_factory.mktemp("digests")
    shutil.copy(ROOT / "digests.yaml", root / "digests.yaml")
    log = prediction_log(DEMO_START, 35, 200, drift_from=DEMO_DRIFT_FROM, seed=3)
    write_csv(log, root / ".steward-demo" / "predictions")
    return root


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test (skipped without CI's URL), dropped afterwards."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(autouse=True)
def _slack_payloads_checked() -> Iterator[None]:
    """Every payload a test made Steward send to a fake Slack is one Slack would take (slack_payloads.py)."""
    yield
    problems = payload_violations()
    if problems:
        pytest.fail("Slack would refuse payloads this test sent:\n" + "\n".join(f"  - {p}" for p in problems))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in one tier: unit, slack, integration or deploy (tests/support/tiers.py)."""
    mark_tiers(items)
