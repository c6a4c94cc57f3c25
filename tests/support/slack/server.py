"""The fake Slack's HTTP side: a threaded server on loopback that hands each request to the fake."""

from __future__ import annotations

import contextlib
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import parse_qsl, urlsplit

JSON_ARGS = ("blocks", "attachments", "view", "metadata", "files", "prompts", "chunks", "loading_messages")
POLL_SECONDS = 0.02  # how soon serve_forever notices shutdown()


@dataclass
class Reply:
    """What the handler sends back: status, headers and body."""

    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] | None = None


def json_reply(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Reply:
    """A JSON reply."""
    return Reply(status=status, body=json.dumps(payload).encode("utf-8"), headers=headers)


class Serves(Protocol):
    """A server that serves until shut down from another thread (http.server's, websockets')."""

    def serve_forever(self, *args: Any) -> None: ...

    def shutdown(self) -> None: ...


S = TypeVar("S", bound=Serves)


class ServingThread(Generic[S]):
    """One server serving in a daemon thread: started, then shut down and its thread joined."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.server: S | None = None
        self._thread: threading.Thread | None = None

    def start(self, server: S, *args: Any) -> None:
        """Serve `server` (serve_forever(*args)) in a new daemon thread."""
        self.server = server
        self._thread = threading.Thread(target=server.serve_forever, args=args, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> S | None:
        """Shut the server down and wait for its thread; the server that was stopped, if any."""
        server, thread = self.server, self._thread
        self.server, self._thread = None, None
        if server is not None:
            server.shutdown()
        if thread is not None:
            thread.join(timeout=5)
        return server


class Answers(Protocol):
    """What the server asks of the fake: an answer to each kind of request."""

    def _handle_api(self, method: str, args: dict[str, Any], token: str | None) -> Reply: ...

    def _handle_response_url(self, path: str, raw: bytes, token: str | None) -> Reply: ...

    def _handle_upload(self, file_id: str, raw: bytes) -> Reply: ...


class LoopbackServer(ThreadingHTTPServer):
    """The threaded loopback server; knows its fake."""

    daemon_threads = True

    def __init__(self, fake: Answers, host: str) -> None:
        super().__init__((host, 0), _Handler)
        self.fake = fake


class _Handler(BaseHTTPRequestHandler):
    """Routes POST /api/<method> and POST /response/<name> to the FakeSlack."""

    server: LoopbackServer

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests do not want a line per request."""

    def do_POST(self) -> None:
        """Answer a Web API call or a response_url post."""
        self._dispatch()

    def do_GET(self) -> None:
        """Answer GET like POST (Slack accepts both; args then come from the query string)."""
        self._dispatch()

    def _dispatch(self) -> None:
        """Read the request, let the fake answer it, write the reply."""
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        auth = self.headers.get("Authorization") or ""
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        fake = self.server.fake
        if split.path.startswith("/api/"):
            args = parse_args(split.query, raw, content_type)
            reply = fake._handle_api(split.path.removeprefix("/api/"), args, token or args.get("token"))
        elif split.path.startswith("/response/"):
            reply = fake._handle_response_url(split.path, raw, token)
        elif split.path.startswith("/upload/"):
            reply = fake._handle_upload(split.path.removeprefix("/upload/"), raw)
        else:
            reply = json_reply(404, {"ok": False, "error": "not_found"})
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in (reply.headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)


def parse_args(query: str, raw: bytes, content_type: str) -> dict[str, Any]:
    """Merge query string and form or JSON body into one flat dict; decode JSON-valued form fields."""
    args: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    text = raw.decode("utf-8", errors="replace")
    if content_type == "application/json" and text.strip():
        try:
            body = json.loads(text)
        except json.JSONDecodeError:
            body = {"_raw_body": text}
        if isinstance(body, dict):
            args.update(body)
    elif content_type == "application/x-www-form-urlencoded" or (text and not content_type):
        args.update(parse_qsl(text, keep_blank_values=True))
    for key in JSON_ARGS:
        value = args.get(key)
        if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
            with contextlib.suppress(json.JSONDecodeError):
                args[key] = json.loads(value)
    return args
