"""The client side of the `mcp` executor: one tool call on a downstream MCP server, and its tool list.

The official `mcp` SDK's `Client` does the protocol: a server given as a command runs as a subprocess
spoken to over stdio; one given as a URL is spoken to over streamable HTTP. An attempt connects and
initializes within the action's timeout, calls the tool within the timeout again, and closes.

A tool call is not known to be idempotent, so it is sent at most once: only a failure to start, connect
or initialize, before the call was sent, is retried. The tool's output is someone else's text; it is
returned as is and escaped where it is shown.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeVar, cast
from urllib.parse import urlsplit

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, TextContent, Tool

from bot.errors import Unavailable

BACKOFF_SECONDS = 0.2  # doubled per retry, as webhooks do
LIST_PAGES = 50  # tools/list pages read by `list_tools`; a server that pages forever is cut off
_STDERR_TAIL = 2000  # characters of a stdio server's standard error kept for a failure's output
_T = TypeVar("_T")
_CHECK = "it may have run, so check before requesting it again"


@dataclass(frozen=True)
class Downstream:
    """A downstream MCP server: a program run over stdio, or a streamable-HTTP URL (with its headers)."""

    program: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # may hold a bearer token

    def describe(self) -> str:
        """The server as a summary names it: the program's file name (and its first argument's), or the
        URL's host (never its path, which may carry a token)."""
        if self.url is not None:
            parts = urlsplit(self.url)
            return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
        # `python server.py` says more than `python`
        return " ".join(Path(part).name for part in (self.program or "", *self.args[:1]))


@dataclass(frozen=True)
class ToolOutcome:
    """How one tool call ended: a Slack line, the tool's text, the attempts and facts for the audit log."""

    ok: bool
    summary: str
    output: str
    attempts: int
    details: Mapping[str, str]


class DownstreamUnavailableError(Unavailable):
    """The server could not be started, reached or initialized, or broke off; `reason` says how."""

    def __init__(self, reason: str, *, retryable: bool, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.timed_out = timed_out


def run_sync(function: Callable[[], Awaitable[_T]]) -> _T:
    """Run an async function to completion from synchronous code.

    Executors run in worker threads, where `anyio.run` starts a loop of its own. Should a caller run
    inside an event loop (an async agent surface calling the guarded actions directly), a fresh thread
    runs it instead, since a loop cannot be started inside a running one.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return anyio.run(function)
    results: list[_T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            results.append(anyio.run(function))
        except BaseException as error:  # handed to the calling thread, which raises it
            errors.append(error)

    worker = threading.Thread(target=target, name="steward-mcp-client")
    worker.start()
    worker.join()
    if errors:
        raise errors[0]
    return results[0]


def call_tool(
    downstream: Downstream,
    tool: str,
    arguments: Mapping[str, Any],
    *,
    name: str,
    timeout: float,
    retries: int,
    sleep: Callable[[float], None],
) -> ToolOutcome:
    """Call `tool` once on the server; retry only failures to start, connect or initialize (`retries`).

    `name` is the action's name, which starts each summary. Never raises for what the server does.
    """
    where = downstream.describe()
    details = {"tool": tool, "server": where}
    attempt = 0
    while True:
        attempt += 1
        call = _Call(downstream, tool, dict(arguments), timeout)
        try:
            result = run_sync(call.run)
        except DownstreamUnavailableError as failure:
            if call.sent:
                # The server may have acted: report, never resend.
                how = failure.reason if failure.timed_out else f"failed: {failure.reason}"
                summary = f"{name}: the call to {tool} on {where} {how}; {_CHECK}"
                facts = {**details, "timeout": "1"} if failure.timed_out else details
                return ToolOutcome(False, summary, call.diagnostics(failure.reason), attempt, facts)
            if failure.retryable and attempt <= retries:
                sleep(BACKOFF_SECONDS * 2 ** (attempt - 1))
                continue
            tries = "" if attempt == 1 else f" after {attempt} attempts"
            summary = f"{name}: could not reach the MCP server {where}{tries}: {failure.reason}"
            return ToolOutcome(False, summary, call.diagnostics(failure.reason), attempt, details)
        return _outcome(name, tool, result, attempt, details)


def _outcome(
    name: str, tool: str, result: CallToolResult, attempts: int, details: dict[str, str]
) -> ToolOutcome:
    output = tool_text(result)
    first = next((line.strip() for line in output.splitlines() if line.strip()), "")
    facts = {**details, "is_error": "true" if result.is_error else "false"}
    if result.is_error:
        summary = f"{name}: {tool} reported an error" + (f": {first}" if first else "")
        return ToolOutcome(False, summary, output, attempts, facts)
    return ToolOutcome(True, first or f"{name}: {tool} done", output, attempts, facts)


def tool_text(result: CallToolResult) -> str:
    """All text content, one block per line, then the structured content as JSON unless a text block
    already carries it (the spec asks servers to repeat it as text)."""
    texts: list[str] = []
    for block in result.content:
        texts.append(block.text if isinstance(block, TextContent) else f"[{block.type} content]")
    structured = result.structured_content
    if structured is not None and not _carried(structured, texts):
        texts.append(json.dumps(structured, ensure_ascii=False, sort_keys=True, default=str))
    return "\n".join(texts)


def _carried(structured: Any, texts: list[str]) -> bool:
    """Whether a text block says what the structured content says. The SDK's servers wrap a plain return
    value as {"result": value}, beside the value as text."""
    if isinstance(structured, dict) and set(structured) == {"result"} and str(structured["result"]) in texts:
        return True
    for text in texts:
        try:
            if json.loads(text) == structured:
                return True
        except ValueError:
            continue
    return False


def list_tools(downstream: Downstream, *, timeout: float) -> list[Tool]:
    """Every tool the server lists (following pages); raises DownstreamUnavailableError naming what failed."""
    call = _Call(downstream, "", {}, timeout)
    return run_sync(call.list)


class _Call:
    """One attempt's connection: it notes whether the call was sent, and keeps a stdio server's stderr."""

    def __init__(self, downstream: Downstream, tool: str, arguments: dict[str, Any], timeout: float) -> None:
        self.downstream = downstream
        self.tool = tool
        self.arguments = arguments
        self.timeout = timeout
        self.sent = False
        self.result: CallToolResult | None = None
        self.status: int | None = None  # the last HTTP error status the server answered with
        self.stderr = ""

    async def run(self) -> CallToolResult:
        async def call(client: Client) -> None:
            self.sent = True
            self.result = await client.call_tool(self.tool, self.arguments)

        await self._session(call)
        if self.result is None:  # _session returns only once the call answered
            raise DownstreamUnavailableError("closed without answering the call", retryable=False)
        return self.result

    async def list(self) -> list[Tool]:
        tools: list[Tool] = []

        async def listing(client: Client) -> None:
            cursor: str | None = None
            for _ in range(LIST_PAGES):
                page = await client.list_tools(cursor=cursor, cache_mode="bypass")
                tools.extend(page.tools)
                if (cursor := page.next_cursor) is None:
                    return

        await self._session(listing)
        return tools

    async def _session(self, work: Callable[[Client], Awaitable[None]]) -> None:
        """Connect and initialize within the timeout, then do `work` within the timeout, then close;
        raise DownstreamUnavailableError."""
        with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as file:
            errlog = cast(TextIO, file)  # a real file: the server process writes its stderr to it
            try:
                with anyio.fail_after(self.timeout) as deadline:
                    async with Client(self._transport(errlog)) as client:
                        # A slow start (a server fetched by npx or uvx) does not eat into the call's time.
                        deadline.deadline = anyio.current_time() + self.timeout
                        await work(client)
            except TimeoutError:
                self._keep_stderr(errlog)
                if self.result is not None:
                    return  # the answer came; only closing the connection was slow
                doing = "did not answer" if self.sent else "did not start and initialize"
                late = DownstreamUnavailableError(
                    f"{doing} within {self.timeout:g} s", retryable=True, timed_out=True
                )
                raise late from None
            except Exception as error:  # the SDK's task groups wrap what failed; the leaf says why
                self._keep_stderr(errlog)
                if self.result is not None:
                    return
                leaf = _leaf(error)
                if isinstance(leaf, DownstreamUnavailableError):
                    raise leaf from None
                raise self._unavailable(leaf) from error

    def _transport(self, errlog: TextIO) -> Any:
        downstream = self.downstream
        if downstream.url is not None:

            async def note_status(response: httpx2.Response) -> None:
                if response.status_code >= 400:
                    self.status = response.status_code

            http = httpx2.AsyncClient(
                headers=dict(downstream.headers),
                timeout=httpx2.Timeout(self.timeout),
                event_hooks={"response": [note_status]},
            )
            return _OwnedHttp(http, streamable_http_client(downstream.url, http_client=http))
        program = downstream.program or ""
        path = downstream.env.get("PATH", os.defpath)
        found = program if os.sep in program else shutil.which(program, path=path)
        if found is None or not Path(found).is_file():
            raise DownstreamUnavailableError(f"program {program!r} was not found", retryable=False)
        if not os.access(found, os.X_OK):
            raise DownstreamUnavailableError(f"program {program!r} is not executable", retryable=False)
        args, env = list(downstream.args), dict(downstream.env)
        parameters = StdioServerParameters(command=found, args=args, env=env)
        return stdio_client(parameters, errlog=errlog)

    def _unavailable(self, error: BaseException) -> DownstreamUnavailableError:
        if isinstance(error, PermissionError | FileNotFoundError):
            return DownstreamUnavailableError(f"the program could not start: {error}", retryable=False)
        if self.status is not None:
            # Like webhooks: a server error or a rate limit may pass later; other refusals will not.
            retryable = self.status == 429 or self.status >= 500
            return DownstreamUnavailableError(f"HTTP {self.status} ({_text(error)})", retryable=retryable)
        if isinstance(error, MCPError):
            exited = f"; its standard error ends: {_last_line(self.stderr)}" if self.stderr.strip() else ""
            message = f"MCP error {error.error.code}: {error.error.message}{exited}"
            return DownstreamUnavailableError(message, retryable=True)
        if isinstance(error, httpx2.TransportError | OSError):
            return DownstreamUnavailableError(f"connection failed: {_text(error)}", retryable=True)
        return DownstreamUnavailableError(_text(error), retryable=False)

    def _keep_stderr(self, errlog: TextIO) -> None:
        errlog.flush()
        errlog.seek(0)
        self.stderr = errlog.read()[-_STDERR_TAIL:]

    def diagnostics(self, reason: str) -> str:
        """A failure's output: the reason, then the end of a stdio server's standard error."""
        return f"{reason}\n[server stderr]\n{self.stderr}" if self.stderr.strip() else reason


class _OwnedHttp:
    """The streamable-HTTP transport and the HTTP client it uses, closed together (the SDK leaves a
    client it was given open)."""

    def __init__(self, http: httpx2.AsyncClient, transport: AbstractAsyncContextManager[Any]) -> None:
        self.http = http
        self.transport = transport

    async def __aenter__(self) -> Any:
        await self.http.__aenter__()
        try:
            return await self.transport.__aenter__()
        except BaseException:
            await self.http.__aexit__(None, None, None)
            raise

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self.transport.__aexit__(*exc)
        finally:
            await self.http.__aexit__(None, None, None)


def _leaf(error: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def _text(error: BaseException) -> str:
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _last_line(text: str) -> str:
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")
