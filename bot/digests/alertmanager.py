"""Alertmanager's webhook payload (version 4), read into alert updates with clear errors.

Format: https://prometheus.io/docs/alerting/latest/configuration/#webhook_config
"""

from __future__ import annotations

import datetime as dt
import hmac
import time
from collections.abc import Callable
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import from_json

from bot.store.incidents import AlertUpdate, IncidentStore

MAX_BODY_BYTES = 1_000_000
_ZERO_TIME = dt.datetime(1, 1, 1, tzinfo=dt.UTC)  # Alertmanager's endsAt of a firing alert
# What the state database holds (bot/store/incidents.py): PostgreSQL refuses longer text, and NUL anywhere.
_LABEL_LIMITS = {"alertname": 256, "severity": 32, "service": 128, "job": 128}
_STORED_ANNOTATIONS = ("summary", "runbook_url", "description")


class AlertPayloadError(Exception):
    """The request is not an Alertmanager webhook notification; the message says what is wrong."""


class _Alert(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: AwareDatetime  # noqa: N815 -- Alertmanager's field names; it always sends a UTC offset
    endsAt: AwareDatetime | None = None  # noqa: N815
    fingerprint: str = Field(min_length=1, max_length=122)  # stored as "alert:" + it in 128 characters


class _Notification(BaseModel):
    model_config = ConfigDict(extra="allow")

    version: str
    status: Literal["firing", "resolved"]
    alerts: list[_Alert]


def read_notification(body: bytes) -> list[AlertUpdate]:
    """The alerts of one notification; AlertPayloadError names the field at fault."""
    if len(body) > MAX_BODY_BYTES:
        raise AlertPayloadError(f"the body is {len(body):,} bytes; the limit is {MAX_BODY_BYTES:,}")
    try:
        # pydantic's parser, not json.loads: it refuses lone surrogates, huge numbers and deep nesting too
        data = from_json(body)
    except ValueError as exc:
        raise AlertPayloadError(f"the body is not JSON ({exc})") from None
    try:
        notification = _Notification.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the body"
        raise AlertPayloadError(
            f"{where}: {first['msg']} (expected Alertmanager's webhook JSON, version 4)"
        ) from None
    if notification.version != "4":
        raise AlertPayloadError(
            f"version {notification.version!r} is not supported; Alertmanager sends version 4"
        )
    updates = []
    for index, alert in enumerate(notification.alerts):
        _check_storable(index, alert)
        name = alert.labels.get("alertname", "unnamed alert")
        summary = alert.annotations.get("summary")
        ends = alert.endsAt if alert.endsAt is not None and alert.endsAt > _ZERO_TIME else None
        updates.append(
            AlertUpdate(
                fingerprint=alert.fingerprint,
                alertname=name,
                status=alert.status,
                title=f"{name}: {summary}" if summary else name,
                severity=alert.labels.get("severity"),
                service=alert.labels.get("service") or alert.labels.get("job"),
                starts_at=alert.startsAt.timestamp(),
                ends_at=ends.timestamp() if ends is not None and alert.status == "resolved" else None,
                runbook_url=alert.annotations.get("runbook_url"),
                description=alert.annotations.get("description"),
            )
        )
    return updates


def _check_storable(index: int, alert: _Alert) -> None:
    """AlertPayloadError naming the first label or annotation the state database cannot hold."""
    fields = [("fingerprint", alert.fingerprint)]
    fields += [(f"labels.{key}", value) for key, value in alert.labels.items() if key in _LABEL_LIMITS]
    fields += [
        (f"annotations.{key}", value)
        for key, value in alert.annotations.items()
        if key in _STORED_ANNOTATIONS
    ]
    for field, value in fields:
        limit = _LABEL_LIMITS.get(field.removeprefix("labels."))
        if limit is not None and len(value) > limit:
            raise AlertPayloadError(f"alerts.{index}.{field}: longer than {limit} characters; shorten it")
        if "\x00" in value:
            raise AlertPayloadError(f"alerts.{index}.{field}: contains a NUL character (\\u0000); remove it")


class AlertReceiver:
    """`POST /hooks/alertmanager`: bearer-token checked, payload read, incidents updated."""

    def __init__(
        self, store: IncidentStore, token: str | None, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.token = token
        self.clock = clock

    def receive(self, authorization: str | None, body: bytes) -> tuple[int, dict[str, object]]:
        """The HTTP status and JSON body to answer with."""
        if not self.token:
            return 503, {
                "error": "the Alertmanager receiver is off: set STEWARD_ALERTMANAGER_TOKEN and use it as the "
                "webhook's bearer token (http_config.authorization.credentials)"
            }
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return 401, {"error": "missing or wrong bearer token"}
        try:
            updates = read_notification(body)
        except AlertPayloadError as exc:
            return 400, {"error": str(exc)}
        self.store.record_alerts(updates, self.clock())
        return 200, {"received": len(updates)}
