"""Which links Steward renders in Slack: the docs site's host and the hosts STEWARD_LINK_HOSTS names."""

from __future__ import annotations

import pytest

from bot.config import Settings, SettingsError, load_settings
from bot.slack.links import LinkPolicy
from bot.slack.mrkdwn import to_mrkdwn


def _policy(**settings: object) -> LinkPolicy:
    return LinkPolicy.from_settings(Settings(**settings))  # type: ignore[arg-type]


def test_the_docs_site_and_listed_hosts_are_allowed_others_are_not() -> None:
    policy = _policy(
        docs_base_url="https://docs.lumen.example/kb", link_hosts="grafana.lumen.example,.corp.example"
    )
    assert policy.allows("https://docs.lumen.example/runbooks/x.md")
    assert policy.allows("http://GRAFANA.lumen.example/d/abc")
    assert policy.allows("https://corp.example/") and policy.allows("https://wiki.eu.corp.example/page")
    assert policy.allows("mailto:oncall@lumen.example")
    for refused in (
        "https://evil.example",
        "https://notcorp.example",
        "https://docs.lumen.example.evil.example/",
        "javascript:alert(1)",
        "ftp://docs.lumen.example/",
    ):
        assert not policy.allows(refused), refused


def test_a_refused_link_keeps_its_text_and_says_it_was_removed() -> None:
    policy = _policy(docs_base_url="https://docs.lumen.example")
    text = to_mrkdwn(
        "See [the dashboard](https://phish.example/login) and https://docs.lumen.example/a", policy.allows
    )
    assert text == "See the dashboard [link to phish.example removed] and <https://docs.lumen.example/a>"


def test_a_url_given_as_a_host_is_refused_with_what_to_write(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEWARD_LINK_HOSTS", "https://grafana.example.com/d")
    with pytest.raises(
        SettingsError, match=r"STEWARD_LINK_HOSTS: .*is not a host name; give names like grafana"
    ):
        load_settings()
