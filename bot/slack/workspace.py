"""The workspace Steward is installed in: clicks, forms, shortcuts and commands from any other are refused.

A Slack app's signing secret belongs to the app, not to a workspace: once the app is installed in a
second workspace (or a person from another organization clicks in a Slack Connect channel), Slack signs
their payloads with the same secret. A valid signature therefore does not mean "our people". Steward
learns its own team from `auth.test` when it starts (the same call that checks the token) and refuses
any interactive payload or slash command that carries another team id, as the payload's team or as
the user's, before a listener sees it: nothing is counted or recorded, the refusal is logged and
counted in `steward_slack_other_team_total`.

Enterprise Grid: installed for a single workspace, Steward takes that workspace only (a person from
another workspace of the same organization is refused too, since the policy's groups name this
workspace's people). Installed for the whole organization (`auth.test` says `is_enterprise_install`),
it takes every workspace of that organization, and refuses payloads of any other organization, or
with none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from slack_bolt.response import BoltResponse
from slack_sdk.models.blocks import SectionBlock
from slack_sdk.models.views import View

from bot.metrics import SLACK_OTHER_TEAM

log = logging.getLogger("steward.slack")

REFUSED = "This Steward serves another Slack workspace, so nothing was done here."


@dataclass(frozen=True)
class Installation:
    """Where Steward is installed, as `auth.test` reported it."""

    team_id: str
    enterprise_id: str | None = None
    org_wide: bool = False

    @classmethod
    def from_auth_test(cls, reply: Mapping[str, Any]) -> Installation:
        """From auth.test's reply: `team_id`, `enterprise_id` and `is_enterprise_install`."""
        return cls(
            team_id=str(reply.get("team_id") or ""),
            enterprise_id=str(reply.get("enterprise_id") or "") or None,
            org_wide=bool(reply.get("is_enterprise_install")),
        )

    def refuses(self, body: Mapping[str, Any]) -> str | None:
        """Why a payload is not from this installation (a short reason for the log), or None."""
        teams, enterprises = _ids(body)
        if self.org_wide and self.enterprise_id:
            if not enterprises:
                return "no organization"
            other = sorted(enterprises - {self.enterprise_id})
            return f"organization {other[0]}" if other else None
        if not teams:
            return "no team"
        other = sorted(teams - {self.team_id})
        if other:
            return f"team {other[0]}"
        strange = sorted(enterprises - {self.enterprise_id} if self.enterprise_id else enterprises)
        return f"organization {strange[0]}" if strange else None


def _ids(body: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """Every team id and every enterprise id a payload carries: its own, its user's, its view's."""
    team, user, view, enterprise = (_part(body, key) for key in ("team", "user", "view", "enterprise"))
    teams = {body.get("team_id"), team.get("id"), user.get("team_id"), view.get("team_id")}
    enterprises = {body.get("enterprise_id"), enterprise.get("id"), user.get("enterprise_id")}
    return {str(t) for t in teams if t}, {str(e) for e in enterprises if e}


def _part(body: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A nested object of the payload (`team`, `user` …); empty when absent or null."""
    part = body.get(key)
    return part if isinstance(part, dict) else {}


def _kind(body: Mapping[str, Any]) -> str | None:
    """The kind of payload checked here (a command or an interaction), or None for events and the rest."""
    if body.get("command"):
        return "command"
    kind = body.get("type")
    interactive = ("block_actions", "view_submission", "view_closed", "shortcut", "message_action")
    return str(kind) if kind in (*interactive, "block_suggestion") else None


def _refusal(kind: str) -> BoltResponse:
    """The acknowledgement Slack's contract allows for each kind: a private line, a modal, or nothing."""
    if kind == "command":
        return BoltResponse(status=200, body={"response_type": "ephemeral", "text": REFUSED})
    if kind == "view_submission":
        view = View(type="modal", title="Steward", blocks=[SectionBlock(text=REFUSED)])
        return BoltResponse(status=200, body={"response_action": "update", "view": view.to_dict()})
    if kind == "block_suggestion":
        return BoltResponse(status=200, body={"options": []})
    return BoltResponse(status=200, body="")


def other_teams_refused(installation: Installation) -> Callable[..., Any]:
    """Bolt middleware: payloads of another workspace or organization are acknowledged and dropped."""

    def middleware(body: dict[str, Any], next: Callable[[], Any]) -> Any:
        kind = _kind(body)
        why = installation.refuses(body) if kind is not None else None
        if kind is None or why is None:
            return next()
        SLACK_OTHER_TEAM.labels(kind).inc()
        user = body.get("user_id") or _part(body, "user").get("id")
        log.warning(
            "refused a %s from another workspace (%s) user=%s; installed in team=%s enterprise=%s",
            kind,
            why,
            user,
            installation.team_id,
            installation.enterprise_id,
        )
        return _refusal(kind)

    return middleware
