"""`steward digest run NAME`: a configured digest, rendered in the terminal."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path

from bot.answers.retrieval import Retriever
from bot.digests.config import DigestConfigError, load_digests
from bot.digests.drift_digest import knowledge_runbooks, render_text, run_drift
from bot.digests.reports import ReportRecords, build_report, period
from bot.incidents.digest import incident_runbooks
from bot.store.catalog import Catalog, CatalogError
from bot.store.digests import DriftHistory
from bot.store.schema import StateStoreError

log = logging.getLogger("steward.digests")

# The exit code when the digest was printed but a source of it failed (a cron job should notice).
SOURCE_FAILED = 3


def run_digest(
    digests_file: Path,
    catalog: Callable[[], Catalog],
    records: Callable[[], ReportRecords],
    history: Callable[[], DriftHistory],
    retriever: Callable[[], Retriever],
    runbook_min_similarity: float,
    name: str,
    at: dt.date | None,
    since: dt.date | None,
) -> int:
    """Render digest `name` of `digests_file`: exit 0 (findings, drift included, are output, not failures),
    or SOURCE_FAILED when a data source or the state database could not be read (the digest says which).
    The catalog, the records and the retriever are built only when the digest reads them."""
    config = load_digests(digests_file)
    digest = config.digests.get(name)
    if digest is None:
        known = ", ".join(sorted(config.digests)) or "none"
        raise DigestConfigError(f"{config.path}: no digest named {name!r} (configured: {known})")
    if digest.kind in ("governance", "incidents"):
        today = at or today_for(digests_file, name)
        try:  # opening the catalog and the records migrates them: a damaged or unreachable one fails here
            documents, stores = catalog(), records()
        except (CatalogError, StateStoreError) as exc:
            start, until = period(today, digest.period_days, since)
            log.error("digest source failed digest=%s source=state-database", name)
            print(f"{name} ({start:%Y-%m-%d} to {until:%Y-%m-%d}): NOT PRODUCED: {exc}")
            return SOURCE_FAILED
        text, failed = build_report(
            name,
            digest,
            documents,
            stores,
            today,
            since,
            incident_runbooks(retriever, runbook_min_similarity),
        )
        if text:
            print(text)
        return SOURCE_FAILED if failed else 0
    today = at or today_for(digests_file, name)
    if since is not None:
        monitors = tuple(
            m.model_copy(
                update={
                    "current": m.current.model_copy(update={"start": since, "end": None, "last_days": None})
                }
            )
            for m in digest.monitors
        )
        digest = digest.model_copy(update={"monitors": monitors})

    drift_history = history()  # read only: a trial in the terminal is not recorded
    results = run_drift(
        digest,
        today,
        config.path.parent,
        find_runbook=knowledge_runbooks(retriever),
        earlier=lambda model: drift_history.earlier(name, model, today.isoformat()),
    )
    text = render_text(name, results, today, digest.when_quiet)
    if text:
        print(text)
    return SOURCE_FAILED if any(result.error for result in results) else 0


def today_for(digests_file: Path, name: str) -> dt.date:
    """Today in digest `name`'s timezone (the configured one, else UTC)."""
    config = load_digests(digests_file)
    digest = config.digests.get(name)
    return dt.datetime.now(config.zone(digest) if digest else dt.UTC).date()
