"""Members of Slack user groups (`S…` ids in the policy files), looked up with usergroups.users.list."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.slack.kept import Kept

log = logging.getLogger("steward.slack")

# Group membership changes rarely; a click should not cost a Web API call.
MEMBERS_SECONDS = 300.0


class SlackUserGroups:
    """A policy group resolver: a user group's member ids, kept for five minutes.

    A lookup that fails counts nobody (fail closed: no approval is counted, no rule matches on the
    group) and is tried again at the next use; the error is logged with the group id.
    """

    def __init__(
        self,
        client: WebClient,
        keep_seconds: float = MEMBERS_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self._kept: Kept[str, frozenset[str]] = Kept(keep_seconds, clock)

    def __call__(self, group_id: str) -> frozenset[str]:
        """The member ids of the user group `group_id`."""
        kept = self._kept.get(group_id)
        if kept is not None:
            return kept
        try:
            users = self.client.usergroups_users_list(usergroup=group_id).get("users") or []
        except SlackApiError as exc:
            log.warning(
                "Slack user group %s cannot be read (%s): it counts nobody; the app needs the "
                "usergroups:read scope and the group must exist",
                group_id,
                exc.response.get("error"),
            )
            return frozenset()
        return self._kept.put(group_id, frozenset(str(user) for user in users))
