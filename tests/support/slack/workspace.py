"""The fake Slack's workspace: messages, users, groups, files and conversations in memory, and the
Web API methods that read and change them (every method runs with the fake's lock held)."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from tests.support.slack.assistant import AISurface, AssistantThread, assistant_event
from tests.support.slack.socket_mode import FakeSocketModeServer

FIRST_TS_MICROS = 1_700_000_000_000_100
TS_STEP_MICROS = 100


def _ts_key(message: dict[str, Any]) -> Decimal:
    """Sort key of a message: its ts as an exact decimal."""
    return Decimal(message["ts"])


class Workspace(AISurface):
    """Mixed into FakeSlack: the workspace's state and the Web API methods over it."""

    enterprise_id: str | None
    enterprise_install: bool
    url: str
    _condition: threading.Condition
    _conversations: dict[str, str]
    _users: dict[str, dict[str, Any]]
    _user_groups: dict[str, list[str]]
    _files: dict[str, dict[str, Any]]
    _next_ts: int
    _next_view: int
    _socket_mode: FakeSocketModeServer | None
    _token: str | None
    _next_ticket: int

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

    # the Web API methods (lock held)

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
