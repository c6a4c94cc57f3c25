"""A downstream MCP server for tests: the kind of server a company puts behind Steward's `mcp` executor.

Written with the official SDK's server side (`mcp.server.mcpserver.MCPServer`). Run it as

    python -m tests.support.mcp_downstream --record FILE [--http PORT] [--token-env NAME]

from the repository root, or as `python tests/support/mcp_downstream.py …` from anywhere (it imports
nothing from this repository). Without `--http` it serves MCP over stdio (stdin/stdout), as an `mcp`
action's `program:` runs it. With `--http PORT` it serves streamable HTTP at
`http://127.0.0.1:PORT/mcp` (PORT 0 picks a free port) and prints one line to standard error once it
accepts connections: `listening on http://127.0.0.1:PORT/mcp`. With `--token-env NAME` (HTTP only) every
request must carry `Authorization: Bearer <the value of $NAME>`; others get 401.

Tools:
- `rollback_model(model: str, version: int)` -> "rolled back MODEL to version VERSION";
- `pause_pipeline(pipeline: str)` -> "paused pipeline PIPELINE";
- `fail_always()` -> a tool error (`isError`): "the downstream refused: fail_always always fails";
- `wait(seconds: float)` -> sleeps, then "waited SECONDS s" (for timeouts);
- `exit_now()` -> the server process exits without answering (a call that broke off after it arrived).

Every call, whatever its outcome, first appends one JSON line `{"tool", "arguments", "pid", "at"}` to the
record FILE (opened for append, flushed and fsynced per line, so several processes can share one file),
so a test counts side effects exactly with `recorded_calls(FILE)`.

The command line above is stable: other tests (the multi-replica ones) start this module too.
`stdio_command` and `serving_http` build and run it for a test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MODULE = Path(__file__).resolve()
_LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+/mcp)")


def recorded_calls(record: Path) -> list[dict[str, Any]]:
    """The calls the server recorded, oldest first (an absent file: none)."""
    if not record.exists():
        return []
    lines = record.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def stdio_command(record: Path) -> tuple[str, tuple[str, ...]]:
    """`program` and `args` for an `mcp` action that runs this server over stdio, recording to `record`."""
    return sys.executable, (str(MODULE), "--record", str(record))


@contextlib.contextmanager
def serving_http(
    record: Path, *, token_env: str | None = None, env: dict[str, str] | None = None, timeout: float = 30.0
) -> Iterator[str]:
    """Run the server over streamable HTTP on a free loopback port; yield its URL; stop it."""
    argv = [sys.executable, str(MODULE), "--record", str(record), "--http", "0"]
    if token_env is not None:
        argv += ["--token-env", token_env]
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    drain: threading.Thread | None = None
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        url = None
        # readline blocks, but the server either prints the line or exits (EOF) well within the deadline
        while url is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            seen.append(line)
            if found := _LISTENING.search(line):
                url = found.group(1)
        if url is None:
            raise RuntimeError(f"the downstream MCP server did not start: {''.join(seen)[-2000:]}")
        # Keep reading what it logs, so a full pipe never blocks the server.
        drain = threading.Thread(target=process.stderr.read, name="mcp-downstream-stderr", daemon=True)
        drain.start()
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if drain is not None:
            drain.join(timeout=10)  # the pipe ends with the process
        if process.stderr is not None:
            process.stderr.close()


# ---- the server (runs in its own process)


def _recorder(record: Path) -> Any:
    def note(tool: str, arguments: dict[str, Any]) -> None:
        line = json.dumps({"tool": tool, "arguments": arguments, "pid": os.getpid(), "at": time.time()})
        fd = os.open(record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode("utf-8"))  # one write: lines from processes do not interleave
            os.fsync(fd)
        finally:
            os.close(fd)

    return note


def build_server(record: Path) -> Any:
    """The MCPServer with the five tools, each recording its call to `record` before it acts."""
    import anyio
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    note = _recorder(record)
    server = MCPServer("steward-test-downstream", log_level="WARNING")

    @server.tool(description="Roll a registered model back to an earlier version.")
    def rollback_model(model: str, version: int) -> str:
        note("rollback_model", {"model": model, "version": version})
        return f"rolled back {model} to version {version}"

    @server.tool(description="Pause a data pipeline.")
    def pause_pipeline(pipeline: str) -> str:
        note("pause_pipeline", {"pipeline": pipeline})
        return f"paused pipeline {pipeline}"

    @server.tool(description="Always fails (a tool error, isError).")
    def fail_always() -> str:
        note("fail_always", {})
        raise ToolError("the downstream refused: fail_always always fails")

    @server.tool(description="Wait, then answer (for timeouts).")
    async def wait(seconds: float) -> str:
        note("wait", {"seconds": seconds})
        await anyio.sleep(seconds)
        return f"waited {seconds:g} s"

    @server.tool(description="Exit the server process without answering.")
    def exit_now() -> str:
        note("exit_now", {})
        os._exit(3)

    return server


def _serve_http(server: Any, port: int, token: str | None) -> None:
    import anyio
    import uvicorn
    from starlette.responses import PlainTextResponse
    from starlette.types import ASGIApp, Receive, Scope, Send

    app: ASGIApp = server.streamable_http_app()
    if token is not None:
        inner = app
        expected = f"Bearer {token}".encode()

        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            headers = dict(scope.get("headers") or []) if scope["type"] == "http" else {}
            if scope["type"] == "http" and headers.get(b"authorization") != expected:
                refusal = PlainTextResponse("missing or wrong bearer token", status_code=401)
                await refusal(scope, receive, send)
                return
            await inner(scope, receive, send)

        app = guarded
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    bound = sock.getsockname()[1]

    class Announcing(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            print(f"listening on http://127.0.0.1:{bound}/mcp", file=sys.stderr, flush=True)

    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    anyio.run(Announcing(config).serve, [sock])


def main(argv: list[str] | None = None) -> int:
    """Serve until stdin closes (stdio) or the process is stopped (HTTP)."""
    parser = argparse.ArgumentParser(prog="mcp_downstream", description=__doc__.splitlines()[0])
    parser.add_argument("--record", type=Path, required=True, help="append one JSON line per tool call here")
    parser.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP on 127.0.0.1:PORT")
    parser.add_argument("--token-env", metavar="NAME", help="(HTTP) require Bearer $NAME on every request")
    args = parser.parse_args(argv)
    server = build_server(args.record)
    if args.http is None:
        server.run("stdio")
        return 0
    token = os.environ[args.token_env] if args.token_env else None
    _serve_http(server, args.http, token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
