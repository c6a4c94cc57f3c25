"""The same ingest-and-ask behaviour on a real Chroma server and on real PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.index.vectors import VectorStoreError
from bot.wiring import Services
from tests.servers import chroma_server, free_port

POSTGRES_URL = os.environ.get("STEWARD_TEST_POSTGRES_URL")


def _roundtrip(services: Services, kb: Path) -> None:
    report = services.ingestor.run([kb])
    assert len(report.added) == 5
    assert services.vectors.count() == services.catalog.count()[1]
    again = services.ingestor.run([kb])
    assert again.unchanged == 5 and again.added == []
    answer = services.answers.ask("How do I roll back the fraud-scorer model in production?")
    assert answer.citations[0].path == "runbooks/model-rollback.md"


@pytest.mark.slow
def test_chroma_server_mode(small_kb: Path, make_services: Callable[..., Services], tmp_path: Path) -> None:
    """STEWARD_CHROMA_URL sends vectors to a real `chroma run` server over loopback HTTP."""
    with chroma_server(tmp_path / "chroma-server") as url:
        services = make_services(chroma_url=url)
        _roundtrip(services, small_kb)
        assert services.vectors.url == url
    assert not (tmp_path / "data" / "chroma").exists(), "nothing was written to an embedded Chroma"


def test_unreachable_chroma_server_names_the_url(
    small_kb: Path, make_services: Callable[..., Services]
) -> None:
    """A server that is not there gives an error naming its URL and what to do."""
    url = f"http://127.0.0.1:{free_port()}"
    services = make_services(chroma_url=url)
    with pytest.raises(VectorStoreError, match=f"cannot reach the Chroma server at {url}.*chroma run"):
        services.ingestor.run([small_kb])


def test_postgres_catalog(
    small_kb: Path, make_services: Callable[..., Services], postgres_database: str
) -> None:
    """The catalog and manifest work on PostgreSQL exactly as on SQLite."""
    services = make_services(database_url=postgres_database)
    _roundtrip(services, small_kb)
    assert services.catalog.engine.dialect.name == "postgresql"
