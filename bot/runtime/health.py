"""Readiness of one Steward process (`GET /readyz`): the records database, the knowledge index (catalog and
vectors) and the Slack token, each with a short reason. Liveness (`GET /healthz`) needs none of them.

An index that is simply empty is ready (answers say "run steward ingest"); an index that cannot be
read (a Chroma server that is down) is not. The token check calls Slack's auth.test at most once a
minute while it succeeds, and every 10 seconds otherwise. A token Slack rejects makes the replica not
ready; Slack's API being unreachable (or answering 5xx or 429) is reported as "unknown" and does not:
it is the same for every replica, and taking them all out of the load balancer would only stop the
probes, metrics and Alertmanager's webhook too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.wiring import Services

log = logging.getLogger("steward.health")

TOKEN_OK_SECONDS = 60.0
TOKEN_FAILED_SECONDS = 10.0


def _reason(exc: Exception) -> str:
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


@dataclass
class Readiness:
    """The checks behind /readyz."""

    services: Services
    client: WebClient | None = None  # None: no token check (the tests' and Socket Mode's choice)
    clock: Callable[[], float] = time.monotonic
    _token: tuple[float, bool, str] | None = field(default=None, init=False)  # checked at, ok, detail
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def check(self) -> tuple[bool, dict[str, str]]:
        """(ready, each check's "ok…" or "failed: …")."""
        checks = {"database": self._database(), "index": self._index()}
        if self.client is not None:
            checks["slack_token"] = self._slack_token(self.client)
        ready = not any(detail.startswith("failed") for detail in checks.values())  # "unknown" is ready
        if not ready:
            log.warning("not ready: %s", ", ".join(k for k, v in checks.items() if v.startswith("failed")))
        unknown = [f"{name} ({detail})" for name, detail in checks.items() if detail.startswith("unknown")]
        if unknown:
            log.warning("ready, but could not check: %s", ", ".join(unknown))
        return ready, checks

    def _database(self) -> str:
        records = self.services.records_engine  # reachable is enough; migrating is start-up's
        try:
            with records.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        except Exception as exc:
            return f"failed: {records.url.render_as_string(hide_password=True)}: {_reason(exc)}"
        return "ok"

    def _index(self) -> str:
        try:
            _documents, chunks = self.services.catalog.count()  # its tables exist once it is built
            vectors = self.services.vectors.count() if chunks else 0
        except Exception as exc:
            return f"failed: {_reason(exc)}"
        if not chunks:
            return "ok: empty (run `steward ingest`)"
        return f"ok: {chunks} chunks, {vectors} vectors"

    def _slack_token(self, client: WebClient) -> str:
        with self._lock:
            now = self.clock()
            if self._token is not None:
                at, ok, detail = self._token
                if now - at < (TOKEN_OK_SECONDS if ok else TOKEN_FAILED_SECONDS):
                    return detail
            try:
                client.auth_test()
                ok, detail = True, "ok"
            except SlackApiError as exc:
                error = exc.response.get("error")
                if exc.response.status_code >= 500 or exc.response.status_code == 429 or not error:
                    ok, detail = False, f"unknown: the Slack Web API answered HTTP {exc.response.status_code}"
                elif error in ("ratelimited", "fatal_error", "internal_error", "service_unavailable"):
                    ok, detail = False, f"unknown: the Slack Web API is not answering (auth.test: {error})"
                else:
                    ok, detail = False, f"failed: Slack rejected the token (auth.test: {error})"
            except Exception as exc:
                ok, detail = False, f"unknown: cannot reach the Slack Web API ({_reason(exc)})"
            self._token = (now, ok, detail)
            return detail
