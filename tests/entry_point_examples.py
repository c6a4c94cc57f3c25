"""Python-executor entry points whose signatures `steward policy check` compares with the catalog."""

from __future__ import annotations

from typing import Any


def toggle_with_other_names(*, flag: str, traffic: int, environment: str = "prod", request_id: str) -> str:
    """Reads `traffic` and `environment` where the catalog says `traffic_percent` and `env`."""
    return f"{flag} {traffic} {environment} {request_id}"


def toggle_by_name(*, flag: str, traffic_percent: int = 100, env: str = "prod", request_id: str) -> str:
    """Takes exactly the catalog's parameters by name."""
    return f"{flag} {traffic_percent} {env} {request_id}"


def toggle_with_reason(*, flag: str, reason: str, request_id: str) -> str:
    """Requires `reason`, which the catalog makes optional without a default."""
    return f"{flag} {reason} {request_id}"


def anything(*, request_id: str, **params: Any) -> str:
    """Takes any parameter by name."""
    return f"{sorted(params)} {request_id}"


def params_only(params: dict[str, Any]) -> str:
    """Cannot take the request id."""
    return str(params)
