"""Publishing digests: run a configured digest and hand it to an outlet, each scheduled fire once.

Each scheduled fire is claimed in the database (digest name + fire time), so several replicas running
the same schedule publish it once; the outcome (posted, quiet, failed) is recorded with the claim. The
outlet (Slack's is bot/slack/digests.py) renders and posts; this module decides what is published.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from bot.actions.policy.engine import Policy, PolicyError
from bot.actions.policy.gate import PolicyGate
from bot.digests.config import Digest, DigestConfig, DigestConfigError
from bot.digests.drift_digest import MonitorResult, RunbookFinder, is_quiet, run_drift
from bot.digests.reports import ReportRecords, build_report
from bot.errors import Unavailable
from bot.incidents.digest import RunbookFor
from bot.metrics import DIGEST_RUNS
from bot.store.catalog import Catalog
from bot.store.digests import DigestRuns, DriftHistory

log = logging.getLogger("steward.digests")


class OutletRefused(Unavailable):
    """The outlet (Slack) refused a message; `code` is its error code (e.g. not_in_channel)."""

    def __init__(self, message: str, code: str | None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class DriftPost:
    """A drift digest to publish: its models' results as of `today`."""

    name: str
    today: dt.date
    results: list[MonitorResult]
    when_quiet: str  # "say": a quiet digest is one line (the publisher never posts one set to "skip")
    policy: Policy | None  # offers Retrain… / Roll back… for drifting models when it has them


class DigestOutlet(Protocol):
    """Where digests are published: posts and uploads in a channel (raises OutletRefused when refused)."""

    def post_drift(self, channel: str, post: DriftPost) -> str:
        """Post a drift digest (a headline message, one thread reply per model); the headline's id."""
        ...

    def post_text(self, channel: str, text: str) -> str:
        """Post a text digest (a message, the rest in its thread); the first message's id."""
        ...

    def upload_chart(self, channel: str, thread_id: str, model: str, png: bytes, title: str) -> None:
        """A model's drift chart in the digest's thread (a refusal is the outlet's to log)."""
        ...


@dataclass
class DigestPublisher:
    """Runs a configured digest and publishes it; `fire` claims a scheduled fire first."""

    config: Callable[[], DigestConfig]
    runs: DigestRuns
    history: DriftHistory | None = None  # results are stored here after publishing (the next trend)
    policy: Callable[[], PolicyGate] | None = None  # offers Retrain… / Roll back… when its catalog has them
    catalog: Callable[[], Catalog] | None = None  # the governance digest reads documents
    records: Callable[[], ReportRecords] | None = None  # governance and incident digests read these
    incident_runbooks: RunbookFor | None = None  # an incident without a runbook_url: the best match
    find_runbook: RunbookFinder | None = None
    clock: Callable[[], float] = time.time

    def publish(self, out: DigestOutlet, name: str, today: dt.date) -> str | None:
        """Publish digest `name` as of `today`; the first message's id (None: quiet, skipped)."""
        config = self.config()
        digest = config.digests.get(name)
        if digest is None:
            raise DigestConfigError(f"{config.path}: no digest named {name!r}")
        if digest.kind in ("governance", "incidents"):
            return self._publish_report(out, name, digest, today)
        history = self.history
        earlier = (lambda model: history.earlier(name, model, today.isoformat())) if history else None
        results = run_drift(
            digest, today, config.path.parent, find_runbook=self.find_runbook, earlier=earlier, charts=True
        )
        policy = self._policy()
        ts = None
        if not (is_quiet(results) and digest.when_quiet == "skip"):
            ts = out.post_drift(digest.channel, DriftPost(name, today, results, digest.when_quiet, policy))
            for result in results:
                if result.chart is not None:
                    out.upload_chart(digest.channel, ts, result.model, result.chart, result.chart_title)
        if history is not None:
            for result in results:
                history.record(name, result.model, today.isoformat(), result.history_rows())
        return ts

    def channel(self, name: str) -> str:
        """The channel digest `name` is published in (for messages about it)."""
        return self.config().digests[name].channel

    def _publish_report(self, out: DigestOutlet, name: str, digest: Digest, today: dt.date) -> str | None:
        """A governance or incident digest: its text (nothing when quiet and set to skip)."""
        if self.catalog is None or self.records is None:
            raise DigestConfigError(f"a {digest.kind} digest needs the state database (steward serve has it)")
        text = build_report(
            name, digest, self.catalog(), self.records(), today, runbook_for=self.incident_runbooks
        ).text
        return out.post_text(digest.channel, text) if text else None

    def _policy(self) -> Policy | None:
        if self.policy is None:
            return None
        try:
            return self.policy().policy
        except PolicyError as exc:  # the digest still goes out, without action buttons
            log.warning("digest without action buttons: the policy cannot be loaded: %s", exc)
            return None

    def fire(self, out: DigestOutlet, name: str, fire_time: dt.datetime) -> bool:
        """A scheduled fire: claim it, publish it, record the outcome; False when another replica has it."""
        key = fire_time.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            claimed = self.runs.claim(name, key, self.clock())
        except (
            SQLAlchemyError
        ) as exc:  # nothing can be claimed, so nothing is posted (replicas would repeat it)
            reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0][:300]
            log.error(
                "digest not posted: its fire cannot be claimed digest=%s fire=%s error=%s", name, key, reason
            )
            DIGEST_RUNS.labels(name, "not_claimed").inc()
            return False
        if not claimed:
            log.info("digest fire already claimed digest=%s fire=%s", name, key)
            DIGEST_RUNS.labels(name, "claimed_elsewhere").inc()
            return False
        outcome, detail = self._run(out, name, key, fire_time)
        self.runs.finish(name, key, outcome, detail)
        DIGEST_RUNS.labels(name, outcome).inc()
        return True

    def _run(self, out: DigestOutlet, name: str, key: str, fire_time: dt.datetime) -> tuple[str, str | None]:
        """Publish a claimed fire: ("posted", ts), ("quiet", None) or ("failed", the reason)."""
        try:
            config = self.config()
            zone = config.zone(config.digests[name]) if name in config.digests else dt.UTC
            ts = self.publish(out, name, fire_time.astimezone(zone).date())
        except (DigestConfigError, OutletRefused, KeyError) as exc:
            log.error("digest failed digest=%s fire=%s error=%s", name, key, exc)
            return "failed", str(exc)[:500]
        except Exception:
            log.exception("digest crashed digest=%s fire=%s", name, key)
            return "failed", "crashed; see the log"
        log.info("digest posted digest=%s fire=%s ts=%s", name, key, ts)
        return ("posted", ts) if ts else ("quiet", None)
