"""A local fake of the Slack Web API on loopback (real HTTP), and helpers that sign requests like Slack."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import hmac
import json
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode, urlsplit

from tests.fakes.slack_ai import AISurface, AssistantThread, assistant_event
from tests.fakes.socket_mode import FakeSocketModeServer
from tests.slack_payloads import MISSING_TEXT, call_problems

JSON_ARGS = ("blocks", "attachments", "view", "metadata", "files", "prompts", "chunks", "loading_messages")
FIRST_TS_MICROS = 1_700_000_000_000_100
TS_STEP_MICROS = 100
POLL_SECONDS = 0.02  # how soon serve_forever notices shutdown()
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


@dataclass
class _Failure:
    """A queued failure for one method."""

    status: int
    retry_after: int
    error: str


@dataclass
class _Reply:
    """What the handler sends back: status, headers and body."""

    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] | None = None


def _ts_key(message: dict[str, Any]) -> Decimal:
    """Sort key of a message: its ts as an exact decimal."""
    return Decimal(message["ts"])


def _json_reply(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> _Reply:
    """A JSON reply."""
    return _Reply(status=status, body=json.dumps(payload).encode("utf-8"), headers=headers)


class _Server(ThreadingHTTPServer):
    """The threaded loopback server; knows its FakeSlack."""

    daemon_threads = True

    def __init__(self, fake: FakeSlack, host: str) -> None:
        super().__init__((host, 0), _Handler)
        self.fake = fake


class _Handler(BaseHTTPRequestHandler):
    """Routes POST /api/<method> and POST /response/<name> to the FakeSlack."""

    server: _Server

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
            args = _parse_args(split.query, raw, content_type)
            reply = fake._handle_api(split.path.removeprefix("/api/"), args, token or args.get("token"))
        elif split.path.startswith("/response/"):
            reply = fake._handle_response_url(split.path, raw, token)
        elif split.path.startswith("/upload/"):
            reply = fake._handle_upload(split.path.removeprefix("/upload/"), raw)
        else:
            reply = _json_reply(404, {"ok": False, "error": "not_found"})
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in (reply.headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)


def _parse_args(query: str, raw: bytes, content_type: str) -> dict[str, Any]:
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


class FakeSlack(AISurface):
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
        self._failures: dict[str, list[_Failure]] = {}
        self._next_ts = FIRST_TS_MICROS
        self._next_view = 1
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
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
        if self._server is not None:
            return
        self._server = _Server(self, self.host)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(POLL_SECONDS,), name="fake-slack", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Shut the server down and release the port (then the Socket Mode server's, if started)."""
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
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
        if self._server is None:
            raise RuntimeError("FakeSlack is not running; use it as a context manager")
        return int(self._server.server_address[1])

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

    # seeding and lookups

    def files(self) -> list[dict[str, Any]]:
        """Files uploaded through files.getUploadURLExternal / completeUploadExternal, in order (copies)."""
        with self._condition:
            return [dict(file) for file in self._files.values()]

    def set_user_group(self, group_id: str, members: list[str]) -> None:
        """Create or change a Slack user group (S…) for usergroups.users.list."""
        with self._condition:
            self._user_groups[group_id] = list(members)

    def set_conversation(self, channel: str, kind: str) -> None:
        """Declare what a conversation is for conversations.info: channel, private, im or mpim."""
        with self._condition:
            self._conversations[channel] = kind

    def add_user(self, user_id: str, name: str, real_name: str | None = None) -> None:
        """Register a user for users.info and users.list."""
        real = real_name or name
        with self._condition:
            self._users[user_id] = {
                "id": user_id,
                "team_id": self.team_id,
                "name": name,
                "real_name": real,
                "is_bot": False,
                "deleted": False,
                "profile": {"real_name": real, "display_name": name},
            }

    def add_message(
        self, channel: str, text: str, user: str, thread_ts: str | None = None, bot_id: str | None = None
    ) -> str:
        """Store a message as if a person (or another bot) had posted it; return its ts."""
        with self._condition:
            ts = self._new_ts()
            message: dict[str, Any] = {
                "type": "message",
                "channel": channel,
                "user": user,
                "text": text,
                "ts": ts,
            }
            if thread_ts is not None:
                message["thread_ts"] = thread_ts
            if bot_id is not None:
                message["bot_id"] = bot_id
            self._messages.setdefault(channel, []).append(message)
            return ts

    def messages(self, channel: str, thread_ts: str | None = None) -> list[dict[str, Any]]:
        """A thread's messages (root first), or the channel's top-level messages, oldest first; copies."""
        with self._condition:
            if thread_ts is None:
                return self._top_level(channel)
            return self._thread_messages(channel, thread_ts)

    # the assistant pane (Slack's AI app surface)

    def open_assistant_thread(self, user: str, context_channel: str | None = None) -> dict[str, Any]:
        """The person opens the assistant pane (viewing `context_channel`): returns the event Slack sends."""
        with self._condition:
            return self._open_assistant_thread(user, context_channel)

    def change_assistant_context(self, channel: str, thread_ts: str, context_channel: str) -> dict[str, Any]:
        """The person, pane open, moves to `context_channel`: returns the event Slack sends."""
        with self._condition:
            thread = self._assistant_threads[(channel, thread_ts)]
            thread.context = {**thread.context, "channel_id": context_channel}
            return assistant_event(
                "assistant_thread_context_changed",
                thread.user,
                channel,
                thread_ts,
                thread.context,
                self._new_ts(),
            )

    def assistant_thread(self, channel: str, thread_ts: str) -> AssistantThread:
        """An assistant thread's title and suggested prompts, as the person sees them now (a copy)."""
        with self._condition:
            return copy.deepcopy(self._assistant_threads[(channel, thread_ts)])

    def status(self, channel: str, thread_ts: str) -> str:
        """The status shown under a thread ("" when none: never set, cleared, or the app replied since)."""
        with self._condition:
            return self._statuses.get((channel, thread_ts), "")

    # failure injection

    def fail(
        self, method: str, status: int = 429, times: int = 1, retry_after: int = 1, error: str = "ratelimited"
    ) -> None:
        """Answer the next `times` calls of `method` with HTTP `status` (429, 5xx, or 200 with `error`)."""
        with self._condition:
            queue = self._failures.setdefault(method, [])
            queue.extend(_Failure(status, retry_after, error) for _ in range(times))

    # request handling (called from server threads)

    def _handle_api(self, method: str, args: dict[str, Any], token: str | None) -> _Reply:
        """Answer one Web API call and record it."""
        with self._condition:
            reply = self._injected_failure(method)
            self._token = token
            if reply is None:
                reply = self._refused_payload(method, args)
            if reply is None:
                try:
                    reply = _json_reply(200, self._answer(method, args))
                except Exception as error:  # a bug in the fake must show up in the test, not hang it
                    reply = _json_reply(500, {"ok": False, "error": f"fake_slack_error: {error!r}"})
            self._record(Call(method, args, token, time.monotonic(), reply.status))
            return reply

    def _handle_response_url(self, path: str, raw: bytes, token: str | None) -> _Reply:
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
                reply = _Reply(400, b"invalid_blocks", "text/plain; charset=utf-8")  # as Slack answers
            reply = reply or _Reply(200, b"ok", "text/plain; charset=utf-8")
            self._record(Call("response_url", args, token, time.monotonic(), reply.status))
            return reply

    def _refused_payload(self, method: str, args: dict[str, Any]) -> _Reply | None:
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
        return _json_reply(200, {"ok": False, "error": error, "response_metadata": {"messages": messages}})

    def _record(self, call: Call) -> None:
        """Append a call and wake waiters (lock held)."""
        self._calls.append(call)
        self._condition.notify_all()

    def _injected_failure(self, method: str) -> _Reply | None:
        """Consume a queued failure for `method`, if any (lock held)."""
        queue = self._failures.get(method)
        if not queue:
            return None
        failure = queue.pop(0)
        if failure.status == 429:
            return _json_reply(
                429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(failure.retry_after)}
            )
        if failure.status >= 500:
            return _json_reply(failure.status, {"ok": False, "error": "internal_error"})
        return _json_reply(failure.status, {"ok": False, "error": failure.error})

    def _new_ts(self) -> str:
        """The next unique, increasing message ts (lock held)."""
        micros = self._next_ts
        self._next_ts += TS_STEP_MICROS
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _find(self, channel: str, ts: str) -> dict[str, Any] | None:
        """The stored message (not a copy) with this ts in this channel (lock held)."""
        return next((m for m in self._messages.get(channel, []) if m["ts"] == ts), None)

    def _render(self, message: dict[str, Any]) -> dict[str, Any]:
        """A copy of a stored message; a thread root gains thread_ts, reply_count, latest_reply."""
        rendered = copy.deepcopy(message)
        if message.get("thread_ts", message["ts"]) == message["ts"]:
            replies = [
                m
                for m in self._messages.get(message["channel"], [])
                if m.get("thread_ts") == message["ts"] and m["ts"] != message["ts"]
            ]
            if replies:
                rendered["thread_ts"] = message["ts"]
                rendered["reply_count"] = len(replies)
                rendered["latest_reply"] = max(replies, key=_ts_key)["ts"]
        return rendered

    def _top_level(self, channel: str) -> list[dict[str, Any]]:
        """Rendered top-level messages of a channel, oldest first (lock held)."""
        stored = [m for m in self._messages.get(channel, []) if m.get("thread_ts", m["ts"]) == m["ts"]]
        return [self._render(m) for m in sorted(stored, key=_ts_key)]

    def _thread_messages(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """Rendered root and replies of a thread, oldest first (lock held)."""
        stored = [m for m in self._messages.get(channel, []) if thread_ts in (m["ts"], m.get("thread_ts"))]
        return [self._render(m) for m in sorted(stored, key=_ts_key)]

    def _answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        """The JSON body Slack would send for a successful HTTP exchange (lock held)."""
        handler = self._methods().get(method)
        if handler is None:
            return {"ok": False, "error": "unknown_method"}
        return handler(args)

    def _methods(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        """Supported Web API methods."""
        return {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "reactions.add": self._reactions_add,
            "reactions.remove": self._reactions_remove,
            "conversations.replies": self._conversations_replies,
            "conversations.history": self._conversations_history,
            "conversations.open": self._conversations_open,
            "conversations.info": self._conversations_info,
            "views.publish": self._views,
            "views.open": self._views,
            "views.update": self._views,
            "views.push": self._views,
            "users.info": self._users_info,
            "users.list": self._users_list,
            "usergroups.users.list": self._usergroups_users_list,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
            "apps.connections.open": self._apps_connections_open,
            **self._ai_methods(),
        }

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        """auth.test: who the bot is (and its organization, in an Enterprise Grid)."""
        reply: dict[str, Any] = {
            "ok": True,
            "url": "https://fake.slack.com/",
            "team": "Fake",
            "user": "steward",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": self.enterprise_install,
        }
        if self.enterprise_id is not None:
            reply["enterprise_id"] = self.enterprise_id
        return reply

    def _chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        """chat.postMessage: store the bot's message under a new ts."""
        channel = args.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not (args.get("text") or args.get("blocks") or args.get("attachments")):
            return {"ok": False, "error": "no_text"}
        ts = self._new_ts()
        message: dict[str, Any] = {"type": "message", "channel": channel, "ts": ts}
        if args.get("thread_ts"):
            message["thread_ts"] = str(args["thread_ts"])
        message.update(
            {
                "text": args.get("text") or "",
                "blocks": copy.deepcopy(args.get("blocks") or []),
                "user": self.bot_user_id,
                "bot_id": self.bot_id,
            }
        )
        for key in ("attachments", "metadata"):
            if args.get(key):
                message[key] = copy.deepcopy(args[key])
        self._messages.setdefault(channel, []).append(message)
        if args.get("thread_ts"):  # the app replied: an assistant status under the thread goes
            self._statuses.pop((channel, str(args["thread_ts"])), None)
        return {"ok": True, "channel": channel, "ts": ts, "message": copy.deepcopy(message)}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        """chat.update: replace text and/or blocks of a stored message."""
        channel, ts = str(args.get("channel") or ""), str(args.get("ts") or "")
        message = self._find(channel, ts) if channel and ts else None
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        for key in ("text", "blocks", "attachments", "metadata"):
            if key in args:
                message[key] = copy.deepcopy(args[key])
        return {
            "ok": True,
            "channel": channel,
            "ts": ts,
            "text": message.get("text", ""),
            "message": copy.deepcopy(message),
        }

    def _chat_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        """chat.delete: remove a stored message."""
        channel, ts = str(args.get("channel") or ""), str(args.get("ts") or "")
        message = self._find(channel, ts) if channel and ts else None
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        self._messages[channel].remove(message)
        return {"ok": True, "channel": channel, "ts": ts}

    def _chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        """chat.postEphemeral: nothing is stored in the channel."""
        if not args.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        if not args.get("user"):
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "message_ts": self._new_ts()}

    def _chat_get_permalink(self, args: dict[str, Any]) -> dict[str, Any]:
        """chat.getPermalink: a fake archive link."""
        channel, ts = args.get("channel"), args.get("message_ts")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not ts:
            return {"ok": False, "error": "message_not_found"}
        return {
            "ok": True,
            "channel": channel,
            "permalink": f"https://fake.slack.com/archives/{channel}/p{str(ts).replace('.', '')}",
        }

    def _reactions_add(self, args: dict[str, Any]) -> dict[str, Any]:
        """reactions.add: ok; a known message also shows the bot's reaction."""
        message = self._find(str(args.get("channel")), str(args.get("timestamp")))
        name = args.get("name")
        if message is not None and name:
            reactions: list[dict[str, Any]] = message.setdefault("reactions", [])
            entry = next((r for r in reactions if r["name"] == name), None)
            if entry is None:
                reactions.append({"name": name, "users": [self.bot_user_id], "count": 1})
            elif self.bot_user_id not in entry["users"]:
                entry["users"].append(self.bot_user_id)
                entry["count"] += 1
        return {"ok": True}

    def _reactions_remove(self, args: dict[str, Any]) -> dict[str, Any]:
        """reactions.remove: ok; a known message loses the bot's reaction."""
        message = self._find(str(args.get("channel")), str(args.get("timestamp")))
        name = args.get("name")
        if message is not None and name:
            reactions = message.get("reactions", [])
            for entry in reactions:
                if entry["name"] == name and self.bot_user_id in entry["users"]:
                    entry["users"].remove(self.bot_user_id)
                    entry["count"] -= 1
            message["reactions"] = [r for r in reactions if r["count"] > 0]
            if not message["reactions"]:
                del message["reactions"]
        return {"ok": True}

    def _conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        """conversations.replies: root and replies of a thread, oldest first."""
        channel, ts = str(args.get("channel")), str(args.get("ts"))
        if self._find(channel, ts) is None:
            return {"ok": False, "error": "thread_not_found"}
        return {"ok": True, "messages": self._thread_messages(channel, ts), "has_more": False}

    def _conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        """conversations.history: top-level messages of a channel, newest first."""
        messages = list(reversed(self._top_level(str(args.get("channel")))))
        limit = int(args.get("limit") or 0)
        has_more = bool(limit) and len(messages) > limit
        if limit:
            messages = messages[:limit]
        return {"ok": True, "messages": messages, "has_more": has_more}

    def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        """conversations.open: a direct-message channel "D" + user id."""
        users = args.get("users")
        if isinstance(users, list):
            users = ",".join(str(u) for u in users)
        if not users:
            return {"ok": False, "error": "users_list_not_supplied"}
        return {"ok": True, "channel": {"id": "D" + str(users).split(",")[0].strip()}}

    def _conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        """conversations.info: what a conversation is (D… is a DM, C… a channel, others as declared)."""
        channel = str(args.get("channel") or "")
        kind = self._conversations.get(channel) or {"D": "im", "C": "channel"}.get(channel[:1])
        if kind is None:
            return {"ok": False, "error": "channel_not_found"}
        found = {
            "id": channel,
            "is_channel": kind in ("channel", "private"),
            "is_group": kind == "private",
            "is_im": kind == "im",
            "is_mpim": kind == "mpim",
            "is_private": kind != "channel",
        }
        return {"ok": True, "channel": found}

    def _views(self, args: dict[str, Any]) -> dict[str, Any]:
        """views.publish, views.open, views.update, views.push: echo the view with an id."""
        view = args.get("view")
        view_id = args.get("view_id")
        if not view_id:
            view_id = f"V{self._next_view:010d}"
            self._next_view += 1
        body = copy.deepcopy(view) if isinstance(view, dict) else {}
        body["id"] = view_id
        return {"ok": True, "view": body}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        """users.info: a registered user."""
        user = self._users.get(str(args.get("user")))
        if user is None:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": copy.deepcopy(user)}

    def _users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        """users.list: every registered user."""
        return {
            "ok": True,
            "members": [copy.deepcopy(u) for u in self._users.values()],
            "response_metadata": {"next_cursor": ""},
        }

    def _files_get_upload_url(self, args: dict[str, Any]) -> dict[str, Any]:
        """files.getUploadURLExternal: a file id and the URL its bytes are POSTed to."""
        if not args.get("filename") or not str(args.get("length") or "").isdigit():
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F{len(self._files) + 1:08d}"
        self._files[file_id] = {"id": file_id, "filename": args["filename"], "content": None}
        return {"ok": True, "file_id": file_id, "upload_url": f"{self.url}/upload/{file_id}"}

    def _handle_upload(self, file_id: str, raw: bytes) -> _Reply:
        """The POST of a file's bytes to its upload URL."""
        with self._condition:
            if file_id not in self._files:
                return _Reply(404, b"unknown file", "text/plain")
            self._files[file_id]["content"] = raw
            return _Reply(200, f"OK - {len(raw)}".encode(), "text/plain")

    def _files_complete_upload(self, args: dict[str, Any]) -> dict[str, Any]:
        """files.completeUploadExternal: share uploaded files in a channel (and thread)."""
        listed = args.get("files")
        if not isinstance(listed, list) or not listed:
            return {"ok": False, "error": "invalid_arguments"}
        shared = []
        for item in listed:
            file = self._files.get(str(item.get("id")))
            if file is None or file["content"] is None:
                return {"ok": False, "error": "file_not_found"}
            file.update(
                title=item.get("title"), channel=args.get("channel_id"), thread_ts=args.get("thread_ts")
            )
            shared.append({"id": file["id"], "title": file["title"], "name": file["filename"]})
        return {"ok": True, "files": shared}

    def _usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        """usergroups.users.list: the member ids of one user group."""
        members = self._user_groups.get(str(args.get("usergroup") or ""))
        if members is None:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(members)}

    def _apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        """apps.connections.open: a Socket Mode URL on the local WebSocket server (app tokens only)."""
        if not self._token:
            return {"ok": False, "error": "not_authed"}
        if not self._token.startswith("xapp-"):
            return {"ok": False, "error": "not_allowed_token_type"}
        if self._socket_mode is None:
            self._socket_mode = FakeSocketModeServer()
            self._socket_mode.start()
        ticket = f"fake-ticket-{self._next_ticket}"
        self._next_ticket += 1
        return {"ok": True, "url": f"{self._socket_mode.url}?ticket={ticket}"}

    # Socket Mode (the WebSocket side; the URL comes from apps.connections.open)

    @property
    def socket_mode(self) -> FakeSocketModeServer:
        """The Socket Mode server (started here if no client asked for a URL yet)."""
        if self._server is None:
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


# Signing and request bodies, as Slack sends them to the app


def sign(secret: str, body: bytes | str, timestamp: int | None = None) -> dict[str, str]:
    """Slack's request-signing headers: v0 HMAC-SHA256 of "v0:{timestamp}:{raw body}"."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    raw = body.encode("utf-8") if isinstance(body, str) else body
    basestring = b"v0:" + stamp.encode("ascii") + b":" + raw
    digest = hmac.new(secret.encode("utf-8"), basestring, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}


def event_body(
    event: dict[str, Any],
    event_id: str,
    team_id: str = "T0FAKE",
    api_app_id: str = "A0FAKE",
    event_time: int | None = None,
    bot_user_id: str = "UBOT",
) -> bytes:
    """An Events API event_callback envelope, as JSON bytes."""
    envelope = {
        "token": "fake-verification-token",
        "team_id": team_id,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()) if event_time is None else event_time,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
    }
    return json.dumps(envelope).encode("utf-8")


def form_body(payload: dict[str, Any]) -> bytes:
    """An interactivity request body: payload=<urlencoded JSON>."""
    return urlencode({"payload": json.dumps(payload)}).encode("utf-8")


def command_body(
    command: str = "/steward",
    text: str = "",
    user_id: str = "UASKER",
    channel_id: str = "CGENERAL",
    response_url: str = "http://127.0.0.1:9/response/unset",
    trigger_id: str = "1337.4242.fake-trigger",
    team_id: str = "T0FAKE",
    user_name: str = "asker",
    channel_name: str = "general",
    api_app_id: str = "A0FAKE",
) -> bytes:
    """A urlencoded slash-command body with the fields Slack sends."""
    fields = {
        "token": "fake-verification-token",
        "team_id": team_id,
        "team_domain": "fake",
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }
    return urlencode(fields).encode("utf-8")


# Socket Mode envelopes, as Slack sends them over the WebSocket


def socket_envelope(
    kind: str,
    payload: dict[str, Any],
    envelope_id: str,
    accepts_response_payload: bool = False,
    retry_attempt: int | None = None,
    retry_reason: str | None = None,
) -> dict[str, Any]:
    """A Socket Mode envelope of type `kind` ("events_api", "slash_commands", "interactive")."""
    envelope: dict[str, Any] = {
        "envelope_id": envelope_id,
        "type": kind,
        "accepts_response_payload": accepts_response_payload,
        "payload": payload,
    }
    if retry_attempt is not None:
        envelope["retry_attempt"] = retry_attempt
        envelope["retry_reason"] = retry_reason or ""
    return envelope


def events_api_envelope(
    event: dict[str, Any],
    event_id: str,
    envelope_id: str,
    retry_attempt: int = 0,
    retry_reason: str = "",
    **event_body_args: Any,
) -> dict[str, Any]:
    """An events_api envelope around the event_callback body `event_body` builds."""
    payload = json.loads(event_body(event, event_id, **event_body_args))
    return socket_envelope("events_api", payload, envelope_id, False, retry_attempt, retry_reason)


def slash_commands_envelope(envelope_id: str, **command_body_args: Any) -> dict[str, Any]:
    """A slash_commands envelope; the payload holds the fields `command_body` sends (as strings)."""
    payload = dict(parse_qsl(command_body(**command_body_args).decode("utf-8"), keep_blank_values=True))
    return socket_envelope("slash_commands", payload, envelope_id, accepts_response_payload=True)


def interactive_envelope(payload: dict[str, Any], envelope_id: str) -> dict[str, Any]:
    """An interactive envelope (block action, shortcut, view submission); modals and menus take a reply."""
    replies = payload.get("type") in ("view_submission", "block_suggestion")
    return socket_envelope("interactive", payload, envelope_id, accepts_response_payload=replies)
