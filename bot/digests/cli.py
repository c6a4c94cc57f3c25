"""`steward digest run NAME`: a configured digest, rendered in the terminal."""

from __future__ import annotations

import datetime as dt

from bot.digests.config import DigestConfigError, load_digests
from bot.digests.drift_digest import knowledge_runbooks, render_text, run_drift
from bot.digests.incidents import incident_runbooks
from bot.digests.reports import report_text
from bot.store.digests import DriftHistory
from bot.wiring import Services


def run_digest(services: Services, name: str, at: dt.date | None, since: dt.date | None) -> int:
    """Render digest `name`; exit 0 (findings are output, not failures)."""
    config = load_digests(services.settings.digests_file)
    digest = config.digests.get(name)
    if digest is None:
        known = ", ".join(sorted(config.digests)) or "none"
        raise DigestConfigError(f"{config.path}: no digest named {name!r} (configured: {known})")
    if digest.kind in ("governance", "incidents"):
        text = report_text(
            name,
            digest,
            services.catalog,
            at or today_for(services, name),
            since,
            incident_runbooks(lambda: services.retriever),
        )
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
