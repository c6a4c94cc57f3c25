"""Alertmanager's webhook payload (version 4), read into alert updates with clear errors.

Format: https://prometheus.io/docs/alerting/latest/configuration/#webhook_config (the `Message` struct of
Alertmanager's notify/webhook/webhook.go). Alertmanager does not retry an answer in the 4xx range, so
nothing valid is refused for the sake of something invalid beside it: each alert is read on its own, the
valid ones are stored, and the invalid ones are named in the answer, logged and counted in /metrics.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import from_json

from bot.errors import BadRequest
from bot.incidents.records import AlertUpdate, IncidentStore
from bot.metrics import ALERTMANAGER_REJECTED, ALERTMANAGER_TRUNCATED

log = logging.getLogger("steward.alertmanager")

DEFAULT_MAX_BYTES = 16 * 1024 * 1024  # a group of 1,300 alerts with long annotations is about 5.4 MB
_ZERO_TIME = dt.datetime(1, 1, 1, tzinfo=dt.UTC)  # Alertmanager's endsAt of a firing alert
# What the state database holds (bot/incidents/records.py): PostgreSQL refuses longer text, and NUL anywhere.
_LABEL_LIMITS = {"alertname": 256, "severity": 32, "service": 128, "job": 128}
_STORED_ANNOTATIONS = ("summary", "runbook_url", "description")
# An incident's key is "alert:" + fingerprint + "@" + startsAt in ms (up to 15 characters) in 128.
_FINGERPRINT_CHARACTERS = 100
_ERRORS_SHOWN = 5
# Prometheus's label-set fingerprint (prometheus/common model/signature.go): FNV-1a, 64 bits.
_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_SEPARATOR = 0xFF  # a byte that never occurs in UTF-8 text


def label_fingerprint(labels: Mapping[str, str]) -> str:
    """The fingerprint Alertmanager gives an alert with these labels: FNV-1a (64 bits) over the label
    names in sorted order, each name and value followed by the byte 0xFF, as 16 hexadecimal digits."""
    digest = _FNV_OFFSET
    for name in sorted(labels):
        for text in (name, labels[name]):
            for byte in (*text.encode("utf-8", "surrogatepass"), _SEPARATOR):
                digest = ((digest ^ byte) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{digest:016x}"


class AlertPayloadError(BadRequest):
    """The request is not an Alertmanager webhook notification; the message says what is wrong."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason  # the /metrics label: too_large, not_json, bad_notification, no_valid_alert


class _Alert(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: AwareDatetime  # noqa: N815 -- Alertmanager's field names; it always sends a UTC offset
    endsAt: AwareDatetime | None = None  # noqa: N815
    # missing or empty: computed from the labels, as Alertmanager does
    fingerprint: str | None = Field(default=None, max_length=_FINGERPRINT_CHARACTERS)


class _Notification(BaseModel):
    model_config = ConfigDict(extra="allow")

    version: str
    status: Literal["firing", "resolved"]
    alerts: list[Any]  # each read on its own: one bad alert does not refuse the others
    truncatedAlerts: int = Field(default=0, ge=0, le=2**63 - 1)  # noqa: N815 -- a uint64 in Go
    groupKey: str = ""  # noqa: N815


@dataclass(frozen=True)
class RejectedAlert:
    """An alert of a notification that could not be read, and why."""

    index: int
    error: str  # names the field: "alerts.3.labels.severity: longer than 32 characters; shorten it"


@dataclass(frozen=True)
class Notification:
    """What one webhook notification holds: the alerts read, the alerts refused, the alerts left out."""

    updates: list[AlertUpdate] = field(default_factory=list)
    rejected: list[RejectedAlert] = field(default_factory=list)
    truncated: int = 0  # alerts Alertmanager left out (its webhook_config's max_alerts)
    group_key: str = ""


def read_notification(body: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Notification:
    """The alerts of one notification; AlertPayloadError names the field at fault when the notification
    itself cannot be read, or when it has alerts and none of them can."""
    if len(body) > max_bytes:
        raise AlertPayloadError(_too_large(len(body), max_bytes), "too_large")
    try:
        # pydantic's parser, not json.loads: it refuses lone surrogates, huge numbers and deep nesting too
        data = from_json(body)
    except ValueError as exc:
        raise AlertPayloadError(f"the body is not JSON ({exc})", "not_json") from None
    try:
        notification = _Notification.model_validate(data)
    except ValidationError as exc:
        raise AlertPayloadError(
            f"{_first_error(exc, '')} (expected Alertmanager's webhook JSON, version 4)", "bad_notification"
        ) from None
    if notification.version != "4":
        raise AlertPayloadError(
            f"version {notification.version!r} is not supported; Alertmanager sends version 4",
            "bad_notification",
        )
    updates: list[AlertUpdate] = []
    rejected: list[RejectedAlert] = []
    for index, raw in enumerate(notification.alerts):
        try:
            updates.append(_update(index, _Alert.model_validate(raw)))
        except ValidationError as exc:
            rejected.append(RejectedAlert(index, _first_error(exc, f"alerts.{index}")))
        except AlertPayloadError as exc:
            rejected.append(RejectedAlert(index, str(exc)))
    return Notification(updates, rejected, notification.truncatedAlerts, notification.groupKey)


def _too_large(size: int, limit: int) -> str:
    return (
        f"the body is {size:,} bytes; the limit is {limit:,} (STEWARD_ALERTMANAGER_MAX_BYTES): raise it, "
        "or set max_alerts in Alertmanager's webhook_config"
    )


def _first_error(exc: ValidationError, prefix: str) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in (*([prefix] if prefix else []), *first["loc"])) or "the body"
    return f"{where}: {first['msg']}"


def _update(index: int, alert: _Alert) -> AlertUpdate:
    """The alert as stored; AlertPayloadError naming the first label or annotation the database cannot
    hold."""
    fingerprint = alert.fingerprint or label_fingerprint(alert.labels)
    fields = [("fingerprint", fingerprint)]
    fields += [(f"labels.{key}", value) for key, value in alert.labels.items() if key in _LABEL_LIMITS]
    fields += [
        (f"annotations.{key}", value)
        for key, value in alert.annotations.items()
        if key in _STORED_ANNOTATIONS
    ]
    for name, value in fields:
        limit = _LABEL_LIMITS.get(name.removeprefix("labels."))
        if limit is not None and len(value) > limit:
            raise AlertPayloadError(
                f"alerts.{index}.{name}: longer than {limit} characters; shorten it", "bad_alert"
            )
        if "\x00" in value:
            raise AlertPayloadError(
                f"alerts.{index}.{name}: contains a NUL character (\\u0000); remove it", "bad_alert"
            )
    alertname = alert.labels.get("alertname", "unnamed alert")
    summary = alert.annotations.get("summary")
    ends = alert.endsAt if alert.endsAt is not None and alert.endsAt > _ZERO_TIME else None
    return AlertUpdate(
        fingerprint=fingerprint,
        alertname=alertname,
        status=alert.status,
        title=f"{alertname}: {summary}" if summary else alertname,
        severity=alert.labels.get("severity"),
        service=alert.labels.get("service") or alert.labels.get("job"),
        starts_at=alert.startsAt.timestamp(),
        ends_at=ends.timestamp() if ends is not None and alert.status == "resolved" else None,
        runbook_url=alert.annotations.get("runbook_url"),
        description=alert.annotations.get("description"),
    )


def bearer_token(authorization: str | None) -> str | None:
    """The credentials of an `Authorization: Bearer …` header; the scheme's case does not matter
    (RFC 7235). None for any other scheme, or none."""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


class AlertReceiver:
    """`POST /hooks/alertmanager`: bearer-token checked, payload read, incidents updated."""

    def __init__(
        self,
        store: IncidentStore,
        token: str | None,
        clock: Callable[[], float] = time.time,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.store = store
        self.token = token
        self.clock = clock
        self.max_bytes = max_bytes

    def receive(
        self, authorization: str | None, body: bytes, declared_length: int | None = None
    ) -> tuple[int, dict[str, object]]:
        """The HTTP status and JSON body to answer with. `declared_length`: the request's Content-Length,
        when the server did not read a body over the limit."""
        if not self.token:
            return self._refused(
                503,
                "receiver_off",
                "the Alertmanager receiver is off: set STEWARD_ALERTMANAGER_TOKEN and use it as the "
                "webhook's bearer token (http_config.authorization.credentials)",
            )
        given = bearer_token(authorization) or ""
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return self._refused(401, "unauthorized", "missing or wrong bearer token")
        size = max(declared_length or 0, len(body))
        if size > self.max_bytes:
            return self._refused(413, "too_large", _too_large(size, self.max_bytes), stored=True)
        try:
            notification = read_notification(body, self.max_bytes)
        except AlertPayloadError as exc:
            return self._refused(400, exc.reason, str(exc), stored=True)
        rejected = [{"index": bad.index, "error": bad.error} for bad in notification.rejected]
        for bad in notification.rejected:
            log.warning("alert refused reason=bad_alert error=%r", bad.error)
        ALERTMANAGER_REJECTED.labels("bad_alert").inc(len(rejected))
        if notification.truncated:
            log.warning(
                "notification truncated by Alertmanager alerts_left_out=%d group_key=%r",
                notification.truncated,
                notification.group_key,
            )
            ALERTMANAGER_TRUNCATED.inc(notification.truncated)
        self.store.record_alerts(
            notification.updates,
            self.clock(),
            truncated=notification.truncated,
            rejected=len(rejected),
            group_key=notification.group_key,
        )
        if rejected and not notification.updates:  # nothing stored: Alertmanager logs this answer's error
            shown = "; ".join(bad.error for bad in notification.rejected[:_ERRORS_SHOWN])
            more = f" (and {len(rejected) - _ERRORS_SHOWN} more)" if len(rejected) > _ERRORS_SHOWN else ""
            error = f"alerts: none of the {len(rejected)} alerts could be read: {shown}{more}"
            log.warning("notification refused reason=no_valid_alert alerts=%d", len(rejected))
            return 400, {"error": error, "received": 0, "rejected": rejected}
        return 200, {
            "received": len(notification.updates),
            "rejected": rejected,
            "truncated": notification.truncated,
        }

    def _refused(
        self, status: int, reason: str, error: str, stored: bool = False
    ) -> tuple[int, dict[str, object]]:
        """A refusal: logged in one line, counted, and (with a valid token) noted for the digest."""
        log.warning("notification refused status=%d reason=%s error=%r", status, reason, error)
        ALERTMANAGER_REJECTED.labels(reason).inc()
        if stored:
            self.store.record_refused(f"{reason}: {error}", self.clock())
        return status, {"error": error}
