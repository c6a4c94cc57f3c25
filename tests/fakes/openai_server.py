"""A scripted OpenAI-compatible chat-completions server on loopback (real HTTP), for the real client.

It speaks `POST /v1/chat/completions` as the OpenAI API documents it: a `chat.completion` JSON object,
or with `"stream": true` a `text/event-stream` of `chat.completion.chunk` objects (`choices[].delta`,
`finish_reason` on the last one) ending with `data: [DONE]`. Errors are JSON `{"error": {...}}` bodies
with the API's status codes. Every request is recorded, so tests can check what the client sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

ERRORS = {
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to use this model.", "invalid_request_error", "permission_denied"),
    404: ("The model does not exist.", "invalid_request_error", "model_not_found"),
    429: ("Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request.", "server_error", None),
    503: ("The engine is currently overloaded.", "server_error", None),
}


@dataclass(frozen=True)
class ChatRequest:
    """One request the server received: path, headers (lower-case names), JSON body, monotonic time."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float

    @property
    def bearer(self) -> str | None:
        """The API key sent as `Authorization: Bearer KEY`."""
        value = self.headers.get("authorization", "")
        return value.removeprefix("Bearer ") if value.startswith("Bearer ") else None

    @property
    def prompt(self) -> str:
        """Every message's text, joined (to look for the passages and the question)."""
        parts = []
        for message in self.body.get("messages", []):
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
            parts.append(str(content))
        return "\n".join(parts)


@dataclass
class _Script:
    """What the next requests get."""

    reply: str = "Roll back with the alias [1]."
    pieces: list[str] | None = None  # the streamed deltas (default: the reply word by word)
    status: int = 200
    gate: threading.Event | None = None  # answer only once set (never set: the server hangs)
    pause_stream_after: int | None = None  # streamed deltas sent before waiting for `stream_gate`
    stream_gate: threading.Event = field(default_factory=threading.Event)


class FakeOpenAI:
    """`with FakeOpenAI() as server:` serves on 127.0.0.1 (port 0); give clients `server.base_url`."""

    def __init__(self) -> None:
        self.requests: list[ChatRequest] = []
        self._script = _Script()
        self._lock = threading.Condition()
        self._gates: list[threading.Event] = []
        self._closing = threading.Event()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.02,), daemon=True)

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL (ends in /v1), for `STEWARD_LLM_BASE_URL`."""
        return f"http://127.0.0.1:{self._http.server_address[1]}/v1"

    # -- scripting -------------------------------------------------------------------------------

    def answer(self, text: str, pieces: list[str] | None = None) -> None:
        """Reply `text` (streamed as `pieces`, default word by word) from now on."""
        with self._lock:
            self._script = _Script(reply=text, pieces=pieces)

    def fail(self, status: int) -> None:
        """Answer every request with this HTTP status and the API's error body."""
        with self._lock:
            self._script = _Script(status=status)

    def hang(self) -> threading.Event:
        """Read each request and answer nothing until the returned event is set (or the server closes)."""
        gate = self._new_gate()
        with self._lock:
            self._script.gate = gate
        return gate

    def pause_stream(self, after: int) -> threading.Event:
        """Send `after` streamed deltas, then wait for the returned event before sending the rest."""
        gate = self._new_gate()
        with self._lock:
            self._script.pause_stream_after = after
            self._script.stream_gate = gate
        return gate

    def _new_gate(self) -> threading.Event:
        gate = threading.Event()
        with self._lock:
            self._gates.append(gate)
        return gate

    # -- observing -------------------------------------------------------------------------------

    def wait_for_requests(self, count: int = 1, timeout: float = 30.0) -> list[ChatRequest]:
        """The first `count` requests, once they have arrived (AssertionError after `timeout` s)."""
        with self._lock:
            arrived = self._lock.wait_for(lambda: len(self.requests) >= count, timeout=timeout)
            assert arrived, f"{len(self.requests)} request(s) arrived, expected {count}"
            return list(self.requests[:count])

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release held requests (they get no answer), stop serving and close the socket."""
        self._closing.set()
        with self._lock:
            for gate in self._gates:
                gate.set()
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=10)

    def _record(self, request: ChatRequest) -> _Script:
        with self._lock:
            self.requests.append(request)
            self._lock.notify_all()
            return self._script


def _handler(server: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: tests read `server.requests` instead."""

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                body = {}
            request = ChatRequest(
                path=self.path,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
                at=time.monotonic(),
            )
            script = server._record(request)
            if script.gate is not None:
                script.gate.wait()
                if server._closing.is_set():
                    self.close_connection = True
                    return
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._error(404)
            elif script.status != 200:
                self._error(script.status)
            elif body.get("stream"):
                self._stream(body, script)
            else:
                self._json(200, _completion(body, script.reply))

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int) -> None:
            message, kind, code = ERRORS.get(status, ("Error.", "server_error", None))
            self._json(status, {"error": {"message": message, "type": kind, "param": None, "code": code}})

        def _stream(self, body: dict[str, Any], script: _Script) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            for number, event in enumerate(_chunks(body, script, usage)):
                if script.pause_stream_after is not None and number == script.pause_stream_after + 1:
                    script.stream_gate.wait()  # +1: the first event carries the role only
                    if server._closing.is_set():
                        self.close_connection = True
                        return
                self._send_chunk(f"data: {event}\n\n".encode())
            self._send_chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _send_chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    return Handler


def _usage(body: dict[str, Any], reply: str) -> dict[str, int]:
    prompt = sum(len(str(message.get("content", "")).split()) for message in body.get("messages", []))
    completion = len(reply.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _completion(body: dict[str, Any], reply: str) -> dict[str, Any]:
    """A `chat.completion` object."""
    return {
        "id": "chatcmpl-fake-1",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(body, reply),
    }


def _chunks(body: dict[str, Any], script: _Script, usage: bool) -> Iterator[str]:
    """The `chat.completion.chunk` events of a streamed reply, as JSON text."""
    created = int(time.time())

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
        return json.dumps(
            {
                "id": "chatcmpl-fake-1",
                "object": "chat.completion.chunk",
                "created": created,
                "model": body.get("model", ""),
                "system_fingerprint": "fp_fake",
                "choices": choices,
                **extra,
            }
        )

    pieces = script.pieces if script.pieces is not None else _words(script.reply)
    yield chunk(
        [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}]
    )
    for piece in pieces:
        yield chunk([{"index": 0, "delta": {"content": piece}, "logprobs": None, "finish_reason": None}])
    yield chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}])
    if usage:  # with stream_options.include_usage, a last chunk with no choices carries the usage
        yield chunk([], usage=_usage(body, script.reply))


def _words(text: str) -> list[str]:
    """`text` cut after each space, so the pieces join back to exactly `text`."""
    pieces, start = [], 0
    for index, char in enumerate(text):
        if char == " ":
            pieces.append(text[start : index + 1])
            start = index + 1
    if start < len(text):
        pieces.append(text[start:])
    return pieces
