"""The governance digest: pending approvals, what the guarded actions did, policy changes, stale and
superseded knowledge, knowledge gaps with the owners to ask, and feedback; over one period."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from bot.agents.models import AGENT_PREFIX
from bot.redaction import mask_secrets
from bot.store.action_requests import ActionRequestStore
from bot.store.catalog import DocumentRecord
from bot.store.conversations import GAP_DRAFTED, GAP_OPEN, GAP_ROUTED, ConversationStore

# A title, path or owner in a list is clipped to this many characters (Slack caps a section at 3,000).
TITLE_CHARS = 150
OWNER_CHARS = 80


@dataclass(frozen=True)
class Pending:
    """A request waiting for approvals."""

    request_id: str
    action: str
    requester: str
    channel: str | None
    age_hours: float
    approvals_needed: int


@dataclass
class GovernanceReport:
    """Everything the digest shows for the period `since` .. `until`."""

    since: dt.datetime
    until: dt.datetime
    pending: list[Pending] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    by_agent: dict[str, Counter[str]] = field(default_factory=dict)  # AI agents' requests: agent -> state
    policy_changes: list[tuple[dt.datetime, str, str | None]] = field(default_factory=list)  # at, new, old
    stale: list[DocumentRecord] = field(default_factory=list)
    superseded_cited: list[tuple[DocumentRecord, int]] = field(default_factory=list)  # and times cited
    gaps_by_owners: dict[str, list[str]] = field(default_factory=dict)  # owners -> open questions
    helpful: int = 0
    not_helpful: int = 0
    not_helpful_reasons: list[str] = field(default_factory=list)

    @property
    def quiet(self) -> bool:
        """Nothing waiting, nothing done, nothing stale: the digest is one line."""
        return not (
            self.pending
            or self.outcomes
            or self.by_agent
            or self.policy_changes
            or self.stale
            or self.superseded_cited
            or self.gaps_by_owners
            or self.helpful
            or self.not_helpful
        )


def gather(
    requests: ActionRequestStore,
    conversations: ConversationStore,
    documents: list[DocumentRecord],
    since: dt.datetime,
    until: dt.datetime,
) -> GovernanceReport:
    """Read the period from the action requests, the conversations and the catalog's documents."""
    start, end = since.timestamp(), until.timestamp()
    report = GovernanceReport(since, until)
    report.pending = [
        Pending(
            item.request_id,
            item.action,
            item.requester,
            item.channel,
            (end - item.created_at) / 3600,
            item.required_count,
        )
        for item in requests.pending()
    ]
    report.outcomes = Counter(requests.finished_between(start, end))
    report.by_agent = {
        agent: Counter(states) for agent, states in sorted(requests.by_agent_between(start, end).items())
    }
    report.policy_changes = [
        (dt.datetime.fromtimestamp(at, dt.UTC), new, old)
        for at, new, old in requests.policy_changes_between(start, end)
    ]
    cited = Counter(conversations.cited_between(start, end))
    grouped: dict[str, list[str]] = defaultdict(list)
    for gap in conversations.gaps((GAP_OPEN, GAP_ROUTED, GAP_DRAFTED)):
        # masked again: rows recorded before questions were stored masked are posted too
        grouped[", ".join(sorted(gap.owners)) or "no owner named"].append(mask_secrets(gap.question).text)
    report.gaps_by_owners = dict(sorted(grouped.items(), key=lambda item: -len(item[1])))
    for helpful, reason in conversations.feedback_between(start, end):
        if helpful:
            report.helpful += 1
        else:
            report.not_helpful += 1
            if reason:
                report.not_helpful_reasons.append(mask_secrets(reason).text)
    today = until.date().isoformat()
    report.stale = sorted(
        (d for d in documents if d.review_by and d.review_by < today),
        key=lambda d: (d.review_by or "", d.title),
    )
    report.superseded_cited = sorted(
        ((d, cited[d.path]) for d in documents if d.superseded_by and cited[d.path]),
        key=lambda item: -item[1],
    )
    return report


def render_text(name: str, report: GovernanceReport, quiet: str = "say") -> str:
    """The report as plain text (also the Slack message's body, escaped there)."""
    period = f"{report.since:%Y-%m-%d} to {report.until:%Y-%m-%d}"
    if report.quiet:
        return (
            "" if quiet == "skip" else f"{name} ({period}): all quiet: nothing pending, done, stale or asked."
        )
    lines = [f"{name} ({period})"]
    if report.pending:
        lines += ["", f"Waiting for approval: {len(report.pending)}"]
        for item in sorted(report.pending, key=lambda p: -p.age_hours)[:10]:
            lines.append(
                f"- {item.action} requested by {_requester(item.requester)} in <#{item.channel}>, "
                f"{item.age_hours:.0f} h ago, {item.approvals_needed} approval(s) needed"
            )
    if report.outcomes:
        done = ", ".join(f"{count} {status}" for status, count in report.outcomes.most_common())
        lines += ["", f"Actions in the period: {done}"]
    if report.by_agent:
        total = sum(sum(states.values()) for states in report.by_agent.values())
        lines += ["", f"AI agents' requests in the period: {total}, by agent and outcome"]
        for agent, states in list(report.by_agent.items())[:20]:
            done = ", ".join(f"{count} {status}" for status, count in states.most_common())
            lines.append(f"- {_clip(agent, OWNER_CHARS)}: {done}")
    if report.policy_changes:
        lines += ["", f"Policy changes: {len(report.policy_changes)}"]
        lines += [
            f"- {at:%Y-%m-%d %H:%M} UTC: {new[:12]} (was {(old or 'none')[:12]})"
            for at, new, old in report.policy_changes
        ]
    if report.stale:
        lines += ["", f"Documents past their review date: {len(report.stale)}"]
        lines += [
            f"- {_clip(d.title, TITLE_CHARS)} ({_clip(d.path, TITLE_CHARS)}), review by {d.review_by}, "
            f"owner {_clip(d.owner or 'none', OWNER_CHARS)}"
            for d in report.stale[:10]
        ]
    if report.superseded_cited:
        lines += ["", "Superseded documents that answers still cite:"]
        lines += [
            f"- {_clip(d.title, TITLE_CHARS)} ({_clip(d.path, TITLE_CHARS)}), cited {times} time(s); "
            f"superseded by {_clip(d.superseded_by or '', TITLE_CHARS)}"
            for d, times in report.superseded_cited[:10]
        ]
    if report.gaps_by_owners:
        count = sum(len(questions) for questions in report.gaps_by_owners.values())
        lines += ["", f"Open knowledge gaps: {count}, by the owners to ask"]
        for owners, questions in list(report.gaps_by_owners.items())[:10]:
            shown = "; ".join(f'"{q[:80]}"' for q in questions[:3])
            lines.append(f"- {owners}: {len(questions)}: {shown}")
    if report.helpful or report.not_helpful:
        lines += ["", f"Feedback: {report.helpful} helpful, {report.not_helpful} not helpful"]
        lines += [f'- "{reason[:120]}"' for reason in report.not_helpful_reasons[:5]]
    return "\n".join(lines)


def _requester(requester: str) -> str:
    """A person as a mention; an AI agent (`agent:NAME`) by its name."""
    if requester.startswith(AGENT_PREFIX):
        return f"agent {requester.removeprefix(AGENT_PREFIX)}"
    return f"<@{requester}>"


def _clip(text: str, limit: int) -> str:
    """A title, path or owner in a list, cut to `limit` characters with "…" when longer."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
