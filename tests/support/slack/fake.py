"""A local fake of the Slack Web API on loopback (real HTTP) that records every call: its lifecycle, the
calls it got, the payload check and Socket Mode. The workspace state and methods live in workspace.py,
the HTTP server in server.py, fault injection in faults.py, request bodies as Slack sends them in
payloads.py."""

from __future__ import annotations

import json
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from tests.slack_payloads import MISSING_TEXT, call_problems
from tests.support.slack.assistant import AssistantThread
from tests.support.slack.faults import Failure, Faults
from tests.support.slack.server import POLL_SECONDS, LoopbackServer, Reply, ServingThread, json_reply
from tests.support.slack.socket_mode import FakeSocketModeServer
from tests.support.slack.workspace import FIRST_TS_MICROS, Workspace

_ALL_FAKES: weakref.WeakSet[FakeSlack] = weakref.WeakSet()  # for the check after each test


def payload_violations() -> list[str]:
    """Take every payload problem any fake Slack has recorded since the last call (see conftest)."""
    return [problem for fake in list(_ALL_FAKES) for problem in fake.take_violations()]


@dataclass(frozen=True)
class Call:
    """One request the fake received: API method, flat args, bearer token, monotonic time, HTTP status."""

    method: str
    args: dict[str, Any]
    token: str | None
    at: float
    status: int = 200


class FakeSlack(Workspace, Faults):
    """A Slack Web API on 127.0.0.1 that records every call and keeps messages and users in memory."""

    def __init__(
        self,
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        team_id: str = "T0FAKE",
        host: str = "127.0.0.1",
        enterprise_id: str | None = None,
        enterprise_install: bool = False,
    ) -> None:
        self.host = host  # where it listens: loopback, or e.g. 0.0.0.0 for containers on a bridge network
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.team_id = team_id
        self.enterprise_id = enterprise_id  # an Enterprise Grid organization, as auth.test reports it
        self.enterprise_install = enterprise_install  # installed for the whole organization
        self._conversations: dict[str, str] = {}  # channel id -> "channel", "private", "im" or "mpim"
        self._condition = threading.Condition(threading.Lock())
        self._calls: list[Call] = []
        self._messages: dict[str, list[dict[str, Any]]] = {}
        self._users: dict[str, dict[str, Any]] = {}
        self._user_groups: dict[str, list[str]] = {}
        self._files: dict[str, dict[str, Any]] = {}  # files.uploadV2: id -> filename, content, where shared
        self._assistant_threads: dict[tuple[str, str], AssistantThread] = {}  # (DM channel, thread_ts)
        self._statuses: dict[tuple[str, str], str] = {}  # (channel, thread_ts) -> assistant status shown
        self._failures: dict[str, list[Failure]] = {}
        self._next_ts = FIRST_TS_MICROS
        self._next_view = 1
        self._serving: ServingThread[LoopbackServer] = ServingThread("fake-slack")
        self._socket_mode: FakeSocketModeServer | None = None  # started by the first apps.connections.open
        self._token: str | None = None  # the token of the call being answered (lock held)
        self._next_ticket = 1
        self._violations: list[str] = []  # payloads Slack would refuse (tests/slack_payloads.py)
        _ALL_FAKES.add(self)

    # lifecycle

    def __enter__(self) -> Self:
        """Start the server."""
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the server."""
        self.stop()

    def start(self) -> None:
        """Bind a free loopback port and serve in a daemon thread."""
        if self._serving.server is None:
            self._serving.start(LoopbackServer(self, self.host), POLL_SECONDS)

    def stop(self) -> None:
        """Shut the server down and release the port (then the Socket Mode server's, if started)."""
        server = self._serving.stop()
        if server is not None:
            server.server_close()
        # After the Web API: a client reconnecting now gets no new URL, so no new server is started.
        with self._condition:
            socket_mode, self._socket_mode = self._socket_mode, None
        if socket_mode is not None:
            socket_mode.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:PORT."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def port(self) -> int:
        """The port it listens on."""
        server = self._serving.server
        if server is None:
            raise RuntimeError("FakeSlack is not running; use it as a context manager")
        return int(server.server_address[1])

    @property
    def api_url(self) -> str:
        """Base URL for slack_sdk's WebClient (ends with /api/)."""
        return f"{self.url}/api/"

    def response_url(self, name: str = "r1") -> str:
        """A response_url that records posts to it as calls of method "response_url"."""
        return f"{self.url}/response/{name}"

    # recorded calls

    def calls(self, method: str | None = None) -> list[Call]:
        """Calls received so far, oldest first, optionally only those of one method."""
        with self._condition:
            return [call for call in self._calls if method is None or call.method == method]

    def wait_for(
        self,
        method: str,
        count: int = 1,
        timeout: float = 10.0,
        where: Callable[[Call], bool] | None = None,
    ) -> list[Call]:
        """Block until at least `count` calls of `method` (matching `where`) arrived; return them all."""

        def matching() -> list[Call]:
            return [c for c in self._calls if c.method == method and (where is None or where(c))]

        with self._condition:
            if self._condition.wait_for(lambda: len(matching()) >= count, timeout=timeout):
                return matching()
            found = len(matching())
            seen = ", ".join(f"{name} x{n}" for name, n in Counter(c.method for c in self._calls).items())
        condition = " matching the predicate" if where is not None else ""
        raise AssertionError(
            f"expected {count} call(s) of {method}{condition} within {timeout}s, got {found}; "
            f"methods seen so far: {seen or 'none'}"
        )

    def take_violations(self) -> list[str]:
        """The payload problems recorded so far (a test that sends bad payloads on purpose takes them)."""
        with self._condition:
            taken, self._violations = self._violations, []
            return taken

    def reset_calls(self) -> None:
        """Forget the recorded calls (messages and users stay)."""
        with self._condition:
            self._calls.clear()

    # request handling (called from server threads)

    def _handle_api(self, method: str, args: dict[str, Any], token: str | None) -> Reply:
        """Answer one Web API call and record it."""
        with self._condition:
            reply = self._injected_failure(method)
            self._token = token
            if reply is None:
                reply = self._refused_payload(method, args)
            if reply is None:
                try:
                    reply = json_reply(200, self._answer(method, args))
                except Exception as error:  # a bug in the fake must show up in the test, not hang it
                    reply = json_reply(500, {"ok": False, "error": f"fake_slack_error: {error!r}"})
            self._record(Call(method, args, token, time.monotonic(), reply.status))
            return reply

    def _handle_response_url(self, path: str, raw: bytes, token: str | None) -> Reply:
        """Record a post to a response_url and answer "ok"."""
        text = raw.decode("utf-8", errors="replace")
        try:
            body = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError:
            body = {"body": text}
        args: dict[str, Any] = (
            {**body, "path": path} if isinstance(body, dict) else {"body": body, "path": path}
        )
        with self._condition:
            reply = self._injected_failure("response_url")
            if reply is None and self._refused_payload("response_url", args) is not None:
                reply = Reply(400, b"invalid_blocks", "text/plain; charset=utf-8")  # as Slack answers
            reply = reply or Reply(200, b"ok", "text/plain; charset=utf-8")
            self._record(Call("response_url", args, token, time.monotonic(), reply.status))
            return reply

    def _refused_payload(self, method: str, args: dict[str, Any]) -> Reply | None:
        """Record what Slack would refuse in the call's blocks or view; Slack's invalid_blocks answer.

        A message without a `text` fallback is recorded but taken, as Slack takes it (lock held).
        """
        problems = call_problems(method, args)
        self._violations += problems
        if all(problem.endswith(MISSING_TEXT) for problem in problems):
            return None
        views = method.startswith(
            "views."
        )  # Slack names a bad view invalid_arguments, bad blocks invalid_blocks
        error = "invalid_arguments" if views else "invalid_blocks"
        messages = [f"[ERROR] {problem}" for problem in problems]
        return json_reply(200, {"ok": False, "error": error, "response_metadata": {"messages": messages}})

    def _record(self, call: Call) -> None:
        """Append a call and wake waiters (lock held)."""
        self._calls.append(call)
        self._condition.notify_all()

    def _handle_upload(self, file_id: str, raw: bytes) -> Reply:
        """The POST of a file's bytes to its upload URL."""
        with self._condition:
            if file_id not in self._files:
                return Reply(404, b"unknown file", "text/plain")
            self._files[file_id]["content"] = raw
            return Reply(200, f"OK - {len(raw)}".encode(), "text/plain")

    # Socket Mode (the WebSocket side; the URL comes from apps.connections.open)

    @property
    def socket_mode(self) -> FakeSocketModeServer:
        """The Socket Mode server (started here if no client asked for a URL yet)."""
        if self._serving.server is None:
            raise RuntimeError("FakeSlack is not running; use it as a context manager")
        with self._condition:
            if self._socket_mode is None:
                self._socket_mode = FakeSocketModeServer()
                self._socket_mode.start()
            return self._socket_mode

    def socket_send(self, envelope: dict[str, Any], timeout: float = 5.0) -> None:
        """Push an envelope to the connected Socket Mode client(s), waiting up to `timeout` for one."""
        self.socket_mode.send(envelope, timeout=timeout)

    def socket_acks(self, envelope_id: str | None = None) -> list[dict[str, Any]]:
        """Acknowledgements the Socket Mode client(s) sent, oldest first, optionally of one envelope."""
        return self.socket_mode.acks(envelope_id)

    def wait_for_socket_ack(self, envelope_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """Block until the acknowledgement of `envelope_id` arrived; return it."""
        return self.socket_mode.wait_for_ack(envelope_id, timeout=timeout)
