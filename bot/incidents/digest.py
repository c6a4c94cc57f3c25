"""The incident digest: new, ongoing and resolved incidents of a period, how fast they were handled, the
noisiest alerts, and for each incident the runbook to follow."""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.answers.retrieval import Retriever
from bot.digests.knowledge import RunbookLookupError, best_match
from bot.incidents.records import AlertGaps, Incident, IncidentStore, NoisyAlert, utc

RunbookFor = Callable[[Incident], "str | None"]  # a runbook title and path, or None
SHOWN = 15  # incidents listed per section; the rest are counted
TITLE_CHARS = 150  # a title in the list is clipped to this many characters
DEFAULT_MIN_SIMILARITY = 0.5  # STEWARD_RUNBOOK_MIN_SIMILARITY's default


@dataclass
class IncidentReport:
    """One period's incidents, sorted into new, ongoing and resolved."""

    since: dt.datetime
    until: dt.datetime
    new: list[Incident] = field(default_factory=list)  # started in the period
    ongoing: list[Incident] = field(default_factory=list)  # started before, still open at its end
    resolved: list[Incident] = field(default_factory=list)  # resolved in the period
    noisiest: list[NoisyAlert] = field(default_factory=list)
    noisy_names: int = 0  # alert names that fired in the period (noisiest shows the first few)
    gaps: AlertGaps = field(default_factory=AlertGaps)  # alerts the digest cannot show
    runbooks: dict[int, str] = field(default_factory=dict)
    no_runbook: set[int] = field(default_factory=set)  # looked up in the knowledge base: none close enough
    runbook_error: str | None = None  # the knowledge base failed: why incidents name no runbook

    @property
    def quiet(self) -> bool:
        """No incident and no alert in the period."""
        return not (self.new or self.ongoing or self.resolved or self.noisiest) and self.gaps.none

    def minutes_to(self, which: str) -> float | None:
        """Median minutes from start to acknowledgement ("ack") or resolution ("resolve") in the period:
        each firing episode of an alert is an incident of its own."""
        seen = {i.incident_id: i for i in self.new + self.ongoing + self.resolved}.values()
        ends = [(i.acknowledged_at if which == "ack" else i.resolved_at, i.started_at) for i in seen]
        spans = [(end - start) / 60 for end, start in ends if end is not None and end >= start]
        return statistics.median(spans) if spans else None


def gather(
    store: IncidentStore, since: dt.datetime, until: dt.datetime, runbook_for: RunbookFor | None = None
) -> IncidentReport:
    """Sort the period's incidents; look up each one's runbook (its annotation, else the knowledge base)."""
    start, end = since.timestamp(), until.timestamp()
    report = IncidentReport(since, until)
    for incident in store.in_period(start, end):
        if incident.resolved_at is not None and start <= incident.resolved_at < end:
            report.resolved.append(incident)
        if incident.started_at >= start:
            report.new.append(incident)
        elif incident.resolved_at is None or incident.resolved_at >= end:
            report.ongoing.append(incident)
        runbook = incident.runbook_url
        if runbook is None and runbook_for is not None and report.runbook_error is None:
            try:
                runbook = runbook_for(incident)
            except RunbookLookupError as exc:  # said once in the digest; the others are not tried
                report.runbook_error = str(exc)
            else:
                if not runbook:
                    report.no_runbook.add(incident.incident_id)
        if runbook:
            report.runbooks[incident.incident_id] = runbook
    report.noisiest, report.noisy_names = store.noisiest(start, end)
    report.gaps = store.gaps(start, end)
    return report


def incident_runbooks(
    retriever: Callable[[], Retriever], min_similarity: float = DEFAULT_MIN_SIMILARITY
) -> RunbookFor:
    """The knowledge base's best match for an incident's title and description, as "title (path)"; None
    when no document's best passage is `min_similarity` similar (a disk alert gets no latency runbook).

    Raises `RunbookLookupError` when the knowledge base fails (not when it is simply not ingested).
    """

    def find(incident: Incident) -> str | None:
        query = f"{incident.title} {incident.description or ''} runbook"
        top = best_match(retriever, query, min_similarity)
        return f"{top.title} ({top.path})" if top else None

    return find


def _duration(incident: Incident, until: dt.datetime) -> str:
    end = incident.resolved_at if incident.resolved_at is not None else until.timestamp()
    minutes = max(end - incident.started_at, 0) / 60
    text = f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"
    return text if incident.resolved_at is not None else f"{text} so far"


def _line(incident: Incident, report: IncidentReport) -> str:
    parts = [f"#{incident.incident_id} {_clip(incident.title, TITLE_CHARS)}"]
    details = [f"severity {incident.severity or '?'}", f"service {incident.service or '?'}"]
    if incident.episode is not None and incident.episode > 1:
        details.insert(0, f"fired again: episode {incident.episode}")
    details.append(f"since {utc(incident.started_at)}, {_duration(incident, report.until)}")
    text = f"- {' '.join(parts)} ({', '.join(details)})"
    runbook = report.runbooks.get(incident.incident_id)
    if runbook:
        return f"{text}\n  runbook: {runbook}"
    if incident.incident_id in report.no_runbook:
        return f"{text}\n  runbook: no runbook found (no knowledge-base document is close enough)"
    return text


def _gaps(gaps: AlertGaps) -> list[str]:
    """What the digest cannot show, and where to look."""
    lines = []
    if gaps.truncated:
        groups = ", ".join(gaps.truncated_groups[:3]) + (" …" if len(gaps.truncated_groups) > 3 else "")
        where = f", in groups {groups}" if groups else ""
        lines.append(
            f"- {_were(gaps.truncated, 'alert')} left out by Alertmanager (truncatedAlerts: its "
            f"webhook_config's max_alerts){where}; Alertmanager's UI lists them"
        )
    if gaps.rejected:
        lines.append(
            f"- {_count(gaps.rejected, 'alert')} could not be read "
            "(Steward's log names each one and the field at fault)"
        )
    if gaps.refused:
        reasons = "; ".join(gaps.refused_reasons[:3]) + (" …" if len(gaps.refused_reasons) > 3 else "")
        lines.append(
            f"- {_were(gaps.refused, 'notification')} refused whole ({reasons}): their alerts are unknown"
        )
    return ["", "Not in this digest:", *lines] if lines else []


def render_text(name: str, report: IncidentReport, quiet: str = "say") -> str:
    """The report as plain text (the Slack message's body too, escaped there)."""
    period = f"{report.since:%Y-%m-%d} to {report.until:%Y-%m-%d}"
    if report.quiet:
        return "" if quiet == "skip" else f"{name} ({period}): all quiet: no incidents and no alerts."
    lines = [f"{name} ({period})"]
    for title, items in (("New", report.new), ("Ongoing", report.ongoing), ("Resolved", report.resolved)):
        if items:
            lines += ["", f"{title}: {len(items)}"]
            lines += [_line(incident, report) for incident in items[:SHOWN]]
            if len(items) > SHOWN:
                lines.append(f"- and {len(items) - SHOWN} more")
    ack, resolve = report.minutes_to("ack"), report.minutes_to("resolve")
    lines += [
        "",
        "Median time to acknowledge: "
        + (f"{ack:.0f} min" if ack is not None else "n/a (no acknowledgements recorded)")
        + "; to resolve: "
        + (f"{resolve:.0f} min" if resolve is not None else "n/a (none resolved)"),
    ]
    if report.noisiest:
        more = report.noisy_names - len(report.noisiest)
        lines += [
            "",
            "Noisiest alerts (notifications in which each fired; alerts of that name): "
            + ", ".join(
                f"{noisy.alertname} ({_count(noisy.notifications, 'notification')}, "
                f"{_count(noisy.alerts, 'alert')})"
                for noisy in report.noisiest
            )
            + (f", and {more} more" if more > 0 else ""),
        ]
    lines += _gaps(report.gaps)
    if report.runbook_error:
        lines += ["", f"Runbooks: only those named by the alerts are shown: {report.runbook_error}"]
    return "\n".join(lines)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _were(number: int, noun: str) -> str:
    return f"{_count(number, noun)} {'was' if number == 1 else 'were'}"


def _clip(text: str, limit: int) -> str:
    """A title in a list, cut to `limit` characters with "…" when longer."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
