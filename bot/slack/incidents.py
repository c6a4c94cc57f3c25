"""Incidents declared in Slack: `/steward incident open "title" sev=2 service=...` and `resolve N`.

The command is parsed here and rendered here; bot/incidents/service.py declares, resolves and
acknowledges. The declaration is posted in the channel and its thread is the timeline.
"""

from __future__ import annotations

import html
import logging
import re
import shlex
from collections.abc import Mapping
from typing import Any

from slack_bolt import Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.incidents.service import MAX_SERVICE, SEVERITIES, IncidentService
from bot.redaction import masked_notice
from bot.slack.mrkdwn import escape
from bot.slack.posting import Poster

log = logging.getLogger("steward.slack")

USAGE = (
    '`/steward incident open "title" sev=1..5 [service=NAME]` to declare one, '
    "`/steward incident resolve NUMBER` when it is over."
)


class IncidentFlows:
    """The `/steward incident` command and acknowledgements in incident threads."""

    def __init__(self, incidents: IncidentService, poster: Poster) -> None:
        self.incidents = incidents
        self.poster = poster

    def on_command(self, text: str, command: Mapping[str, Any], client: WebClient, respond: Respond) -> None:
        """`open …` posts the incident in the channel; `resolve N` closes it in its thread."""
        verb, _, rest = text.strip().partition(" ")
        user, channel = str(command.get("user_id") or ""), str(command.get("channel_id") or "")
        if verb.lower() == "open":
            self._open(rest, user, channel, client, respond)
        elif verb.lower() == "resolve":
            self._resolve(rest.strip(), user, client, respond)
        else:
            respond(text=f"Incidents: {USAGE}", response_type="ephemeral")

    def _open(self, rest: str, user: str, channel: str, client: WebClient, respond: Respond) -> None:
        try:  # Slack sends the command's text HTML-escaped: unescaped once here, escaped once when posted
            words = shlex.split(html.unescape(rest).replace("“", '"').replace("”", '"'))
        except ValueError as exc:
            respond(text=f"I could not read that ({exc}). {USAGE}", response_type="ephemeral")
            return
        fields = dict(word.split("=", 1) for word in words if "=" in word)
        title = " ".join(word for word in words if "=" not in word).strip()
        unknown = sorted(set(fields) - {"sev", "service"})
        problems = []
        if not title:
            problems.append("a title is missing")
        if fields.get("sev") not in SEVERITIES:
            problems.append(f"sev must be 1 to 5 (got {escape(repr(fields.get('sev', 'nothing')))})")
        if len(fields.get("service", "")) > MAX_SERVICE:
            problems.append(f"service is longer than {MAX_SERVICE} characters")
        if unknown:
            problems.append(f"unknown field(s): {escape(', '.join(unknown))}")
        if problems:
            respond(text=f"Not declared: {'; '.join(problems)}. {USAGE}", response_type="ephemeral")
            return
        declared = self.incidents.declare(title, fields["sev"], fields.get("service"), user, channel)
        if declared.masked:
            respond(text=masked_notice(declared.masked, "the incident's title"), response_type="ephemeral")
        number, title, service = declared.number, declared.title, declared.service
        where = f", service {escape(service)}" if service else ""
        text = (
            f":rotating_light: *Incident #{number}* (sev {fields['sev']}{where}): {escape(title)}, "
            f"declared by <@{user}>. This thread is the timeline; `/steward incident resolve {number}` "
            "when it is over."
        )
        try:
            ts = self.poster.say(client, channel, text)
        except SlackApiError as exc:
            log.info("incident not posted channel=%s error=%s", channel, exc.response.get("error"))
            respond(
                text=f"Incident #{number} is recorded, but I cannot post in this channel: invite me to it.",
                response_type="ephemeral",
            )
            return
        self.incidents.posted(number, ts)
        log.info("incident declared number=%s channel=%s", number, channel)

    def _resolve(self, rest: str, user: str, client: WebClient, respond: Respond) -> None:
        number = rest.lstrip("#").split(" ", 1)[0]
        if not re.fullmatch(r"[0-9]{1,18}", number):  # str.isdigit() takes "²", and the database takes int64
            respond(text=f"Which incident? {USAGE}", response_type="ephemeral")
            return
        resolved = self.incidents.resolve(int(number))
        if resolved is None:
            respond(text=f"There is no open incident #{number}.", response_type="ephemeral")
            return
        if resolved.channel and resolved.thread:
            after = f"after {resolved.minutes:.0f} min"
            text = f":white_check_mark: Incident #{number} resolved by <@{user}> {after}."
            self.poster.say(client, resolved.channel, text, thread_ts=resolved.thread)
        else:
            respond(text=f"Incident #{number} is resolved.", response_type="ephemeral")

    def on_reply(self, channel: str, thread_ts: str, user: str) -> None:
        """A reply in a thread: the first one by someone other than the declarer acknowledges it."""
        if self.incidents.replied(channel, thread_ts, user):
            log.info("incident acknowledged channel=%s thread=%s", channel, thread_ts)
