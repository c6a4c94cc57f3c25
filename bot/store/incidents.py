"""Incidents (from Alertmanager alerts, or declared in Slack) and every alert notification received."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.redaction import mask_secrets
from bot.store.schema import upgrade

metadata = sa.MetaData()

incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("incident_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(16), nullable=False),  # alertmanager | slack
    sa.Column("key", sa.String(128), nullable=False, unique=True),  # alert fingerprint, or slack:<n>
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("severity", sa.String(32), nullable=True),
    sa.Column("service", sa.String(128), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),  # open | resolved
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("acknowledged_at", sa.Float, nullable=True),
    sa.Column("resolved_at", sa.Float, nullable=True),
    sa.Column("runbook_url", sa.Text, nullable=True),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("channel", sa.String(32), nullable=True),
    sa.Column("thread_ts", sa.String(32), nullable=True),
    sa.Column("declared_by", sa.String(32), nullable=True),  # Slack-declared: who opened it
)

alert_events = sa.Table(
    "alert_events",
    metadata,
    sa.Column("event_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alertname", sa.String(256), nullable=False),
    sa.Column("fingerprint", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("received_at", sa.Float, nullable=False, index=True),
)


@dataclass(frozen=True)
class Incident:
    """One incident as the digest shows it."""

    incident_id: int
    source: str
    title: str
    severity: str | None
    service: str | None
    status: str
    started_at: float
    acknowledged_at: float | None
    resolved_at: float | None
    runbook_url: str | None
    description: str | None


@dataclass(frozen=True)
class AlertUpdate:
    """One alert of an Alertmanager notification, as stored."""

    fingerprint: str
    alertname: str
    status: str  # firing | resolved
    title: str
    severity: str | None
    service: str | None
    starts_at: float
    ends_at: float | None
    runbook_url: str | None
    description: str | None


def _masked(text: str | None) -> str | None:
    return None if text is None else mask_secrets(text).text


class IncidentStore:
    """Incidents and alert notifications in the state database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record_alerts(self, updates: list[AlertUpdate], now: float) -> None:
        """Open an incident per new firing alert, resolve it when its alert resolves; log every alert."""
        upgrade(self.engine)
        with self.engine.begin() as connection:
            for update in updates:
                connection.execute(
                    sa.insert(alert_events).values(
                        alertname=update.alertname,
                        fingerprint=update.fingerprint,
                        status=update.status,
                        received_at=now,
                    )
                )
                key = f"alert:{update.fingerprint}"
                found = connection.execute(
                    sa.select(incidents.c.incident_id, incidents.c.status).where(incidents.c.key == key)
                ).first()
                resolved = update.status == "resolved"
                if found is None:
                    connection.execute(
                        sa.insert(incidents).values(
                            source="alertmanager",
                            key=key,
                            # alert texts are written by people too: credentials in them are masked
                            title=mask_secrets(update.title).text,
                            severity=update.severity,
                            service=update.service,
                            status="resolved" if resolved else "open",
                            started_at=update.starts_at,
                            resolved_at=(update.ends_at or now) if resolved else None,
                            runbook_url=_masked(update.runbook_url),
                            description=_masked(update.description),
                        )
                    )
                elif resolved and found.status == "open":
                    connection.execute(
                        sa.update(incidents)
                        .where(incidents.c.incident_id == found.incident_id)
                        .values(status="resolved", resolved_at=update.ends_at or now)
                    )

    def declare(
        self, title: str, severity: str, service: str | None, user: str, channel: str, now: float
    ) -> int:
        """An incident declared in Slack; returns its number."""
        upgrade(self.engine)
        with self.engine.begin() as connection:
            result = connection.execute(
                sa.insert(incidents).values(
                    source="slack",
                    key=f"slack:{uuid.uuid4().hex}",
                    title=mask_secrets(title).text,
                    severity=severity,
                    service=_masked(service),
                    status="open",
                    started_at=now,
                    channel=channel,
                    declared_by=user,
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def set_thread(self, incident_id: int, thread_ts: str) -> None:
        """The message whose thread is the incident's timeline."""
        with self.engine.begin() as connection:
            connection.execute(
                sa.update(incidents).where(incidents.c.incident_id == incident_id).values(thread_ts=thread_ts)
            )

    def resolve(self, incident_id: int, now: float) -> Incident | None:
        """Resolve an open incident; the incident (None: no such open incident)."""
        upgrade(self.engine)
        with self.engine.begin() as connection:
            changed = connection.execute(
                sa.update(incidents)
                .where(incidents.c.incident_id == incident_id, incidents.c.status == "open")
                .values(status="resolved", resolved_at=now)
            ).rowcount
        if not changed:
            return None
        return next((i for i in self.in_period(0, float("inf")) if i.incident_id == incident_id), None)

    def thread_of(self, incident_id: int) -> tuple[str | None, str | None]:
        """The channel and thread of a Slack-declared incident (None, None for alerts)."""
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(incidents.c.channel, incidents.c.thread_ts).where(
                    incidents.c.incident_id == incident_id
                )
            ).first()
        return (row.channel, row.thread_ts) if row is not None else (None, None)

    def acknowledge_in_thread(self, channel: str, thread_ts: str, user: str, now: float) -> bool:
        """The first reply by someone other than the declarer in an incident's thread acknowledges it."""
        upgrade(self.engine)
        with self.engine.begin() as connection:
            return bool(
                connection.execute(
                    sa.update(incidents)
                    .where(
                        incidents.c.channel == channel,
                        incidents.c.thread_ts == thread_ts,
                        incidents.c.acknowledged_at.is_(None),
                        incidents.c.declared_by != user,
                    )
                    .values(acknowledged_at=now)
                ).rowcount
            )

    def in_period(self, start: float, end: float) -> list[Incident]:
        """Incidents open at some time in [start, end): begun before its end, not resolved before it."""
        upgrade(self.engine)
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(incidents)
                .where(
                    incidents.c.started_at < end,
                    sa.or_(incidents.c.resolved_at.is_(None), incidents.c.resolved_at >= start),
                )
                .order_by(incidents.c.started_at)
            )
            return [
                Incident(
                    r.incident_id,
                    r.source,
                    r.title,
                    r.severity,
                    r.service,
                    r.status,
                    r.started_at,
                    r.acknowledged_at,
                    r.resolved_at,
                    r.runbook_url,
                    r.description,
                )
                for r in rows
            ]

    def noisiest(self, start: float, end: float, limit: int = 5) -> list[tuple[str, int]]:
        """Alert names by how many firing notifications arrived in the period."""
        upgrade(self.engine)
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(alert_events.c.alertname, sa.func.count().label("n"))
                .where(
                    alert_events.c.status == "firing",
                    alert_events.c.received_at >= start,
                    alert_events.c.received_at < end,
                )
                .group_by(alert_events.c.alertname)
                .order_by(sa.desc("n"), alert_events.c.alertname)
                .limit(limit)
            )
            return [(str(name), int(count)) for name, count in rows]


def utc(moment: float) -> str:
    """A stored time as the digest prints it."""
    return dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
