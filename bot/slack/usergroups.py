"""Members of Slack user groups (`S…` ids in the policy files), looked up with usergroups.users.list."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from cachetools import TTLCache
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger("steward.slack")

# Group membership changes rarely; a click should not cost a Web API call.
MEMBERS_SECONDS = 300.0
# More groups than any policy names; past it the least recently used is looked up again.
MAX_GROUPS = 1024


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
        # TTLCache is not thread-safe: every use holds the lock (clicks resolve groups concurrently).
        self._kept: TTLCache[str, frozenset[str]] = TTLCache(MAX_GROUPS, keep_seconds, timer=clock)
        self._lock = threading.Lock()

    def __call__(self, group_id: str) -> frozenset[str]:
        """The member ids of the user group `group_id`."""
        with self._lock:
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
        members = frozenset(str(user) for user in users)
        with self._lock:
            self._kept[group_id] = members
        return members
