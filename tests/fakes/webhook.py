"""A loopback webhook receiver (real HTTP) that records each request and answers with scripted statuses."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]  # names in Title-Case, whatever the client sent
    body: bytes
    at: float = field(default_factory=time.monotonic)  # when it arrived

    def signature_is_valid(self, key: str) -> bool:
        """Verify X-Steward-Signature the way a receiver would: HMAC-SHA256 of "<timestamp>.<body>"."""
        timestamp = self.headers.get("X-Steward-Timestamp", "")
        expected = hmac.new(key.encode(), f"{timestamp}.".encode() + self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers.get("X-Steward-Signature", ""), f"v1={expected}")


class _Server(ThreadingHTTPServer):
    """The threaded loopback server; knows its receiver."""

    daemon_threads = True

    def __init__(self, receiver: WebhookReceiver) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.receiver = receiver


class _Handler(BaseHTTPRequestHandler):
    """Records a POST, waits if scripted to, and answers with the next scripted status."""

    server: _Server

    def do_POST(self) -> None:
        """Record, delay, reply."""
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        status, delay = self.server.receiver.record(
            ReceivedRequest(self.path, {name.title(): value for name, value in self.headers.items()}, body)
        )
        if delay and self.server.receiver.stopping.wait(delay):
            return
        reply = f'{{"status": {status}}}'.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and left; that was the point of the delay

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests read `requests`, not the log."""


class WebhookReceiver:
    """Answers request n with statuses[n] after delays[n] seconds; 200 at once when the script runs out."""

    def __init__(self, statuses: Sequence[int] = (200,), delays: Sequence[float] = ()) -> None:
        self.statuses = list(statuses)
        self.delays = list(delays)
        self.requests: list[ReceivedRequest] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02})

    @property
    def url(self) -> str:
        """The hook's URL on loopback."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def record(self, request: ReceivedRequest) -> tuple[int, float]:
        """Store the request; return the status and delay scripted for it."""
        with self._lock:
            index = len(self.requests)
            self.requests.append(request)
        status = self.statuses[index] if index < len(self.statuses) else 200
        delay = self.delays[index] if index < len(self.delays) else 0.0
        return status, delay

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
