"""`steward serve`: HTTP mode (waitress) or Socket Mode, with housekeeping, the digest schedule and the
probes (bot/runtime/http.py serves them)."""

from __future__ import annotations

import gc
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from bot.answers.retrieval import IndexMissingError
from bot.logs import configure as configure_logs
from bot.metrics import watch_action_requests
from bot.runtime.health import Readiness
from bot.runtime.housekeeping import start_housekeeping
from bot.runtime.http import EVENTS_PATH, HttpServer
from bot.runtime.scheduling import start_scheduler
from bot.slack.app import SlackApp, SlackSetupError, credentials_message, missing_credentials
from bot.store.action_requests import count_by_state
from bot.wiring import Services

log = logging.getLogger("steward.slack")


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
    services.migrate()
    try:
        services.answers.ask("how do I roll back a model")
    except IndexMissingError as exc:
        log.warning("%s (until then, answers say the knowledge base is empty)", exc)


def start_digests(slack: SlackApp, services: Services) -> object | None:
    """The digest schedule of `STEWARD_DIGESTS_FILE` (none when the file is missing or broken: logged)."""
    settings = services.settings
    digests = services.digest_poster(slack.conversations.poster)
    client = slack.bolt.client
    return start_scheduler(
        lambda name, when: digests.fire(client, name, when),
        settings.digests_file,
        settings.digest_misfire_grace_seconds,
    )


def agent_endpoints(services: Services) -> dict[str, Any]:
    """The agent API (/api/v1) and the MCP endpoint (/mcp), both over the agent gateway, authenticated
    with the agents' tokens on every call."""
    from bot.runtime.api import AgentApi
    from bot.runtime.mcp_http import McpEndpoint

    registry, gateway = services.agent_registry, services.agent_gateway
    return {
        "api": AgentApi(registry, gateway.for_agent),
        "mcp": McpEndpoint(registry, gateway.for_agent),
    }


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
    slack = services.slack_app
    start_housekeeping(slack, services)
    start_digests(slack, services)
    alerts = services.alerts
    watch_action_requests(lambda: count_by_state(services.records))
    readiness = Readiness(services, slack.bolt.client)
    server = HttpServer(
        slack,
        host or settings.host,
        settings.port if port is None else port,
        threads=settings.http_threads,
        alerts=alerts,
        readiness=readiness.check,
        **agent_endpoints(services),
    )
    services.callbacks.start(settings.agent_callback_seconds)
    app_token = settings.slack_app_token
    if slack.socket_mode and app_token is not None:  # socket_mode: the app token is set (build_app)
        # The HTTP server only serves probes, metrics and Alertmanager's webhook.
        threading.Thread(target=server.server.run, name="steward-http", daemon=True).start()
        print(f"steward: probes and metrics on http://{host or settings.host}:{server.port}", flush=True)
        print("steward: connecting to Slack in Socket Mode", flush=True)
        run_socket_mode(slack, app_token.get_secret_value())
        return 0
    print(f"steward: listening on http://{host or settings.host}:{server.port}{EVENTS_PATH}", flush=True)
    install_stop_signals(server.close)
    server.run()
    return 0
