"""`steward digest run NAME`: a configured digest, rendered in the terminal."""

from __future__ import annotations

import datetime as dt

from bot.digests.config import DigestConfigError, load_digests
from bot.digests.drift_digest import knowledge_runbooks, render_text, run_drift
from bot.digests.governance import GovernanceReport, gather
from bot.digests.governance import render_text as render_governance
from bot.digests.incidents import gather as gather_incidents
from bot.digests.incidents import incident_runbooks
from bot.digests.incidents import render_text as render_incidents
from bot.store.digests import DriftHistory
from bot.store.incidents import IncidentStore
from bot.wiring import Services


def run_digest(services: Services, name: str, at: dt.date | None, since: dt.date | None) -> int:
    """Render digest `name`; exit 0 (findings are output, not failures)."""
    config = load_digests(services.settings.digests_file)
    digest = config.digests.get(name)
    if digest is None:
        known = ", ".join(sorted(config.digests)) or "none"
        raise DigestConfigError(f"{config.path}: no digest named {name!r} (configured: {known})")
    if digest.kind == "governance":
        today = at or today_for(services, name)
        report = governance_report(services, today, digest.period_days, since)
        text = render_governance(name, report, digest.when_quiet)
        if text:
            print(text)
        return 0
    if digest.kind == "incidents":
        today = at or today_for(services, name)
        since_day, until_day = period(today, digest.period_days, since)
        incidents = gather_incidents(
            IncidentStore(services.catalog.engine),
            since_day,
            until_day,
            incident_runbooks(lambda: services.retriever),
        )
        text = render_incidents(name, incidents, digest.when_quiet)
        if text:
            print(text)
        return 0
    today = at or today_for(services, name)
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

    history = DriftHistory(services.catalog.engine)  # read only: a trial in the terminal is not recorded
    results = run_drift(
        digest,
        today,
        config.path.parent,
        find_runbook=knowledge_runbooks(lambda: services.retriever),
        earlier=lambda model: history.earlier(name, model, today.isoformat()),
    )
    text = render_text(name, results, today, digest.when_quiet)
    if text:
        print(text)
    return 0


def today_for(services: Services, name: str) -> dt.date:
    """Today in the digest's timezone (the configured one, else UTC)."""
    config = load_digests(services.settings.digests_file)
    digest = config.digests.get(name)
    return dt.datetime.now(config.zone(digest) if digest else dt.UTC).date()


def period(today: dt.date, days: int, since: dt.date | None) -> tuple[dt.datetime, dt.datetime]:
    """A digest's period: the `days` days before `today` (or from `since`), as UTC midnights."""
    until = dt.datetime.combine(today, dt.time(), dt.UTC)
    return (
        dt.datetime.combine(since, dt.time(), dt.UTC) if since else until - dt.timedelta(days=days)
    ), until


def governance_report(
    services: Services, today: dt.date, days: int, since: dt.date | None
) -> GovernanceReport:
    """The governance digest over its period."""
    start, until = period(today, days, since)
    services.catalog.ensure_schema()
    return gather(services.catalog.engine, services.catalog.documents(), start, until)
