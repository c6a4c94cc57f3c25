"""`steward serve`: HTTP mode (waitress, a threaded WSGI server) or Socket Mode.

HTTP mode answers Slack at `POST /slack/events` (events, commands, interactivity). Both modes serve
`GET /healthz` (alive), `GET /readyz` (database, index and Slack token checked), `GET /metrics`
(Prometheus) and Alertmanager's `POST /hooks/alertmanager`; in Socket Mode, /slack/events is not served
(nothing there would verify Slack's signatures).
"""

from __future__ import annotations

import gc
import io
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from types import FrameType
from typing import Any
from wsgiref.types import StartResponse

from bot.actions.runner import LEASE_SECONDS
from bot.answers.retrieval import IndexMissingError
from bot.digests.alertmanager import AlertReceiver
from bot.digests.config import load_digests
from bot.digests.drift_digest import knowledge_runbooks
from bot.digests.incidents import incident_runbooks
from bot.health import Readiness
from bot.logs import configure as configure_logs
from bot.metrics import ACK_SECONDS, SLACK_REQUESTS, exposition, watch_action_requests
from bot.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from bot.slack.app import SlackApp, SlackSetupError, build_app, credentials_message, missing_credentials
from bot.slack.audit import checkpoint_round
from bot.slack.digests import DigestPoster, start_scheduler
from bot.slack.forms import FormRequestHandler
from bot.slack.intake import guarded
from bot.store.actions import count_by_state
from bot.store.digests import DigestRuns, DriftHistory
from bot.store.incidents import IncidentStore
from bot.wiring import Services

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
) -> WSGIApp:
    """Route Slack's requests to Bolt and Alertmanager's to the receiver; /healthz, /readyz, /metrics."""
    bolt_handler = metered(guarded(FormRequestHandler(slack.bolt, path=EVENTS_PATH), slack.signing_secret))

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == EVENTS_PATH and not slack.socket_mode:  # in Socket Mode nothing here verifies signatures
            return bolt_handler(environ, start_response)
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
        if path == "/healthz":
            return _json(start_response, "200 OK", {"status": "ok"})
        return _json(start_response, "404 Not Found", {"error": f"no such endpoint: {path}"})

    return application


def _json(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


class HttpServer:
    """A waitress server around the Bolt app; `port=0` picks a free port."""

    def __init__(
        self,
        slack: SlackApp,
        host: str,
        port: int,
        threads: int = 8,
        alerts: AlertReceiver | None = None,
        readiness: Callable[[], tuple[bool, dict[str, str]]] | None = None,
    ) -> None:
        from waitress.server import create_server

        self.slack = slack
        self.server = create_server(
            wsgi_application(slack, alerts, readiness), host=host, port=port, threads=threads, ident="steward"
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


def install_stop_signals(stop: Callable[[], None]) -> None:
    """SIGTERM (and SIGINT) stop the server gracefully; only possible on the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(_signum: int, _frame: FrameType | None) -> None:
        log.info("stopping: finishing the answers in progress")
        stop()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run_socket_mode(slack: SlackApp, app_token: str) -> None:
    """Connect to Slack over Socket Mode (no public URL needed) and serve until stopped."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    handler = SocketModeHandler(slack.bolt, app_token)
    install_stop_signals(handler.close)
    try:
        handler.start()  # type: ignore[no-untyped-call]
    finally:
        slack.executor.shutdown(wait=True)


def warm_up(services: Services) -> None:
    """Load the model, the schema and the lexicon before the first question, not during it."""
    services.catalog.ensure_schema()
    services.conversations.ensure_schema()
    try:
        services.answers.ask("how do I roll back a model")
    except IndexMissingError as exc:
        log.warning("%s (until then, answers say the knowledge base is empty)", exc)


def start_housekeeping(slack: SlackApp, services: Services) -> threading.Thread:
    """Every STEWARD_HOUSEKEEPING_SECONDS: expire overdue requests (fail closed), report runs a dead process
    left behind, audit policy edits, answer the questions a dead replica acknowledged, and sign an audit
    checkpoint when one is due."""
    period = services.settings.housekeeping_seconds
    if slack.recovery is not None:
        slack.recovery.heartbeat()  # alive from the start: its first events are never taken over

    def questions() -> None:
        if slack.recovery is not None:
            slack.recovery.recover(slack.bolt.client, dead_after=3 * period)

    def requests() -> None:
        if slack.actions is not None:
            slack.actions.sweep(slack.bolt.client)
            # A run whose process stopped renewing its lease was interrupted; a live one renews it.
            slack.actions.recover(slack.bolt.client, LEASE_SECONDS)
            slack.actions.release_held(slack.bolt.client)
            slack.actions.run_stranded(slack.bolt.client, 3 * period)
            services.approvals.note_policy()  # an edited policy is audited even before it decides

    def audit() -> None:
        if slack.actions is not None:  # the audit log records guarded actions: signed every few minutes
            checkpoint_round(services.records, slack.bolt.client, services.settings.audit_channel)

    def loop() -> None:
        while True:
            time.sleep(period)
            # Each part on its own: a failure in one (Slack unreachable while taking over a question)
            # must not keep overdue requests from expiring.
            for part in (questions, requests, audit):
                try:
                    part()
                except Exception:
                    log.exception("housekeeping (%s) failed; trying again in %.0f s", part.__name__, period)

    thread = threading.Thread(target=loop, name="steward-housekeeping", daemon=True)
    thread.start()
    return thread


def start_digests(slack: SlackApp, services: Services) -> object | None:
    """The digest schedule of `STEWARD_DIGESTS_FILE` (none when the file is missing or broken: logged)."""
    settings = services.settings
    digests = DigestPoster(
        config=lambda: load_digests(settings.digests_file),
        runs=DigestRuns(services.records),
        poster=slack.conversations.poster,
        history=DriftHistory(services.records),
        policy=services.policy,
        catalog=lambda: services.catalog,
        incident_runbooks=incident_runbooks(lambda: services.retriever, settings.runbook_min_similarity),
        find_runbook=knowledge_runbooks(lambda: services.retriever),
    )
    return start_scheduler(
        digests, slack.bolt.client, settings.digests_file, settings.digest_misfire_grace_seconds
    )


def serve(services: Services, port: int | None = None, host: str | None = None) -> int:
    """`steward serve`: check credentials, warm up, then serve until stopped."""
    settings = services.settings
    missing = missing_credentials(settings)
    if missing:
        raise SlackSetupError(credentials_message(missing))
    configure_logs(settings.log_format)
    # Several workers each embed one short question at a time: one intra-op thread each avoids
    # oversubscribing the cores (PyTorch would otherwise start one thread per core for every call).
    import torch

    torch.set_num_threads(1)
    warm_up(services)
    # The model, index and catalog are long-lived: keep them out of the cyclic garbage collector's
    # full passes, which otherwise stall every thread (acknowledgements included) for 100+ ms.
    gc.collect()
    gc.freeze()
    slack = build_app(
        settings,
        lambda: services.answers,
        lambda: services.catalog,
        services.conversations,
        approvals=services.approvals,
        policy=services.policy,
        proposer=services.proposer,
    )
    start_housekeeping(slack, services)
    start_digests(slack, services)
    token = settings.alertmanager_token.get_secret_value() if settings.alertmanager_token else None
    alerts = AlertReceiver(IncidentStore(services.records), token, max_bytes=settings.alertmanager_max_bytes)
    watch_action_requests(lambda: count_by_state(services.records))
    readiness = Readiness(services, slack.bolt.client)
    server = HttpServer(
        slack,
        host or settings.host,
        settings.port if port is None else port,
        alerts=alerts,
        readiness=readiness.check,
    )
    if slack.socket_mode:  # the HTTP server only serves probes, metrics and Alertmanager's webhook
        assert settings.slack_app_token is not None
        threading.Thread(target=server.server.run, name="steward-http", daemon=True).start()
        print(f"steward: probes and metrics on http://{host or settings.host}:{server.port}", flush=True)
        print("steward: connecting to Slack in Socket Mode", flush=True)
        run_socket_mode(slack, settings.slack_app_token.get_secret_value())
        return 0
    print(f"steward: listening on http://{host or settings.host}:{server.port}{EVENTS_PATH}", flush=True)
    install_stop_signals(server.close)
    server.run()
    return 0
