"""Webhook bodies exactly as Alertmanager v0.27 sends them, written from its Go source, not from Steward.

The body is Alertmanager's `Message` (notify/webhook/webhook.go): the embedded `template.Data`
(template/template.go: receiver, status, alerts, groupLabels, commonLabels, commonAnnotations,
externalURL), then version "4", groupKey and truncatedAlerts (uint64), encoded by Go's
`json.NewEncoder(&buf).Encode(msg)`:

- struct fields in declaration order (an embedded struct's fields where it is embedded), map keys sorted;
- no spaces; non-ASCII text as UTF-8; `<`, `>`, `&`, U+2028 and U+2029 escaped as `\\u003c` … (Go's
  default HTML escaping); a newline at the end;
- times as Go's `time.Time` marshals them: RFC 3339 with nanoseconds, trailing zeros dropped, `Z` for
  UTC; a firing alert's endsAt is the zero time, "0001-01-01T00:00:00Z";
- each alert's `template.Alert`: status, labels, annotations, startsAt, endsAt, generatorURL, fingerprint
  (`Fingerprint().String()`: the label set's FNV-1a signature of prometheus/common model/signature.go,
  as 16 hexadecimal digits);
- the notification's status is "firing" when any alert fires (`types.Alerts.Status()`), commonLabels
  and commonAnnotations are the pairs every alert shares (`template.Data`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time, as Alertmanager sends a firing alert's endsAt


def signature(labels: Mapping[str, str]) -> int:
    """prometheus/common `LabelsToSignature`: FNV-1a 64 over sorted names, name and value each followed by
    the separator byte 255."""
    value = 14695981039346656037
    for name in sorted(labels):
        for byte in name.encode() + b"\xff" + labels[name].encode() + b"\xff":
            value = ((value ^ byte) * 1099511628211) % 2**64
    return value


def go_time(moment: dt.datetime) -> str:
    """Go's `time.Time.MarshalJSON` (RFC3339Nano) of an aware datetime, in UTC."""
    moment = moment.astimezone(dt.UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def alert(
    labels: Mapping[str, str],
    starts: dt.datetime,
    ends: dt.datetime | None = None,
    annotations: Mapping[str, str] | None = None,
    generator_url: str = "http://prometheus:9090/graph?g0.expr=up&g0.tab=1",
) -> dict[str, Any]:
    """One `template.Alert`: resolved when it has ended, else firing (endsAt the zero time)."""
    return {
        "status": "resolved" if ends is not None else "firing",
        "labels": dict(labels),
        "annotations": dict(annotations or {}),
        "startsAt": go_time(starts),
        "endsAt": go_time(ends) if ends is not None else ZERO_TIME,
        "generatorURL": generator_url,
        "fingerprint": f"{signature(labels):016x}",
    }


def _common(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    shared = dict(maps[0])
    for other in maps[1:]:
        shared = {key: value for key, value in shared.items() if other.get(key) == value}
    return shared


def message(
    alerts: Sequence[Mapping[str, Any]],
    group_labels: Mapping[str, str] | None = None,
    truncated: int = 0,
    receiver: str = "steward",
    external_url: str = "http://alertmanager:9093",
) -> dict[str, Any]:
    """One `webhook.Message`, its fields in Go's order."""
    if group_labels is None:  # grouped by alert name, as most routes are
        group_labels = {"alertname": alerts[0]["labels"]["alertname"]} if alerts else {}
    groups = dict(group_labels)
    pairs = ",".join(f'{name}="{value}"' for name, value in sorted(groups.items()))
    return {
        "receiver": receiver,
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "alerts": [dict(a) for a in alerts],
        "groupLabels": groups,
        "commonLabels": _common([a["labels"] for a in alerts]),
        "commonAnnotations": _common([a["annotations"] for a in alerts]),
        "externalURL": external_url,
        "version": "4",
        "groupKey": f"{{}}:{{{pairs}}}",
        "truncatedAlerts": truncated,
    }


_MAPS = ("labels", "annotations", "groupLabels", "commonLabels", "commonAnnotations")  # Go maps: sorted


def _ordered(struct: Mapping[str, Any]) -> dict[str, Any]:
    """A struct's fields in declaration order (as built above); its maps' keys sorted, as Go writes them."""
    fields: dict[str, Any] = {}
    for key, value in struct.items():
        if key in _MAPS:
            fields[key] = dict(sorted(value.items()))
        elif key == "alerts":
            fields[key] = [_ordered(item) for item in value]
        else:
            fields[key] = value
    return fields


def encode(value: Mapping[str, Any]) -> bytes:
    """Go's `json.NewEncoder(&buf).Encode(value)` of a message built here."""
    text = json.dumps(_ordered(value), ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return (text + "\n").encode()
