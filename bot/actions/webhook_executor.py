"""POST a signed JSON payload to a webhook, retrying transient failures with the same idempotency key.

Receivers verify `X-Steward-Signature: v1=<hex>` as HMAC-SHA256 over `"<X-Steward-Timestamp>.<body>"`
with the shared key, reject stale timestamps, and deduplicate on `Idempotency-Key`. Every attempt
sends the same body and key; the timestamp and signature are fresh per attempt, so a retry after a
long backoff is not rejected as stale.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from typing import IO, Any
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-Steward-Signature"
TIMESTAMP_HEADER = "X-Steward-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
BACKOFF_SECONDS = 0.2  # doubled per retry: 0.2 s, 0.4 s, 0.8 s; someone in Slack is waiting
USER_AGENT = "Steward-webhook/1"


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


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Turns redirects into errors: urllib would re-send a POST as a bodiless GET to wherever it points."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        """Never follow."""
        return None


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
    opener = urllib.request.build_opener(_NoRedirects())
    # Only the host is shown: paths and queries of webhook URLs often carry a token.
    host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    attempt = 0
    while True:
        attempt += 1
        timestamp = int(clock())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            IDEMPOTENCY_HEADER: idempotency_key,
            TIMESTAMP_HEADER: str(timestamp),
        }
        if key is not None:
            headers[SIGNATURE_HEADER] = sign(key, timestamp, body)
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 (http(s) checked above)
        status: int | None
        retryable: bool
        try:
            with opener.open(request, timeout=timeout) as response:
                status, text = response.status, response.read().decode("utf-8", "replace")
            ok, retryable = 200 <= status < 300, False
            outcome = f"HTTP {status}"
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read().decode("utf-8", "replace")
            error.close()
            ok, retryable = False, is_retryable(error.code)
            outcome = f"HTTP {status}"
        except http.client.InvalidURL as error:
            status, text, ok, retryable = None, "", False, False
            outcome = f"invalid URL: {error}"
        except (OSError, http.client.HTTPException) as error:
            # Connection refused or reset, DNS, TLS and timeouts: the request may or may not have
            # arrived, which is exactly what the idempotency key is for.
            status, text, ok, retryable = None, "", False, True
            outcome = _describe(error, timeout)
        if ok or not retryable or attempt > retries:
            return Delivery(ok, outcome, host, text or outcome, attempt, status)
        sleep(BACKOFF_SECONDS * 2 ** (attempt - 1))


def _describe(error: BaseException, timeout: float) -> str:
    """A short reason for a failed connection."""
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, TimeoutError):
        return f"timed out after {timeout:g} s"
    return f"connection failed: {reason}"
