"""Which hosts Steward may link to in Slack: the documentation site and the hosts an admin allows.

Documents are untrusted data: a runbook (or a poisoned page beside it) may hold links to anywhere, and an
LLM may repeat them. Steward renders a link only when its host is allowed; any other link keeps its text
and says that the link was removed, and answer sections are posted `verbatim` so that Slack does not
turn a bare URL into a link by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from bot.config import Settings


def host_of(url: str) -> str | None:
    """The lower-case host of an http(s) URL; None for anything else."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return parts.hostname.lower().rstrip(".")


@dataclass(frozen=True)
class LinkPolicy:
    """Allowed hosts: exact names, or `.example.com` for a domain and every subdomain."""

    hosts: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> LinkPolicy:
        hosts = [host.lower().lstrip("*") for host in settings.link_hosts]
        base = host_of(settings.docs_base_url or "")
        return cls(tuple(dict.fromkeys([*([base] if base else []), *hosts])))

    def allows(self, url: str) -> bool:
        """True for mailto: links and http(s) links to an allowed host."""
        if url.strip().lower().startswith("mailto:"):
            return True
        host = host_of(url)
        if host is None:
            return False
        return any(
            host == entry or (entry.startswith(".") and (host == entry[1:] or host.endswith(entry)))
            for entry in self.hosts
        )
