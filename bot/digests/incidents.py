"""The incident digest: new, ongoing and resolved incidents of a period, how fast they were handled, the
noisiest alerts, and for each incident the runbook to follow."""

from __future__ import annotations

import datetime as dt
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.answers.retrieval import Retriever
from bot.digests.knowledge import RunbookLookupError, best_match
from bot.store.incidents import Incident, IncidentStore, utc

RunbookFor = Callable[[Incident], "str | None"]  # a runbook title and path, or None


@dataclass
class IncidentReport:
    """One period's incidents, sorted into new, ongoing and resolved."""

    since: dt.datetime
    until: dt.datetime
    new: list[Incident] = field(default_factory=list)  # started in the period
    ongoing: list[Incident] = field(default_factory=list)  # started before, still open at its end
    resolved: list[Incident] = field(default_factory=list)  # resolved in the period
    noisiest: list[tuple[str, int]] = field(default_factory=list)
    runbooks: dict[int, str] = field(default_factory=dict)
    runbook_error: str | None = None  # the knowledge base failed: why incidents name no runbook

    @property
    def quiet(self) -> bool:
        """No incident and no alert in the period."""
        return not (self.new or self.ongoing or self.resolved or self.noisiest)

    def minutes_to(self, which: str) -> float | None:
        """Median minutes from start to acknowledgement ("ack") or resolution ("resolve") in the period."""
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
        if runbook:
            report.runbooks[incident.incident_id] = runbook
    report.noisiest = store.noisiest(start, end)
    return report


def incident_runbooks(retriever: Callable[[], Retriever]) -> RunbookFor:
    """The knowledge base's best match for an incident's title and description, as "title (path)".

    Raises `RunbookLookupError` when the knowledge base fails (not when it is simply not ingested).
    """

    def find(incident: Incident) -> str | None:
        top = best_match(retriever, f"{incident.title} {incident.description or ''} runbook")
        return f"{top.title} ({top.path})" if top else None

    return find


def _duration(incident: Incident, until: dt.datetime) -> str:
    end = incident.resolved_at if incident.resolved_at is not None else until.timestamp()
    minutes = max(end - incident.started_at, 0) / 60
    text = f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"
    return text if incident.resolved_at is not None else f"{text} so far"


def _line(incident: Incident, report: IncidentReport) -> str:
    parts = [f"#{incident.incident_id} {incident.title}"]
    details = [f"severity {incident.severity or '?'}", f"service {incident.service or '?'}"]
    details.append(f"since {utc(incident.started_at)}, {_duration(incident, report.until)}")
    text = f"- {' '.join(parts)} ({', '.join(details)})"
    runbook = report.runbooks.get(incident.incident_id)
    return f"{text}\n  runbook: {runbook}" if runbook else text


def render_text(name: str, report: IncidentReport, quiet: str = "say") -> str:
    """The report as plain text (the Slack message's body too, escaped there)."""
    period = f"{report.since:%Y-%m-%d} to {report.until:%Y-%m-%d}"
    if report.quiet:
        return "" if quiet == "skip" else f"{name} ({period}): all quiet: no incidents and no alerts."
    lines = [f"{name} ({period})"]
    for title, items in (("New", report.new), ("Ongoing", report.ongoing), ("Resolved", report.resolved)):
        if items:
            lines += ["", f"{title}: {len(items)}"]
            lines += [_line(incident, report) for incident in items[:15]]
    ack, resolve = report.minutes_to("ack"), report.minutes_to("resolve")
    lines += [
        "",
        "Median time to acknowledge: "
        + (f"{ack:.0f} min" if ack is not None else "n/a (no acknowledgements recorded)")
        + "; to resolve: "
        + (f"{resolve:.0f} min" if resolve is not None else "n/a (none resolved)"),
    ]
    if report.noisiest:
        lines += [
            "",
            "Noisiest alerts: " + ", ".join(f"{n} ({count} notifications)" for n, count in report.noisiest),
        ]
    if report.runbook_error:
        lines += ["", f"Runbooks: only those named by the alerts are shown: {report.runbook_error}"]
    return "\n".join(lines)
