"""POST a signed JSON payload to a webhook, retrying transient failures with the same idempotency key.

Receivers verify `X-Steward-Signature: v1=<hex>` as HMAC-SHA256 over `"<X-Steward-Timestamp>.<body>"`
with the shared key, reject stale timestamps, and deduplicate on `Idempotency-Key`. Every attempt
sends the same body and key; the timestamp and signature are fresh per attempt, so a retry after a
long backoff is not rejected as stale.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import tenacity

SIGNATURE_HEADER = "X-Steward-Signature"
TIMESTAMP_HEADER = "X-Steward-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
BACKOFF_SECONDS = 0.2  # doubled per retry: 0.2 s, 0.4 s, 0.8 s; someone in Slack is waiting
USER_AGENT = "Steward-webhook/1"
# What http.client refuses in a URL (its _contains_disallowed_url_pchar_re); httpx would percent-encode
# a space and send it, so the check is made here to refuse what urllib refused.
_DISALLOWED_URL_CHARACTER = re.compile("[\x00-\x20\x7f]")


@dataclass(frozen=True)
class Delivery:
    """How the POST ended: the last attempt's status or error, its body, and how many attempts it took."""

    ok: bool
    outcome: str  # "HTTP 200", "timed out after 5 s", "connection failed: …"
    host: str
    body: str
    attempts: int
    status: int | None


def canonical_body(payload: Mapping[str, Any]) -> bytes:
    """The JSON body: sorted keys, compact separators, so the same request always signs the same."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")


def sign(key: str, timestamp: int, body: bytes) -> str:
    """The signature header's value: `v1=` and the hex HMAC-SHA256 of `"<timestamp>.<body>"`."""
    message = f"{timestamp}.".encode() + body
    return "v1=" + hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest()


def is_retryable(status: int) -> bool:
    """Server errors and rate limits may pass on a later attempt; other client errors will not."""
    return status == 429 or status >= 500


def post_signed(
    url: str,
    payload: Mapping[str, Any],
    *,
    idempotency_key: str,
    key: str | None,
    timeout: float,
    retries: int,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> Delivery:
    """POST `payload` up to `retries + 1` times; retry on 5xx, 429, connection errors and timeouts."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"webhook URL must be http or https, not {parts.scheme!r}")
    body = canonical_body(payload)
    # Only the host is shown: paths and queries of webhook URLs often carry a token.
    host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    attempts = itertools.count(1)

    def attempt(client: httpx.Client) -> tuple[Delivery, bool]:
        """One POST, freshly timestamped and signed: how it ended, and whether another may pass."""
        number = next(attempts)
        timestamp = int(clock())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "identity",  # the body is read as sent, as urllib did: nothing to decode
            IDEMPOTENCY_HEADER: idempotency_key,
            TIMESTAMP_HEADER: str(timestamp),
        }
        if key is not None:
            headers[SIGNATURE_HEADER] = sign(key, timestamp, body)
        try:
            if disallowed := _DISALLOWED_URL_CHARACTER.search(url):
                raise httpx.InvalidURL(f"URL can't contain control characters (found {disallowed.group()!r})")
            response = client.post(url, content=body, headers=headers)
        except httpx.InvalidURL as error:
            outcome, retryable = f"invalid URL: {error}", False
        except httpx.TimeoutException:
            outcome, retryable = f"timed out after {timeout:g} s", True
        except httpx.TransportError as error:
            # Connection refused or reset, DNS, TLS, a broken response: the request may or may not
            # have arrived, which is exactly what the idempotency key is for.
            outcome, retryable = f"connection failed: {error}", True
        else:
            status, text = response.status_code, response.content.decode("utf-8", "replace")
            ok = 200 <= status < 300
            delivery = Delivery(ok, f"HTTP {status}", host, text or f"HTTP {status}", number, status)
            return delivery, not ok and is_retryable(status)
        return Delivery(False, outcome, host, outcome, number, None), retryable

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(retries + 1),
        wait=tenacity.wait_exponential(multiplier=BACKOFF_SECONDS, exp_base=2),  # 0.2 s, 0.4 s, 0.8 s
        retry=tenacity.retry_if_result(lambda ended: ended[1]),
        sleep=sleep,
    )
    # A redirect is an answer, never followed: it would re-send the POST (or a bodiless GET) wherever
    # it points. The system's CA store, as urllib used; the pool keeps the connection for a retry.
    with httpx.Client(timeout=timeout, follow_redirects=False, verify=ssl.create_default_context()) as client:
        try:
            delivery, _ = retrying(attempt, client)
        except tenacity.RetryError as exhausted:  # the last attempt failed too: report it
            delivery, _ = exhausted.last_attempt.result()
    return delivery
