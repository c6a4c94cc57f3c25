"""Incidents (from Alertmanager alerts, or declared in Slack) and every alert notification received."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.redaction import mask_secrets
from bot.store.schema import StateStoreError

metadata = sa.MetaData()

incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("incident_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(16), nullable=False),  # alertmanager | slack
    # alert:<fingerprint>@<startsAt in ms> (alert:<fingerprint> before episodes), or slack:<uuid>
    sa.Column("key", sa.String(128), nullable=False, unique=True),
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
    sa.Column("fingerprint", sa.String(128), nullable=True, index=True),  # alerts: the alert's
    sa.Column("episode", sa.Integer, nullable=True),  # alerts: 1 when it first fired, 2 when it fired again…
)

alert_events = sa.Table(
    "alert_events",
    metadata,
    sa.Column("event_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alertname", sa.String(256), nullable=False),
    sa.Column("fingerprint", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("received_at", sa.Float, nullable=False, index=True),
    sa.Column("notification", sa.String(64), nullable=True),  # the notification it came in
)

# What the incident digest cannot show: alerts Alertmanager left out of a notification (truncated),
# alerts Steward could not read (rejected) and notifications refused whole (refused).
alert_gaps = sa.Table(
    "alert_gaps",
    metadata,
    sa.Column("gap_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("received_at", sa.Float, nullable=False, index=True),
    sa.Column("reason", sa.String(16), nullable=False),  # truncated | rejected | refused
    sa.Column("alerts", sa.BigInteger, nullable=True),  # how many (None: unknown, the body was refused)
    sa.Column("detail", sa.Text, nullable=True),  # the group key, or why the body was refused
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
    episode: int | None = None  # an alert's: 1 when it first fired, 2 when it fired again after resolving…


@dataclass(frozen=True)
class NoisyAlert:
    """An alert name and how often it fired in a period."""

    alertname: str
    notifications: int  # notifications in which it fired (each counted once, however many alerts it held)
    alerts: int  # distinct alerts (fingerprints) of that name


@dataclass(frozen=True)
class AlertGaps:
    """What a period's incident digest cannot show."""

    truncated: int = 0  # alerts Alertmanager left out of its notifications (`truncatedAlerts`)
    truncated_groups: tuple[str, ...] = ()  # the group keys of those notifications (a few)
    rejected: int = 0  # alerts Steward could not read (the response and the log name them)
    refused: int = 0  # notifications refused whole (too large, not JSON, not version 4)
    refused_reasons: tuple[str, ...] = ()

    @property
    def none(self) -> bool:
        """Nothing was lost."""
        return not (self.truncated or self.rejected or self.refused)


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


# Two `startsAt` this close (seconds) are the same: both were parsed from the same RFC 3339 text.
_SAME_START = 0.001
_DETAIL_CHARACTERS = 500


def _masked(text: str | None) -> str | None:
    return None if text is None else mask_secrets(text).text


def _clean(text: str | None) -> str | None:
    """A group key or reason as stored: clipped, without NUL (PostgreSQL refuses it), secrets masked."""
    if not text:
        return None
    return mask_secrets(text.replace("\x00", "")[:_DETAIL_CHARACTERS]).text


class IncidentStore:
    """Incidents and alert notifications in the state database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record_alerts(
        self,
        updates: list[AlertUpdate],
        now: float,
        *,
        truncated: int = 0,
        rejected: int = 0,
        group_key: str | None = None,
    ) -> None:
        """One notification: each alert's episode opened or resolved, every alert logged, and the alerts it
        lost (`truncated` by Alertmanager, `rejected` as unreadable) noted for the digest."""
        notification = uuid.uuid4().hex
        with self.engine.begin() as connection:
            for update in updates:
                connection.execute(
                    sa.insert(alert_events).values(
                        alertname=update.alertname,
                        fingerprint=update.fingerprint,
                        status=update.status,
                        received_at=now,
                        notification=notification,
                    )
                )
                self._episode(connection, update, now)
            for reason, count in (("truncated", truncated), ("rejected", rejected)):
                if count:
                    connection.execute(
                        sa.insert(alert_gaps).values(
                            received_at=now, reason=reason, alerts=count, detail=_clean(group_key)
                        )
                    )

    def record_refused(self, reason: str, now: float) -> None:
        """A notification refused whole (its alerts are unknown): the digest says so."""
        with self.engine.begin() as connection:
            connection.execute(
                sa.insert(alert_gaps).values(received_at=now, reason="refused", detail=_clean(reason))
            )

    @staticmethod
    def _episode(connection: sa.Connection, update: AlertUpdate, now: float) -> None:
        """Open, resolve or leave the incident of the alert's episode (its fingerprint and `startsAt`).

        Alertmanager keeps an alert's `startsAt` while it fires; one that fires again after resolving
        comes with a later one. So a known `startsAt` is a known episode; a later one is the next episode,
        and an episode still open then has ended by that time (its resolve notification never came).
        """
        episodes = connection.execute(
            sa.select(
                incidents.c.incident_id, incidents.c.status, incidents.c.started_at, incidents.c.episode
            )
            .where(incidents.c.fingerprint == update.fingerprint)
            .order_by(incidents.c.started_at.desc(), incidents.c.incident_id.desc())
        ).all()
        resolved = update.status == "resolved"
        same = next((e for e in episodes if abs(e.started_at - update.starts_at) <= _SAME_START), None)
        if same is not None:
            if resolved and same.status == "open":
                connection.execute(
                    sa.update(incidents)
                    .where(incidents.c.incident_id == same.incident_id)
                    .values(status="resolved", resolved_at=update.ends_at or now)
                )
            return
        latest = episodes[0] if episodes else None
        if latest is not None and update.starts_at < latest.started_at:
            return  # a late copy of an episode before the newest: nothing to change (the event is logged)
        if latest is not None and latest.status == "open":
            connection.execute(
                sa.update(incidents)
                .where(incidents.c.incident_id == latest.incident_id)
                .values(status="resolved", resolved_at=update.starts_at)
            )
        connection.execute(
            sa.insert(incidents).values(
                source="alertmanager",
                key=f"alert:{update.fingerprint}@{round(update.starts_at * 1000)}",
                # alert texts are written by people too: credentials in them are masked
                title=mask_secrets(update.title).text,
                severity=update.severity,
                service=update.service,
                status="resolved" if resolved else "open",
                started_at=update.starts_at,
                resolved_at=(update.ends_at or now) if resolved else None,
                runbook_url=_masked(update.runbook_url),
                description=_masked(update.description),
                fingerprint=update.fingerprint,
                episode=max((e.episode or 1 for e in episodes), default=0) + 1,
            )
        )

    def declare(
        self, title: str, severity: str, service: str | None, user: str, channel: str, now: float
    ) -> int:
        """An incident declared in Slack; returns its number."""
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
            if key is None:
                raise StateStoreError("the database gave no id for the new incident")
            return int(key[0])

    def set_thread(self, incident_id: int, thread_ts: str) -> None:
        """The message whose thread is the incident's timeline."""
        with self.engine.begin() as connection:
            connection.execute(
                sa.update(incidents).where(incidents.c.incident_id == incident_id).values(thread_ts=thread_ts)
            )

    def resolve(self, incident_id: int, now: float) -> Incident | None:
        """Resolve an open incident; the incident (None: no such open incident)."""
        with self.engine.begin() as connection:
            changed = connection.execute(
                sa.update(incidents)
                .where(incidents.c.incident_id == incident_id, incidents.c.status == "open")
                .values(status="resolved", resolved_at=now)
            ).rowcount
            if not changed:
                return None
            row = connection.execute(sa.select(incidents).where(incidents.c.incident_id == incident_id)).one()
        return _incident(row)

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
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(incidents)
                .where(
                    incidents.c.started_at < end,
                    sa.or_(incidents.c.resolved_at.is_(None), incidents.c.resolved_at >= start),
                )
                .order_by(incidents.c.started_at)
            )
            return [_incident(row) for row in rows]

    def noisiest(self, start: float, end: float, limit: int = 5) -> tuple[list[NoisyAlert], int]:
        """The alert names that fired in the most notifications in the period (each notification counted
        once, however many alerts of that name it held), and how many alert names fired in all."""
        firing = sa.and_(
            alert_events.c.status == "firing",
            alert_events.c.received_at >= start,
            alert_events.c.received_at < end,
        )
        notifications = sa.func.count(sa.distinct(alert_events.c.notification)).label("notifications")
        alerts = sa.func.count(sa.distinct(alert_events.c.fingerprint)).label("alerts")
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(alert_events.c.alertname, notifications, alerts)
                .where(firing)
                .group_by(alert_events.c.alertname)
                .order_by(sa.desc("notifications"), sa.desc("alerts"), alert_events.c.alertname)
                .limit(limit)
            )
            top = [NoisyAlert(str(name), int(sent), int(count)) for name, sent, count in rows]
            names = connection.execute(
                sa.select(sa.func.count(sa.distinct(alert_events.c.alertname))).where(firing)
            ).scalar()
        return top, int(names or 0)

    def gaps(self, start: float, end: float) -> AlertGaps:
        """What the period's notifications lost: truncated and rejected alerts, refused notifications."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(alert_gaps.c.reason, alert_gaps.c.alerts, alert_gaps.c.detail)
                .where(alert_gaps.c.received_at >= start, alert_gaps.c.received_at < end)
                .order_by(alert_gaps.c.received_at)
            ).all()
        count = {
            reason: sum(r.alerts or 0 for r in rows if r.reason == reason)
            for reason in ("truncated", "rejected")
        }
        details = {
            reason: tuple(dict.fromkeys(r.detail for r in rows if r.reason == reason and r.detail))
            for reason in ("truncated", "refused")
        }
        return AlertGaps(
            truncated=count["truncated"],
            truncated_groups=details["truncated"],
            rejected=count["rejected"],
            refused=sum(1 for r in rows if r.reason == "refused"),
            refused_reasons=details["refused"],
        )


_INCIDENT_FIELDS = tuple(field.name for field in fields(Incident))  # each one a column of `incidents`


def _incident(row: sa.Row[Any]) -> Incident:
    return Incident(**{name: row._mapping[name] for name in _INCIDENT_FIELDS})


def utc(moment: float) -> str:
    """A stored time as the digest prints it."""
    return dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
