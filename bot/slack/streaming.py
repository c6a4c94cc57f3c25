"""An LLM answer shown in Slack as it is written, then replaced by its checked, cited version.

The text streams with Slack's own methods: chat.startStream and chat.appendStream through slack_sdk's
ChatStream, then chat.stopStream. That text is unchecked: when the answer is ready, the stream stops
(without the text still buffered) and chat.update puts the rendered answer (the LLM's if it passed the
citation check, else the extractive one) in the streamed message's place. Streaming is a courtesy: if
Slack refuses any of it, the answer is posted the usual way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.chat_stream import ChatStream

from bot.slack.blocks import RenderedMessage
from bot.slack.posting import Poster

log = logging.getLogger("steward.slack")

ZERO_WIDTH = "\u200b"
# slack_sdk's default: text reaches Slack in pieces of about this many characters, which keeps
# chat.appendStream (rate-limited per workspace) to a few calls per answer.
BUFFER_CHARS = 256


class Defuser:
    """Streamed text with nothing Slack could render as a link or a mention.

    Documents are untrusted and an LLM may repeat what they say, but the streamed text is shown before
    the answer is checked and rendered under the link policy. A zero-width space goes after every `<`
    (Slack's `<@U…>`, `<!channel>` and `<https://…>`), between `]` and `(` (a Markdown link) and into
    every `://` and `www.` (a bare URL). It works character by character, so a link split across two
    pieces of text is broken all the same.
    """

    def __init__(self) -> None:
        self._recent = ""  # the last characters seen, over piece boundaries

    def __call__(self, text: str) -> str:
        out = []
        for char in text:
            recent = self._recent
            if (
                (char == "(" and recent.endswith("]"))
                or (char == "/" and recent.endswith(":"))
                or (char == "." and recent.lower().endswith("www"))
            ):
                out.append(ZERO_WIDTH)
            out.append(char)
            if char == "<":
                out.append(ZERO_WIDTH)
            self._recent = (recent + char)[-3:]
        return "".join(out)


class LiveAnswer:
    """One answer in one thread: `write` each piece of LLM text, then `finish` with the final messages."""

    def __init__(
        self,
        client: WebClient,
        poster: Poster,
        channel: str,
        thread_ts: str,
        user: str = "",
        team: str = "",
    ) -> None:
        self.client = client
        self.poster = poster
        self.channel = channel
        self.thread_ts = thread_ts
        self.user = user  # who reads the stream (Slack needs it outside a DM)
        self.team = team
        self._defuse = Defuser()
        self._stream: ChatStream | None = None
        self._broken = False  # Slack refused the stream: the answer is posted whole at the end
        self._finished = False  # `finish` has taken over the streamed message
        self.pieces = 0

    @property
    def shown(self) -> str | None:
        """The ts of the streamed message once Slack has it (some text reached the thread)."""
        return self._stream.ts if self._stream is not None else None

    def write(self, text: str) -> None:
        """Stream a piece of the LLM's text (defused); never raises, the answer must still be posted."""
        if self._broken or not text:
            return
        try:
            if self._stream is None:
                self.poster.pacer.wait(self.channel)  # the stream's first call posts a message
                self._stream = self.client.chat_stream(
                    channel=self.channel,
                    thread_ts=self.thread_ts,
                    recipient_user_id=self.user or None,
                    recipient_team_id=self.team or None,
                    buffer_size=BUFFER_CHARS,
                )
            self._stream.append(markdown_text=self._defuse(text))
            self.pieces += 1
        except (SlackClientError, OSError) as exc:
            self._broken = True
            log.warning("answer stream failed channel=%s error=%s", self.channel, _reason(exc))

    def finish(self, messages: Sequence[RenderedMessage]) -> list[str]:
        """End the stream and show the final answer in its place; returns the ts of its messages."""
        self._finished = True
        ts = self.shown
        if ts is None:  # nothing reached Slack (no LLM, abstained, or too short to flush): post as usual
            return self.poster.post(self.client, self.channel, messages, thread_ts=self.thread_ts)
        self._stop(ts)
        try:
            first, rest = messages[0], messages[1:]
            self.client.chat_update(channel=self.channel, ts=ts, text=first.text, blocks=first.blocks)
        except SlackApiError as exc:
            log.warning("streamed answer not replaced channel=%s error=%s", self.channel, _reason(exc))
            self._delete(ts)  # unchecked text must not stay: the answer is posted instead
            return self.poster.post(self.client, self.channel, messages, thread_ts=self.thread_ts)
        return [ts, *self.poster.post(self.client, self.channel, rest, thread_ts=self.thread_ts)]

    def abandon(self) -> None:
        """Answering failed after text was streamed: end the stream and take the unchecked text away."""
        ts = self.shown
        if ts is not None and not self._finished:
            self._stop(ts)
            self._delete(ts)

    def _stop(self, ts: str) -> None:
        """chat.stopStream, leaving out the text still buffered: it is replaced (or removed) at once."""
        try:
            self.client.chat_stopStream(channel=self.channel, ts=ts)
        except (SlackClientError, OSError) as exc:  # chat.update or chat.delete still follows
            log.info("answer stream not stopped channel=%s error=%s", self.channel, _reason(exc))

    def _delete(self, ts: str) -> None:
        try:
            self.client.chat_delete(channel=self.channel, ts=ts)
        except SlackApiError as exc:
            log.warning("streamed answer not removed channel=%s error=%s", self.channel, _reason(exc))


def _reason(exc: BaseException) -> str:
    """Slack's error code, or the exception's type: never the text that was sent."""
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error"))
    return type(exc).__name__
