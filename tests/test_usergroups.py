"""Slack user groups resolved for the policy: kept for five minutes on the resolver's clock."""

from __future__ import annotations

from slack_sdk import WebClient

from bot.slack.usergroups import MEMBERS_SECONDS, SlackUserGroups
from tests.support.slack import FakeSlack


def test_a_user_groups_members_are_kept_for_five_minutes_then_asked_again() -> None:
    """Good while the clock is before put + 300 s; at 300 s Slack is asked again and a new member counts."""
    now = [1000.0]
    with FakeSlack() as slack:
        slack.set_user_group("S0ONCALL", ["U1"])
        members = SlackUserGroups(WebClient(token="xoxb-test", base_url=slack.api_url), clock=lambda: now[0])
        assert members("S0ONCALL") == {"U1"}
        slack.set_user_group("S0ONCALL", ["U1", "U2"])
        now[0] += MEMBERS_SECONDS - 0.5
        assert members("S0ONCALL") == {"U1"}  # still the kept answer
        assert len(slack.calls("usergroups.users.list")) == 1
        now[0] += 0.5
        assert members("S0ONCALL") == {"U1", "U2"}
        assert len(slack.calls("usergroups.users.list")) == 2
