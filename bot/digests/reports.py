"""The governance and incident digests as text, for the terminal and for Slack alike.

Both read the records database (the governance digest also the catalog's documents). When one fails,
the digest is still produced: one line that names the source that failed and why, so a scheduled
digest never crashes and never silently goes missing.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from bot.digests.config import Digest
from bot.digests.governance import gather as gather_governance
from bot.digests.governance import render_text as render_governance
from bot.incidents.digest import RunbookFor
from bot.incidents.digest import gather as gather_incidents
from bot.incidents.digest import render_text as render_incidents
from bot.incidents.records import IncidentStore
from bot.store.action_requests import ActionRequestStore
from bot.store.catalog import Catalog, CatalogError
from bot.store.conversations import ConversationStore
from bot.store.schema import StateStoreError

log = logging.getLogger("steward.digests")


def period(today: dt.date, days: int, since: dt.date | None = None) -> tuple[dt.datetime, dt.datetime]:
    """A digest's period: the `days` days before `today` (or from `since`), as UTC midnights."""
    until = dt.datetime.combine(today, dt.time(), dt.UTC)
    start = dt.datetime.combine(since, dt.time(), dt.UTC) if since else until - dt.timedelta(days=days)
    return start, until


@dataclass(frozen=True)
class ReportRecords:
    """The repositories the governance and incident digests read (bot/wiring.py builds them)."""

    requests: ActionRequestStore
    conversations: ConversationStore
    incidents: IncidentStore

    @property
    def engine(self) -> Engine:
        """The records database they read (named when it fails)."""
        return self.requests.engine


class Report(NamedTuple):
    """A digest's text, and why it could not be produced (None when it was)."""

    text: str
    failed: str | None = None


def build_report(
    name: str,
    digest: Digest,
    catalog: Catalog,
    records: ReportRecords,
    today: dt.date,
    since: dt.date | None = None,
    runbook_for: RunbookFor | None = None,
) -> Report:
    """A governance or incident digest (from the catalog's documents and the records): its text ("" when
    quiet and set to skip), and the reason when its source failed."""
    start, until = period(today, digest.period_days, since)
    try:  # the catalog and the records were migrated at start-up (bot/wiring.py)
        if digest.kind == "governance":
            documents = catalog.documents()
            report = gather_governance(records.requests, records.conversations, documents, start, until)
            return Report(render_governance(name, report, digest.when_quiet))
        incidents = gather_incidents(records.incidents, start, until, runbook_for)
        return Report(render_incidents(name, incidents, digest.when_quiet))
    except (CatalogError, StateStoreError) as exc:  # a damaged records file says what to do
        why = str(exc)
    except SQLAlchemyError as exc:
        reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0][:300]
        why = (
            f"the state database {records.engine.url.render_as_string(hide_password=True)} failed: "
            f"{reason or type(exc).__name__}. "
            "Check STEWARD_DATABASE_URL and that the database is up."
        )
    log.error("digest source failed digest=%s source=state-database", name)
    return Report(f"{name} ({start:%Y-%m-%d} to {until:%Y-%m-%d}): NOT PRODUCED: {why}", why)
