"""The drift digest: each monitor's data compared with its reference, the findings ranked, rendered as text.

Computing is pure apart from reading the sources; a source that fails becomes a finding that says
which source and why, never a crash and never a silent skip.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bot.answers.retrieval import Retriever
from bot.digests.charts import distribution_png
from bot.digests.config import Digest, Monitor, drift_limits
from bot.digests.drift import DatasetDrift, FeatureDrift, Thresholds, dataset_drift
from bot.digests.knowledge import RunbookLookupError, best_match, by_path
from bot.digests.sources import SourceError, describe, load
from bot.store.digests import EarlierResult

RunbookFinder = Callable[[Monitor], "Runbook | None"]
Earlier = Callable[[str], Mapping[str, EarlierResult]]  # model -> each column's earlier result


@dataclass(frozen=True)
class Runbook:
    """The document that says what to do about a drifting model."""

    title: str
    path: str


@dataclass(frozen=True)
class MonitorResult:
    """One model's comparison, or why it could not be made."""

    model: str
    reference: str  # the source and window, as the digest names them
    current: str
    drift: DatasetDrift | None = None
    reference_rows: int = 0
    current_rows: int = 0
    error: str | None = None
    runbook: Runbook | None = None
    runbook_error: str | None = None  # why no runbook is named: the knowledge base failed
    earlier: Mapping[str, EarlierResult] = field(default_factory=dict)  # the trend: each column last time
    chart: bytes | None = field(default=None, repr=False)  # PNG: the most drifted column, both samples
    chart_title: str = ""

    def history_rows(self) -> list[dict[str, object]]:
        """This result's columns as stored for the next digest's trend."""
        if self.drift is None:
            return []
        return [
            {
                "feature": f.feature,
                "method": f.method,
                "score": f.score,
                "level": f.worst,
                "missing_current": f.missing_current,
            }
            for f in self.drift.features
            if f.level != "unchecked"  # nothing was measured, so there is no score to compare later
        ]


def knowledge_runbooks(retriever: Callable[[], Retriever]) -> RunbookFinder:
    """Runbooks from the knowledge base: the monitor's own, or the best match for the model's drift.

    Raises `RunbookLookupError` when the knowledge base fails (not when it is simply not ingested).
    """

    def find(monitor: Monitor) -> Runbook | None:
        if monitor.runbook:
            document = by_path(retriever, monitor.runbook)
            return Runbook(document.title if document else monitor.runbook, monitor.runbook)
        top = best_match(retriever, f"{monitor.model} model drift what to do retrain roll back")
        return Runbook(top.title, top.path) if top else None

    return find


@dataclass(frozen=True)
class _DigestRun:
    """What every monitor of one drift digest run is checked with."""

    today: dt.date
    base: Path
    find_runbook: RunbookFinder | None
    earlier: Earlier | None
    charts: bool

    def check(
        self, monitor: Monitor, limits: Thresholds | None, columns: Mapping[str, Thresholds] | None
    ) -> MonitorResult:
        """Compare the current window with the reference; a failing source is reported in the result.

        `limits` are the monitor's thresholds and `columns` a column's own (`config.drift_limits`)."""
        reference_name, current_name = (
            describe(monitor.reference, self.today),
            describe(monitor.current, self.today),
        )
        kinds = monitor.kinds()
        try:
            reference = load(monitor.reference, kinds, monitor.date_column, self.today, self.base)
        except SourceError as exc:
            return MonitorResult(monitor.model, reference_name, current_name, error=f"reference: {exc}")
        try:
            current = load(monitor.current, kinds, monitor.date_column, self.today, self.base)
        except SourceError as exc:
            return MonitorResult(monitor.model, reference_name, current_name, error=f"current: {exc}")
        rows = {
            "reference": len(next(iter(reference.values()))),
            "current": len(next(iter(current.values()))),
        }
        for side, count in rows.items():
            if count == 0:
                source = reference_name if side == "reference" else current_name
                return MonitorResult(
                    monitor.model, reference_name, current_name, error=f"{side}: no rows in {source}"
                )
        drift = dataset_drift(kinds, reference, current, limits, columns)
        runbook, runbook_error = None, None
        if self.find_runbook is not None and drift.level in ("watch", "drift"):
            try:
                runbook = self.find_runbook(monitor)
            except RunbookLookupError as exc:
                runbook_error = str(exc)
        chart, title = None, ""
        moved = drift.drifted or tuple(f for f in drift.features if f.worst == "watch")
        if self.charts and moved:
            most = moved[0]
            chart = distribution_png(monitor.model, most, reference[most.feature], current[most.feature])
            title = f"{monitor.model}: {most.feature}, reference vs current"
        return MonitorResult(
            monitor.model,
            reference_name,
            current_name,
            drift=drift,
            reference_rows=rows["reference"],
            current_rows=rows["current"],
            runbook=runbook,
            runbook_error=runbook_error,
            earlier=self.earlier(monitor.model) if self.earlier is not None else {},
            chart=chart,
            chart_title=title,
        )


def run_drift(
    digest: Digest,
    today: dt.date,
    base: Path,
    limits: Thresholds | None = None,
    find_runbook: RunbookFinder | None = None,
    earlier: Earlier | None = None,
    charts: bool = False,
) -> list[MonitorResult]:
    """Every monitor of the digest, drifting models first; `earlier` gives the trend, `charts` PNGs.

    Thresholds come from the digest's configuration (`drift:` and each monitor's `columns:`), unless
    `limits` is given for all of them."""
    run = _DigestRun(today, base, find_runbook, earlier, charts)
    results = [
        run.check(
            monitor,
            limits or drift_limits(digest, monitor),
            None if limits else {c: drift_limits(digest, monitor, c) for c in monitor.columns},
        )
        for monitor in digest.monitors
    ]
    order = {"drift": 0, "watch": 1, "unchecked": 2, "ok": 3}
    return sorted(results, key=lambda r: (r.error is None, order[r.drift.level] if r.drift else 0))


# ---- text (the terminal, and the fallback text of the Slack message)

_MARK = {"drift": "DRIFT", "watch": "watch", "unchecked": "not checked", "ok": "ok"}
_METHOD = {
    "ks": "KS p",
    "chi2": "chi-square p",
    "wasserstein": "Wasserstein/std",
    "jensen_shannon": "Jensen-Shannon",
    "psi": "PSI",
}


def _feature_line(feature: FeatureDrift, before: EarlierResult | None) -> str:
    if feature.level == "unchecked":
        reason = feature.unchecked if feature.worst == "unchecked" else f"not checked: {feature.unchecked}"
        text = f"{feature.feature}: {_MARK[feature.worst]}: {reason}"
    else:
        text = f"{feature.feature}: {_MARK[feature.worst]}: {_METHOD[feature.method]} {feature.score:.3g}"
        if feature.level != feature.worst:
            text += f" ({_MARK[feature.level]})"
    if feature.missing_level != "ok":
        text += f"; missing values {feature.missing_reference:.0%} -> {feature.missing_current:.0%}"
    if feature.new_categories:
        text += f"; new: {', '.join(feature.new_categories[:5])}"
    text += "".join(f"; {note}" for note in feature.notes)
    if before is not None and before.method == feature.method:
        text += f"; was {before.score:.3g} ({before.level}) on {before.day}"
    return text


def is_quiet(results: list[MonitorResult]) -> bool:
    """Nothing to report: every model was checked and none moved."""
    return all(r.error is None and r.drift is not None and r.drift.level == "ok" for r in results)


def quiet_line(name: str, results: list[MonitorResult], today: dt.date) -> str:
    """The one line of an all-quiet digest."""
    return f"{name} ({today}): all quiet: no drift in {len(results)} model(s)."


def headline(result: MonitorResult) -> str:
    """One model's verdict in a line."""
    if result.error is not None or result.drift is None:
        return f"{result.model}: NOT CHECKED: {result.error}"
    drift = result.drift
    unchecked = f", {len(drift.unchecked)} not checked" if drift.unchecked else ""
    return (
        f"{result.model}: {_MARK[drift.level]}: {drift.drifted_share:.0%} of {len(drift.features)} "
        f"columns drifted{unchecked} ({result.current_rows:,} current rows vs {result.reference_rows:,} "
        "reference)"
    )


def details(result: MonitorResult) -> list[str]:
    """The lines under a model's headline: windows, moving columns, the runbook."""
    if result.drift is None:
        return []
    lines = [f"current: {result.current}", f"reference: {result.reference}"]
    shown = [f for f in result.drift.features if f.worst != "ok"]
    ordered = sorted(shown, key=lambda f: ("drift", "watch", "unchecked").index(f.worst))
    lines += [f"- {_feature_line(f, result.earlier.get(f.feature))}" for f in ordered]
    if result.runbook is not None:
        lines.append(f"what to do: {result.runbook.title} ({result.runbook.path})")
    elif result.runbook_error is not None:
        lines.append(f"what to do: no runbook named: {result.runbook_error}")
    return lines


def render_text(name: str, results: list[MonitorResult], today: dt.date, quiet: str = "say") -> str:
    """The digest as plain text; an all-quiet period is one line (or nothing when `quiet` is skip)."""
    if is_quiet(results):
        return "" if quiet == "skip" else quiet_line(name, results, today)
    lines = [f"{name} ({today})"]
    for result in results:
        lines += ["", headline(result), *(f"  {line}" for line in details(result))]
    return "\n".join(lines)
