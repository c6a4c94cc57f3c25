"""The HTTP side of `steward serve` (waitress, a threaded WSGI server).

HTTP mode answers Slack at `POST /slack/events` (events, commands, interactivity). Both modes serve
`GET /healthz` (alive), `GET /readyz` (database, index and Slack token checked), `GET /metrics`
(Prometheus), Alertmanager's `POST /hooks/alertmanager` and, when they are given, the agent API under
`/api/v1` (bot/runtime/api.py) and the MCP endpoint at `/mcp` (bot/runtime/mcp_http.py); in Socket Mode,
/slack/events is not served (nothing there would verify Slack's signatures).
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from wsgiref.types import StartResponse

from bot.agents.models import API_PREFIX, MCP_PATH
from bot.incidents.alertmanager import AlertReceiver
from bot.metrics import ACK_SECONDS, SLACK_REQUESTS, exposition
from bot.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from bot.slack.app import SlackApp
from bot.slack.forms import FormRequestHandler
from bot.slack.intake import guarded

if TYPE_CHECKING:
    from bot.runtime.mcp_http import McpEndpoint

log = logging.getLogger("steward.slack")

EVENTS_PATH = "/slack/events"
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


ALERTMANAGER_PATH = "/hooks/alertmanager"


def _kind(body: bytes) -> str:
    """What Slack sent, for /metrics: an event, a slash command, an interaction, or something else."""
    if body.startswith(b"{"):
        return "event"
    if body.startswith(b"payload=") or b"&payload=" in body:
        return "interaction"
    if b"command=" in body:
        return "command"
    return "other"


def metered(handler: WSGIApp) -> WSGIApp:
    """Count Slack's requests by kind and status, and time each one to its response (the acknowledgement)."""

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        environ["wsgi.input"] = io.BytesIO(body)
        status: list[str] = []

        def recording(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status.append(code.split(" ", 1)[0])
            return start_response(code, headers, exc_info) if exc_info else start_response(code, headers)

        kind = _kind(body)
        try:
            response = list(handler(environ, recording))
        except Exception:  # the server answers 500 (and logs the traceback): counted all the same
            SLACK_REQUESTS.labels(kind, "500").inc()
            raise
        SLACK_REQUESTS.labels(kind, status[0] if status else "none").inc()
        ACK_SECONDS.labels(kind).observe(time.perf_counter() - started)
        return response

    return application


def wsgi_application(
    slack: SlackApp,
    alerts: AlertReceiver | None = None,
    readiness: Callable[[], tuple[bool, dict[str, str]]] | None = None,
    mcp: WSGIApp | None = None,
    api: WSGIApp | None = None,
) -> WSGIApp:
    """Route Slack's requests to Bolt and Alertmanager's to the receiver, agents' MCP requests to `mcp`
    (bot/runtime/mcp_http.py) and to the agent API (`api`, under /api/v1); /healthz, /readyz, /metrics."""
    bolt_handler = metered(guarded(FormRequestHandler(slack.bolt, path=EVENTS_PATH), slack.signing_secret))

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == EVENTS_PATH and not slack.socket_mode:  # in Socket Mode nothing here verifies signatures
            return bolt_handler(environ, start_response)
        if api is not None and (path == API_PREFIX or path.startswith(API_PREFIX + "/")):
            return api(environ, start_response)
        if path == "/metrics":
            data = exposition()
            start_response(
                "200 OK", [("Content-Type", METRICS_CONTENT_TYPE), ("Content-Length", str(len(data)))]
            )
            return [data]
        if path == "/readyz":
            ready, checks = readiness() if readiness is not None else (True, {})
            return _json(
                start_response,
                "200 OK" if ready else "503 Service Unavailable",
                {"status": "ready" if ready else "not ready", "checks": checks},
            )
        if path == ALERTMANAGER_PATH and alerts is not None:
            if environ.get("REQUEST_METHOD") != "POST":
                return _json(
                    start_response, "405 Method Not Allowed", {"error": "POST Alertmanager's webhook here"}
                )
            try:
                declared = max(int(environ.get("CONTENT_LENGTH") or 0), 0)
            except ValueError:
                declared = 0
            # a body over the limit is not read: the receiver answers 413 with its declared size
            body = environ["wsgi.input"].read(declared) if 0 < declared <= alerts.max_bytes else b""
            status, reply = alerts.receive(environ.get("HTTP_AUTHORIZATION"), body, declared)
            return _json(start_response, f"{status} {HTTPStatus(status).phrase}", reply)
        if path == MCP_PATH and mcp is not None:
            return mcp(environ, start_response)
        if path == "/healthz":
            return _json(start_response, "200 OK", {"status": "ok"})
        return _json(start_response, "404 Not Found", {"error": f"no such endpoint: {path}"})

    return application


def _json(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


class HttpServer:
    """A waitress server around the Bolt app (and /mcp when given, closed with the server); `port=0` picks a
    free port. Each request holds one of its `threads` until it is answered, an agent's long-poll for as long
    as it waits: STEWARD_HTTP_THREADS leaves threads to spare for Slack."""

    def __init__(
        self,
        slack: SlackApp,
        host: str,
        port: int,
        threads: int = 8,
        alerts: AlertReceiver | None = None,
        readiness: Callable[[], tuple[bool, dict[str, str]]] | None = None,
        mcp: McpEndpoint | None = None,
        api: WSGIApp | None = None,
    ) -> None:
        from waitress.server import create_server

        self.slack = slack
        self.mcp = mcp
        self.server = create_server(
            wsgi_application(slack, alerts, readiness, mcp=mcp, api=api),
            host=host,
            port=port,
            threads=threads,
            ident="steward",
        )

    @property
    def port(self) -> int:
        """The port actually bound."""
        return int(self.server.effective_port)

    def run(self) -> None:
        """Serve until closed (SIGTERM and Ctrl-C close it); in-flight answers finish first."""
        try:
            self.server.run()
        finally:
            if self.mcp is not None:
                self.mcp.close()
            self.slack.executor.shutdown(wait=True)

    def close(self) -> None:
        """Stop accepting requests: closed by the serving thread itself (woken through waitress's trigger),
        since closing its sockets under a running select() fails that select. When the trigger itself is
        gone (its pipe already closed), the sockets are closed directly: the server is stopping anyway."""
        try:
            self.server.trigger.pull_trigger(self.server.close)
        except OSError as exc:
            log.warning("server closed without its trigger error=%s", exc.strerror or type(exc).__name__)
            self.server.close()
