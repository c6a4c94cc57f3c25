"""The fake Slack's AI app surface: assistant threads (status, title, suggested prompts), streamed messages.

Arguments are checked as Slack documents them (required fields, at most 4 suggested prompts, 10 loading
messages, 12,000 characters of markdown per call, 50 blocks), and the blocks that end a stream are checked
with slack_sdk's own Block Kit models and the limits they skip (tests/slack_payloads.py), so a test
passes only with what Slack would accept.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.models.messages.chunk import Chunk, MarkdownTextChunk

from tests.slack_payloads import block_problems  # slack_sdk's models and the limits they skip

MAX_SUGGESTED_PROMPTS = 4  # assistant.threads.setSuggestedPrompts: "up to four suggested prompts"
MAX_LOADING_MESSAGES = 10  # assistant.threads.setStatus
MAX_MARKDOWN_TEXT = 12_000  # chat.startStream / appendStream / stopStream, per call
ASSISTANT_ROOT = "assistant_app_thread"  # subtype of the root message of an assistant thread
STREAMING, COMPLETED = "in_progress", "completed"  # a streamed message's streaming_state

Reply = dict[str, Any]


def _invalid(detail: str) -> Reply:
    """Slack's answer to a call missing a required field or giving a malformed one."""
    return {
        "ok": False,
        "error": "invalid_arguments",
        "response_metadata": {"messages": [f"[ERROR] {detail}"]},
    }


def _missing(args: dict[str, Any], *names: str) -> Reply | None:
    """invalid_arguments naming the first required field that is absent or empty."""
    for name in names:
        value = args.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return _invalid(f"missing required field: {name}")
    return None


def _chunk_text(chunks: Any) -> tuple[str, Reply | None]:
    """The markdown carried by streaming chunks (each parsed by slack_sdk), or the error Slack gives."""
    if chunks is None:
        return "", None
    if not isinstance(chunks, list):
        return "", _invalid("chunks must be an array")
    text = []
    for raw in chunks:
        chunk = Chunk.parse(raw) if isinstance(raw, dict) else None
        if chunk is None:
            return "", _invalid(f"unknown chunk: {raw!r:.80}")
        if isinstance(chunk, MarkdownTextChunk):
            if not isinstance(chunk.text, str):
                return "", _invalid("a markdown_text chunk needs its text")
            text.append(chunk.text)
    return "".join(text), None


def _markdown(args: dict[str, Any]) -> tuple[str, Reply | None]:
    """markdown_text plus the text of any chunks, within Slack's 12,000 characters per call."""
    plain = args.get("markdown_text")
    if plain is not None and not isinstance(plain, str):
        return "", _invalid("markdown_text must be a string")
    chunked, problem = _chunk_text(args.get("chunks"))
    if problem is not None:
        return "", problem
    for part in (plain or "", chunked):
        if len(part) > MAX_MARKDOWN_TEXT:
            return "", {"ok": False, "error": "msg_too_long"}
    return (plain or "") + chunked, None


def _prompts_problem(prompts: Any) -> Reply | None:
    """invalid_arguments unless `prompts` is one to four prompts, each exactly a title and a message."""
    if not isinstance(prompts, list) or not prompts:
        return _invalid("missing required field: prompts")
    if len(prompts) > MAX_SUGGESTED_PROMPTS:
        return _invalid(f"prompts: at most {MAX_SUGGESTED_PROMPTS}")
    for prompt in prompts:
        if not isinstance(prompt, dict) or set(prompt) != {"title", "message"}:
            return _invalid("each prompt needs a title and a message, and nothing else")
        if not all(isinstance(value, str) and value.strip() for value in prompt.values()):
            return _invalid("a prompt's title and message are non-empty strings")
    return None


@dataclass
class AssistantThread:
    """An assistant thread as the person sees it: its title and the prompts offered."""

    channel: str
    thread_ts: str
    user: str
    context: dict[str, Any]
    title: str | None = None
    prompts: list[dict[str, str]] = field(default_factory=list)
    prompts_title: str | None = None


class AISurface:
    """Mixed into FakeSlack: every method here runs with the fake's lock held."""

    bot_user_id: str
    bot_id: str
    team_id: str
    _messages: dict[str, list[dict[str, Any]]]
    _assistant_threads: dict[tuple[str, str], AssistantThread]
    _statuses: dict[tuple[str, str], str]

    def _new_ts(self) -> str:
        raise NotImplementedError

    def _find(self, channel: str, ts: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def _ai_methods(self) -> dict[str, Any]:
        """The Web API methods of the AI app surface."""
        return {
            "assistant.threads.setStatus": self._set_status,
            "assistant.threads.setTitle": self._set_title,
            "assistant.threads.setSuggestedPrompts": self._set_suggested_prompts,
            "chat.startStream": self._start_stream,
            "chat.appendStream": self._append_stream,
            "chat.stopStream": self._stop_stream,
        }

    # assistant threads

    def _open_assistant_thread(self, user: str, context_channel: str | None) -> dict[str, Any]:
        """The person opens Steward's assistant pane: a DM thread root, and the event Slack sends."""
        channel = "D" + user.removeprefix("U").removeprefix("W")
        ts = self._new_ts()
        root = {"type": "message", "subtype": ASSISTANT_ROOT, "channel": channel, "user": user, "ts": ts}
        root.update(text="New chat", thread_ts=ts)
        self._messages.setdefault(channel, []).append(root)
        context: dict[str, Any] = {"team_id": self.team_id, "enterprise_id": None}
        if context_channel:
            context["channel_id"] = context_channel
        self._assistant_threads[(channel, ts)] = AssistantThread(channel, ts, user, context)
        return assistant_event("assistant_thread_started", user, channel, ts, context, ts)

    def _thread_problem(self, channel: str, thread_ts: str, assistant: bool) -> Reply | None:
        """channel_not_found or invalid_thread_ts, as Slack answers for a thread it does not know."""
        if channel not in self._messages:
            return {"ok": False, "error": "channel_not_found"}
        if self._find(channel, thread_ts) is None or (
            assistant and (channel, thread_ts) not in self._assistant_threads
        ):
            return {"ok": False, "error": "invalid_thread_ts"}
        return None

    def _set_status(self, args: dict[str, Any]) -> Reply:
        """assistant.threads.setStatus: a status under the thread until the app replies (empty clears it)."""
        problem = _missing(args, "channel_id", "thread_ts")
        if problem is None and not isinstance(args.get("status"), str):
            problem = _invalid("missing required field: status")
        loading = args.get("loading_messages")
        if problem is None and loading is not None:
            if not isinstance(loading, list) or not all(isinstance(m, str) and m for m in loading):
                problem = _invalid("loading_messages must be an array of strings")
            elif len(loading) > MAX_LOADING_MESSAGES:
                problem = _invalid(f"loading_messages: at most {MAX_LOADING_MESSAGES}")
        channel, thread_ts = str(args.get("channel_id")), str(args.get("thread_ts"))
        problem = problem or self._thread_problem(channel, thread_ts, assistant=False)
        if problem is not None:
            return problem
        self._statuses[(channel, thread_ts)] = str(args["status"])
        return {"ok": True}

    def _set_title(self, args: dict[str, Any]) -> Reply:
        """assistant.threads.setTitle: the title of an assistant thread in the person's history."""
        problem = _missing(args, "channel_id", "thread_ts", "title")
        channel, thread_ts = str(args.get("channel_id")), str(args.get("thread_ts"))
        problem = problem or self._thread_problem(channel, thread_ts, assistant=True)
        if problem is not None:
            return problem
        self._assistant_threads[(channel, thread_ts)].title = str(args["title"])
        return {"ok": True}

    def _set_suggested_prompts(self, args: dict[str, Any]) -> Reply:
        """assistant.threads.setSuggestedPrompts: up to four prompts, each a title and a message."""
        prompts = args.get("prompts")
        problem = _missing(args, "channel_id", "thread_ts") or _prompts_problem(prompts)
        title = args.get("title")
        if problem is None and title is not None and not isinstance(title, str):
            problem = _invalid("title must be a string")
        channel, thread_ts = str(args.get("channel_id")), str(args.get("thread_ts"))
        problem = problem or self._thread_problem(channel, thread_ts, assistant=True)
        if problem is not None:
            return problem
        thread = self._assistant_threads[(channel, thread_ts)]
        thread.prompts, thread.prompts_title = copy.deepcopy(prompts), title
        return {"ok": True}

    # streamed messages

    def _start_stream(self, args: dict[str, Any]) -> Reply:
        """chat.startStream: a new bot message in a thread, in the streaming state."""
        if not args.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        problem = _missing(args, "thread_ts")
        channel, thread_ts = str(args["channel"]), str(args.get("thread_ts"))
        if problem is None and not channel.startswith("D"):  # outside a DM Slack must know who reads it
            if not args.get("recipient_user_id"):
                problem = {"ok": False, "error": "missing_recipient_user_id"}
            elif not args.get("recipient_team_id"):
                problem = {"ok": False, "error": "missing_recipient_team_id"}
        problem = problem or self._thread_problem(channel, thread_ts, assistant=False)
        text, bad_text = _markdown(args)
        problem = problem or bad_text
        if problem is not None:
            return problem
        ts = self._new_ts()
        message: dict[str, Any] = {
            "type": "message",
            "channel": channel,
            "ts": ts,
            "thread_ts": thread_ts,
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "text": text,
            "blocks": [],
            "streaming_state": STREAMING,
        }
        self._messages[channel].append(message)
        self._statuses.pop((channel, thread_ts), None)  # the app replied: the status goes
        return {"ok": True, "channel": channel, "ts": ts}

    def _streaming(self, args: dict[str, Any]) -> tuple[dict[str, Any] | None, Reply | None]:
        """The bot's message still streaming that `channel` and `ts` name, or Slack's error."""
        if not args.get("channel"):
            return None, {"ok": False, "error": "channel_not_found"}
        problem = _missing(args, "ts")
        if problem is not None:
            return None, problem
        message = self._find(str(args["channel"]), str(args["ts"]))
        if message is None:
            return None, {"ok": False, "error": "message_not_found"}
        if message.get("bot_id") != self.bot_id:
            return None, {"ok": False, "error": "message_not_owned_by_app"}
        if message.get("streaming_state") != STREAMING:
            return None, {"ok": False, "error": "message_not_in_streaming_state"}
        return message, None

    def _append_stream(self, args: dict[str, Any]) -> Reply:
        """chat.appendStream: more markdown at the end of a streaming message."""
        message, problem = self._streaming(args)
        if message is None:
            return problem or {"ok": False, "error": "message_not_found"}
        if args.get("markdown_text") is None and args.get("chunks") is None:
            return {"ok": False, "error": "no_text"}
        text, problem = _markdown(args)
        if problem is not None:
            return problem
        message["text"] += text
        return {"ok": True, "channel": message["channel"], "ts": message["ts"]}

    def _stop_stream(self, args: dict[str, Any]) -> Reply:
        """chat.stopStream: the last markdown, blocks under it (checked by slack_sdk), and the end."""
        message, problem = self._streaming(args)
        if message is None:
            return problem or {"ok": False, "error": "message_not_found"}
        text, problem = _markdown(args)
        if problem is not None:
            return problem
        blocks = args.get("blocks")
        if blocks is not None and block_problems(blocks):
            return {"ok": False, "error": "invalid_blocks", "errors": block_problems(blocks)}
        metadata = args.get("metadata")
        if metadata is not None and not (
            isinstance(metadata, dict) and {"event_type", "event_payload"} <= set(metadata)
        ):
            return {"ok": False, "error": "invalid_metadata_format"}
        message["text"] += text
        message["streaming_state"] = COMPLETED
        if blocks:
            message["blocks"] = copy.deepcopy(blocks)
        if metadata:
            message["metadata"] = copy.deepcopy(metadata)
        return {
            "ok": True,
            "channel": message["channel"],
            "ts": message["ts"],
            "message": copy.deepcopy(message),
        }


def assistant_event(
    kind: str, user: str, channel: str, thread_ts: str, context: dict[str, Any], event_ts: str
) -> dict[str, Any]:
    """An `assistant_thread_started` or `assistant_thread_context_changed` event, as Slack sends it."""
    return {
        "type": kind,
        "assistant_thread": {
            "user_id": user,
            "context": copy.deepcopy(context),
            "channel_id": channel,
            "thread_ts": thread_ts,
        },
        "event_ts": event_ts,
    }
