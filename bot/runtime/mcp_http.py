"""/mcp on `steward serve`: the MCP server's streamable-HTTP transport behind the WSGI server.

The SDK's transport (`StreamableHTTPSessionManager`) is ASGI and lives inside its `run()` context, while
`steward serve` is waitress (threads, WSGI). So one asyncio event loop runs in a daemon thread with that
context entered, and each WSGI request is handed to it (`run_coroutine_threadsafe`): the worker thread
waits for the status, headers and body the ASGI app sends. The manager is stateless and answers each
POST with one JSON body, so any replica can serve any request and no session outlives its request; the
SSE stream of `GET /mcp` is not offered (405, as the SDK answers a stateless-era GET).

The bearer token is checked (`Authenticator`) before anything reaches the SDK; the agent's backend
travels to the tool handlers in a context variable set in the request's task.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import threading
from collections.abc import Callable, Iterable, MutableMapping
from concurrent.futures import CancelledError as FutureCancelled
from concurrent.futures import TimeoutError as FutureTimeout
from http import HTTPStatus
from typing import Any
from wsgiref.types import StartResponse

from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from bot.agents.mcp_server import PROGRESS_EVERY, build_server
from bot.agents.models import MAX_WAIT_SECONDS, Agent, ApiError, Authenticator, StewardBackend
from bot.runtime.api import MAX_BODY_BYTES as API_MAX_BODY_BYTES

log = logging.getLogger("steward.mcp")

MAX_BODY_BYTES = API_MAX_BODY_BYTES  # what the agent API takes (a tool call carries the same request)
ANSWER_WITHIN = MAX_WAIT_SECONDS + 30.0  # the longest get_request wait plus the backend's own time
START_WITHIN = 10.0
STOPPING = "Steward is stopping; send it again (another replica answers)"


class McpEndpoint:
    """The WSGI app of /mcp: authenticates the agent, then lets the MCP SDK answer on its event loop.
    `close()` stops the loop (the server calls it when it stops)."""

    def __init__(
        self,
        authenticate: Authenticator,
        backend_for: Callable[[Agent], StewardBackend],
        answer_within: float = ANSWER_WITHIN,
        progress_every: float = PROGRESS_EVERY,
    ) -> None:
        self.authenticate = authenticate
        self.backend_for = backend_for
        self.answer_within = answer_within
        self._backend: contextvars.ContextVar[StewardBackend] = contextvars.ContextVar("steward_mcp_backend")
        server = build_server(self._backend.get, progress_every)
        self.manager = StreamableHTTPSessionManager(app=server, json_response=True, stateless=True)
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._closing = False
        self._in_flight: set[asyncio.Task[Any]] = set()  # the requests being answered (the loop's thread)
        self._started = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="steward-mcp", daemon=True)
        self._thread.start()
        if not self._started.wait(START_WITHIN) or self._failure is not None:
            raise RuntimeError(f"the MCP endpoint did not start: {self._failure!r}")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to the constructor, which is waiting for the start
            self._failure = exc
            self._started.set()
            log.exception("the MCP endpoint stopped")
        finally:
            # requests still in flight are cancelled: their WSGI threads answer 503 at once
            unfinished = asyncio.all_tasks(self._loop)
            for task in unfinished:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*unfinished, return_exceptions=True))
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with self.manager.run():
            self._started.set()
            await self._stop.wait()
            # before the SDK's tasks go: the requests in flight are cancelled, so each answers 503
            for task in self._in_flight:
                task.cancel()
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    def close(self) -> None:
        """Stop serving: exit the SDK's run() context (cancelling what is in flight) and the loop's thread."""
        self._closing = True
        stop = self._stop
        if stop is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop has closed meanwhile
                self._loop.call_soon_threadsafe(stop.set)
        self._thread.join(START_WITHIN)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Answer one HTTP request to /mcp."""
        try:
            agent = self.authenticate(environ.get("HTTP_AUTHORIZATION"))
        except ApiError as exc:
            headers = [("WWW-Authenticate", "Bearer")] if exc.status == 401 else []
            return _json(start_response, exc.status, exc.body(), headers)
        if environ.get("REQUEST_METHOD") != "POST":
            return _json(
                start_response,
                405,
                _rpc_error("Method Not Allowed: this endpoint is stateless; POST JSON-RPC messages"),
                [("Allow", "POST")],
            )
        try:
            declared = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = -1
        if not 0 <= declared <= MAX_BODY_BYTES:
            return _json(start_response, 413, _rpc_error(f"the body must be 0 to {MAX_BODY_BYTES} bytes"))
        body = environ["wsgi.input"].read(declared) if declared else b""
        if self._closing:
            return _json(start_response, 503, _rpc_error(STOPPING))
        respond = self._respond(_scope(environ), body, self.backend_for(agent))
        try:
            future = asyncio.run_coroutine_threadsafe(respond, self._loop)
        except RuntimeError:  # the loop is closed: the server is stopping
            respond.close()
            return _json(start_response, 503, _rpc_error(STOPPING))
        try:
            status, headers, content = future.result(self.answer_within)
        except FutureTimeout:
            future.cancel()
            log.warning("an MCP request took longer than %.0f s agent=%s", self.answer_within, agent.name)
            return _json(start_response, 504, _rpc_error("Steward took too long to answer; try again"))
        except FutureCancelled:  # close() while it was in flight
            return _json(start_response, 503, _rpc_error(STOPPING))
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [content]

    async def _respond(
        self, scope: dict[str, Any], body: bytes, backend: StewardBackend
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Run the SDK's ASGI app for one request (in the loop's thread) and collect its response."""
        self._backend.set(backend)  # this task's context: the handlers' tasks inherit it
        task = asyncio.current_task()
        tracked = {task} if task is not None else set()  # always one: run_coroutine_threadsafe made it
        self._in_flight |= tracked
        try:
            return await self._asgi(scope, body)
        finally:
            self._in_flight -= tracked

    async def _asgi(self, scope: dict[str, Any], body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        """The SDK's answer to one request: its status, headers and body."""
        answered = asyncio.Event()
        pending = [{"type": "http.request", "body": body, "more_body": False}]
        status = 500
        headers: list[tuple[str, str]] = []
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            if pending:
                return pending.pop()
            await answered.wait()  # the client stays connected until the whole answer is sent
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers.extend(
                    (key.decode("latin-1"), value.decode("latin-1")) for key, value in message["headers"]
                )
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    answered.set()

        await self.manager.handle_request(scope, receive, send)
        answered.set()
        return status, headers, b"".join(chunks)


def _scope(environ: dict[str, Any]) -> dict[str, Any]:
    """The ASGI scope of a WSGI request."""
    headers = [
        (key[5:].replace("_", "-").lower().encode("latin-1"), str(value).encode("latin-1"))
        for key, value in environ.items()
        if key.startswith("HTTP_")
    ]
    for key, name in (("CONTENT_TYPE", b"content-type"), ("CONTENT_LENGTH", b"content-length")):
        if environ.get(key):
            headers.append((name, str(environ[key]).encode("latin-1")))
    path = environ.get("PATH_INFO", "")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": environ.get("SERVER_PROTOCOL", "HTTP/1.1").removeprefix("HTTP/"),
        "method": environ.get("REQUEST_METHOD", "GET"),
        "scheme": environ.get("wsgi.url_scheme", "http"),
        "path": path,
        "raw_path": path.encode("latin-1"),
        "query_string": environ.get("QUERY_STRING", "").encode("latin-1"),
        "root_path": environ.get("SCRIPT_NAME", ""),
        "headers": headers,
        "client": (environ.get("REMOTE_ADDR", ""), int(environ.get("REMOTE_PORT") or 0)),
        "server": (environ.get("SERVER_NAME", ""), int(environ.get("SERVER_PORT") or 0)),
        "state": {},
    }


def _rpc_error(message: str) -> dict[str, Any]:
    """A JSON-RPC error without a request id, as the SDK answers a request it cannot take."""
    return {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": message}}


def _json(
    start_response: StartResponse,
    status: int,
    body: dict[str, Any],
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        f"{status} {HTTPStatus(status).phrase}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *(headers or [])],
    )
    return [data]
