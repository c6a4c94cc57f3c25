"""Slack's Socket Mode WebSocket endpoint, faked on loopback with the `websockets` sync server.

Like Slack, it greets every client with a `hello`, lets the test push envelopes, and records what the
client sends back (acknowledgements: `{"envelope_id": ..., "payload": ...}`).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

from tests.support.slack.server import ServingThread

CLOSE_TIMEOUT = 2.0  # how long shutdown waits for a client's close frame


class FakeSocketModeServer:
    """A WebSocket server on 127.0.0.1 that speaks Slack's Socket Mode envelopes."""

    def __init__(self, app_id: str = "A0FAKE") -> None:
        self.app_id = app_id
        self._condition = threading.Condition(threading.Lock())
        self._send_lock = threading.Lock()
        self._connections: list[ServerConnection] = []
        self._paths: list[str] = []
        self._received: list[dict[str, Any]] = []
        self._serving: ServingThread[Server] = ServingThread("fake-socket-mode")

    # lifecycle

    def start(self) -> None:
        """Bind a free loopback port and serve in a daemon thread."""
        if self._serving.server is None:
            # No compression: Slack's builtin client does not offer permessage-deflate anyway.
            self._serving.start(
                serve(self._serve, "127.0.0.1", 0, compression=None, close_timeout=CLOSE_TIMEOUT)
            )

    def stop(self) -> None:
        """Close open connections (code 1001, like a Slack server going away) and the listening socket."""
        self._serving.stop()

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._serving.server is not None

    @property
    def url(self) -> str:
        """The WebSocket URL without a ticket, e.g. ws://127.0.0.1:PORT/link/."""
        server = self._serving.server
        if server is None:
            raise RuntimeError("the Socket Mode server is not running")
        return f"ws://127.0.0.1:{server.socket.getsockname()[1]}/link/"

    # the test's side

    def wait_for_clients(self, count: int = 1, timeout: float = 5.0) -> int:
        """Block until at least `count` clients are connected (and greeted); return how many are."""
        with self._condition:
            if not self._condition.wait_for(lambda: len(self._connections) >= count, timeout=timeout):
                raise AssertionError(
                    f"expected {count} Socket Mode client(s) within {timeout}s, "
                    f"got {len(self._connections)}; connections opened so far: {len(self._paths)}"
                )
            return len(self._connections)

    def send(self, message: dict[str, Any], timeout: float = 5.0) -> int:
        """Send a JSON message to each connected client (waiting up to `timeout` for one); return how many."""
        self.wait_for_clients(1, timeout)
        with self._condition:
            connections = list(self._connections)
        text = json.dumps(message)
        sent = 0
        with self._send_lock:
            for connection in connections:
                try:
                    connection.send(text)
                except ConnectionClosed:
                    continue
                sent += 1
        if not sent:
            raise AssertionError("no Socket Mode client was connected to receive the message")
        return sent

    def close_connections(self, code: int = 1001, reason: str = "") -> None:
        """Close every open connection, as Slack does when it rotates servers; the server keeps listening."""
        with self._condition:
            connections = list(self._connections)
        for connection in connections:
            connection.close(code, reason)

    def received(self) -> list[dict[str, Any]]:
        """Every message the clients sent, oldest first (non-JSON text as {"_raw": text})."""
        with self._condition:
            return [dict(message) for message in self._received]

    def acks(self, envelope_id: str | None = None) -> list[dict[str, Any]]:
        """Acknowledgements received, oldest first, optionally only those of one envelope."""
        return [
            message
            for message in self.received()
            if "envelope_id" in message and (envelope_id is None or message["envelope_id"] == envelope_id)
        ]

    def wait_for_ack(self, envelope_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """Block until the acknowledgement of `envelope_id` arrived; return it."""

        def matching() -> list[dict[str, Any]]:
            return [m for m in self._received if m.get("envelope_id") == envelope_id]

        with self._condition:
            if self._condition.wait_for(lambda: bool(matching()), timeout=timeout):
                return dict(matching()[0])
            seen = Counter(str(m.get("envelope_id", m.get("type", "?"))) for m in self._received)
        raise AssertionError(
            f"no acknowledgement of envelope {envelope_id} within {timeout}s; "
            f"received so far: {dict(seen) or 'nothing'}"
        )

    def paths(self) -> list[str]:
        """Request paths (with the ticket query) of every connection opened so far."""
        with self._condition:
            return list(self._paths)

    # the connection handler (one thread per client)

    def _serve(self, connection: ServerConnection) -> None:
        """Greet the client, then record everything it sends until it goes away."""
        with self._condition:
            greeting = self._hello(len(self._connections) + 1)
        with self._send_lock:
            connection.send(json.dumps(greeting))
        path = connection.request.path if connection.request is not None else ""
        with self._condition:
            self._connections.append(connection)
            self._paths.append(path)
            self._condition.notify_all()
        try:
            for message in connection:
                text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
                with self._condition:
                    self._received.append(_parse(text))
                    self._condition.notify_all()
        except ConnectionClosed:
            pass  # Slack's client closes the TCP socket without a close frame
        finally:
            with self._condition:
                self._connections.remove(connection)
                self._condition.notify_all()

    def _hello(self, num_connections: int) -> dict[str, Any]:
        """The message Slack sends first on every connection."""
        return {
            "type": "hello",
            "num_connections": num_connections,
            "debug_info": {
                "host": "applink-fake-1",
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": self.app_id},
        }


def _parse(text: str) -> dict[str, Any]:
    """A received message as a dict."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {"_raw": text}
    return value if isinstance(value, dict) else {"_raw": text}
