"""Signed callbacks: an agent that cannot poll names a callback URL, and Steward POSTs the request
there once it is final (approved and run, rejected, expired, cancelled, denied).

Delivery is an outbox in the records database: a request with a callback is `due` from the start and
is sent once it is final. Each attempt is claimed with a conditional update, so one replica sends it;
a failed attempt is retried with back-off (2, 4, 8 … seconds, at most `MAX_ATTEMPTS` attempts), then
recorded as `failed` in the audit log, as a delivery is.

The body is the request as `GET /api/v1/requests/{id}` returns it. Headers: `X-Steward-Timestamp`
(seconds) and `X-Steward-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`, keyed with the
SHA-256 (hex) of the agent's token: the agent computes the key from the token it holds, Steward from
the hash it keeps, and nobody else has either.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable

import httpx

from bot.agents.shapes import request_info
from bot.store.action_requests import ActionRequestStore
from bot.store.agents import AgentStore

log = logging.getLogger("steward.agents")

MAX_ATTEMPTS = 8
SIGNATURE_HEADER = "X-Steward-Signature"
TIMESTAMP_HEADER = "X-Steward-Timestamp"


def signature(key: str, timestamp: str, body: bytes) -> str:
    """The signature header's value for a body sent at `timestamp`, keyed with the token's SHA-256 hex."""
    mac = hmac.new(key.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


def verify(
    token: str, timestamp: str, body: bytes, header: str, *, now: float, tolerance: float = 300
) -> bool:
    """For the agent's side: whether a callback is Steward's (and recent), checked with its token."""
    try:
        fresh = abs(now - float(timestamp)) <= tolerance
    except ValueError:
        return False
    expected = signature(hashlib.sha256(token.encode()).hexdigest(), timestamp, body)
    return fresh and hmac.compare_digest(expected, header)


class CallbackSender:
    """Sends the callbacks that are due; safe to call from every replica at once."""

    def __init__(
        self,
        requests: ActionRequestStore,
        agents: AgentStore,
        clock: Callable[[], float] = time.time,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.requests = requests
        self.agents = agents
        self.clock = clock
        self.client = httpx.Client(timeout=timeout, follow_redirects=False, transport=transport)
        self._lock = threading.Lock()  # one round at a time in this process

    def __call__(self) -> None:
        """Send every callback that is due now."""
        with self._lock:
            for request_id, attempts in self.requests.callbacks_due(self.clock()):
                self._attempt(request_id, attempts)

    def _attempt(self, request_id: str, attempts: int) -> None:
        now = self.clock()
        if attempts >= MAX_ATTEMPTS:
            self.requests.end_callback(
                request_id, "failed", at=now, detail=f"gave up after {attempts} attempts"
            )
            return
        if not self.requests.claim_callback(request_id, attempts, retry_at=now + 2.0 ** (attempts + 1)):
            return  # another replica has this attempt
        view = self.requests.read(request_id)
        record = self.agents.by_name(view.agent) if view is not None and view.agent else None
        url = self.requests.callback_url(request_id)
        if view is None or record is None or url is None:
            self.requests.end_callback(
                request_id, "failed", at=now, detail="the request or its agent is gone"
            )
            return
        body = request_info(view, record.agent.name).model_dump_json().encode()
        stamp = str(int(now))
        try:
            response = self.client.post(
                url,
                content=body,
                headers={
                    "Content-Type": "application/json",
                    TIMESTAMP_HEADER: stamp,
                    SIGNATURE_HEADER: signature(record.token_hash, stamp, body),
                    "User-Agent": "steward-callbacks",
                },
            )
        except httpx.HTTPError as exc:
            log.warning(
                "callback failed request=%s attempt=%d error=%s", request_id, attempts + 1, type(exc).__name__
            )
            return
        if 200 <= response.status_code < 300:
            self.requests.end_callback(
                request_id, "delivered", at=self.clock(), detail=f"HTTP {response.status_code}"
            )
            log.info("callback delivered request=%s status=%d", request_id, response.status_code)
        else:
            log.warning(
                "callback refused request=%s attempt=%d status=%d",
                request_id,
                attempts + 1,
                response.status_code,
            )

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self.client.close()

    def start(self, period: float = 1.0) -> threading.Thread:
        """Send due callbacks every `period` seconds in a daemon thread (`steward serve`)."""

        def loop() -> None:
            while True:
                time.sleep(period)
                try:
                    self()
                except Exception:
                    log.exception("callback round failed; trying again in %.0f s", period)

        thread = threading.Thread(target=loop, name="steward-callbacks", daemon=True)
        thread.start()
        return thread
