"""Digests in Slack: rendered as a parent message with one thread reply per model, posted once per fire.

Each scheduled fire is claimed in the database (digest name + fire time), so several replicas running
the same schedule post it once. APScheduler fires the jobs; a fire later than the misfire grace is
dropped (coalesced), not posted late.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.exc import SQLAlchemyError

from bot.actions.policy.engine import Policy, PolicyError
from bot.actions.policy.gate import PolicyGate
from bot.digests.config import Digest, DigestConfig, DigestConfigError, load_digests
from bot.digests.drift_digest import (
    RunbookFinder,
    details,
    headline,
    is_quiet,
    quiet_line,
    run_drift,
)
from bot.digests.reports import build_report
from bot.incidents.digest import RunbookFor
from bot.metrics import DIGEST_RUNS
from bot.slack.app import SlackSetupError
from bot.slack.blocks import MAX_SECTION_TEXT, RenderedMessage, button, split_mrkdwn
from bot.slack.mrkdwn import escape
from bot.slack.payloads import ACTION_DIGEST_REQUEST, DigestActionValue
from bot.slack.posting import Poster
from bot.store.catalog import Catalog
from bot.store.digests import DigestRuns, DriftHistory

log = logging.getLogger("steward.digests")

_ICON = {
    "drift": ":red_circle:",
    "watch": ":large_yellow_circle:",
    "unchecked": ":warning:",  # a column could not be measured: never shown green
    "ok": ":large_green_circle:",
}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


OFFERED = (("retrain-model", "Retrain…"), ("rollback-model", "Roll back…"))
SECTIONS_PER_MESSAGE = 10


def text_messages(text: str) -> list[RenderedMessage]:
    """A long plain-text digest as a parent message and thread replies, each within Slack's limits."""
    sections = [_section(part) for part in split_mrkdwn(escape(text), MAX_SECTION_TEXT)]
    first_line = text.splitlines()[0][:300] if text else ""
    return [
        RenderedMessage(text=first_line, blocks=sections[start : start + SECTIONS_PER_MESSAGE])
        for start in range(0, len(sections), SECTIONS_PER_MESSAGE)
    ]


def _action_buttons(model: str, policy: Policy | None) -> list[dict[str, Any]]:
    """Buttons that open the request form for the model (the guarded-action flow decides from there)."""
    buttons = []
    for action, label in OFFERED:
        spec = policy.actions.get(action) if policy is not None else None
        names = {param.name: param for param in spec.params} if spec else {}
        if spec is None or "model" not in names:
            continue
        params = {"model": model}
        if "env" in names and (names["env"].enum is None or "prod" in names["env"].enum):
            params["env"] = "prod"
        value = DigestActionValue(action=action, params=params).encode()
        buttons.append(button(label, ACTION_DIGEST_REQUEST, value))
    return buttons


def drift_messages(
    name: str, results: list[Any], today: dt.date, quiet: str, policy: Policy | None = None
) -> tuple[RenderedMessage | None, list[RenderedMessage]]:
    """The parent message (None: a quiet digest set to skip) and the thread replies, one per model.

    A model that drifts or is watched gets Retrain… / Roll back… buttons when the policy has them.
    """
    if is_quiet(results):
        if quiet == "skip":
            return None, []
        line = quiet_line(name, results, today)
        return RenderedMessage(text=line, blocks=[_section(f":white_check_mark: {escape(line)}")]), []
    lines = [f"*{escape(name)}* ({today}): drift digest"]
    for result in results:
        icon = _ICON[result.drift.level] if result.drift is not None else ":warning:"
        lines.append(f"{icon} {escape(headline(result))}")
    parent = RenderedMessage(
        text=f"{name} ({today}): drift digest",
        blocks=[_section(part) for part in split_mrkdwn("\n".join(lines), MAX_SECTION_TEXT)][:50],
    )
    replies = []
    for result in results:
        body = "\n".join([f"*{escape(headline(result))}*", *(escape(line) for line in details(result))])
        blocks = [_section(part) for part in split_mrkdwn(body, MAX_SECTION_TEXT)][:49]
        buttons = (
            _action_buttons(result.model, policy)
            if result.drift and result.drift.level in ("watch", "drift")
            else []
        )
        if buttons:
            blocks.append({"type": "actions", "elements": buttons})
        replies.append(RenderedMessage(text=headline(result)[:300], blocks=blocks))
    return parent, replies


@dataclass
class DigestPoster:
    """Runs a configured digest and posts it; `fire` claims a scheduled fire first."""

    config: Callable[[], DigestConfig]
    runs: DigestRuns
    poster: Poster
    history: DriftHistory | None = None  # results are stored here after posting (the next trend)
    policy: Callable[[], PolicyGate] | None = None  # offers Retrain… / Roll back… when its catalog has them
    catalog: Callable[[], Catalog] | None = None  # the governance digest reads documents (records: `runs`)
    incident_runbooks: RunbookFor | None = None  # an incident without a runbook_url: the best match
    find_runbook: RunbookFinder | None = None
    clock: Callable[[], float] = time.time

    def post(self, client: WebClient, name: str, today: dt.date) -> str | None:
        """Post digest `name` as of `today`; returns the parent message's ts (None: quiet, skipped)."""
        config = self.config()
        digest = config.digests.get(name)
        if digest is None:
            raise DigestConfigError(f"{config.path}: no digest named {name!r}")
        if digest.kind in ("governance", "incidents"):
            return self._post_report(client, name, digest, today)
        history = self.history
        earlier = (lambda model: history.earlier(name, model, today.isoformat())) if history else None
        results = run_drift(
            digest, today, config.path.parent, find_runbook=self.find_runbook, earlier=earlier, charts=True
        )
        policy = self._policy()
        parent, replies = drift_messages(name, results, today, digest.when_quiet, policy)
        ts = None
        if parent is not None:
            (ts,) = self.poster.post(client, digest.channel, [parent])
            if replies:
                self.poster.post(client, digest.channel, replies, thread_ts=ts)
            for result in results:
                if result.chart is not None:
                    self._upload(client, digest.channel, ts, result.model, result.chart, result.chart_title)
        if history is not None:
            for result in results:
                history.record(name, result.model, today.isoformat(), result.history_rows())
        return ts

    def _post_report(self, client: WebClient, name: str, digest: Digest, today: dt.date) -> str | None:
        """A governance or incident digest: its text, split into a parent message and thread replies."""
        if self.catalog is None:
            raise DigestConfigError(f"a {digest.kind} digest needs the state database (steward serve has it)")
        text = build_report(
            name, digest, self.catalog(), self.runs.engine, today, runbook_for=self.incident_runbooks
        ).text
        if not text:
            return None
        parent, *replies = text_messages(text)
        (ts,) = self.poster.post(client, digest.channel, [parent])
        if replies:
            self.poster.post(client, digest.channel, replies, thread_ts=ts)
        return ts

    @staticmethod
    def _upload(client: WebClient, channel: str, ts: str, model: str, png: bytes, title: str) -> None:
        """The chart in the digest's thread; a refusal (say, no files:write scope) is logged, not fatal."""
        try:
            client.files_upload_v2(
                channel=channel, thread_ts=ts, file=png, filename=f"{model}-drift.png", title=title
            )
        except SlackApiError as exc:
            log.warning("drift chart not uploaded channel=%s error=%s", channel, exc.response.get("error"))

    def _policy(self) -> Policy | None:
        if self.policy is None:
            return None
        try:
            return self.policy().policy
        except PolicyError as exc:  # the digest still goes out, without action buttons
            log.warning("digest without action buttons: the policy cannot be loaded: %s", exc)
            return None

    def fire(self, client: WebClient, name: str, fire_time: dt.datetime) -> bool:
        """A scheduled fire: claim it, post it, record the outcome; False when another replica has it."""
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
        outcome, detail = self._run(client, name, key, fire_time)
        self.runs.finish(name, key, outcome, detail)
        DIGEST_RUNS.labels(name, outcome).inc()
        return True

    def _run(self, client: WebClient, name: str, key: str, fire_time: dt.datetime) -> tuple[str, str | None]:
        """Post a claimed fire: ("posted", ts), ("quiet", None) or ("failed", the reason)."""
        try:
            config = self.config()
            zone = config.zone(config.digests[name]) if name in config.digests else dt.UTC
            ts = self.post(client, name, fire_time.astimezone(zone).date())
        except (DigestConfigError, SlackApiError, KeyError) as exc:
            log.error("digest failed digest=%s fire=%s error=%s", name, key, exc)
            return "failed", str(exc)[:500]
        except Exception:
            log.exception("digest crashed digest=%s fire=%s", name, key)
            return "failed", "crashed; see the log"
        log.info("digest posted digest=%s fire=%s ts=%s", name, key, ts)
        return ("posted", ts) if ts else ("quiet", None)


def latest_fire(schedule: str, zone: Any, now: dt.datetime) -> dt.datetime:
    """The newest fire time of a cron schedule at or before `now` (the fire APScheduler is running)."""
    from apscheduler.triggers.cron import CronTrigger

    trigger = CronTrigger.from_crontab(schedule, timezone=zone)
    for back in (dt.timedelta(minutes=2), dt.timedelta(hours=2), dt.timedelta(days=2), dt.timedelta(days=32)):
        latest: dt.datetime | None = None
        fire: dt.datetime | None = trigger.get_next_fire_time(None, now - back)
        while fire is not None and fire <= now:
            latest, fire = fire, trigger.get_next_fire_time(fire, fire + dt.timedelta(seconds=1))
        if latest is not None:
            return latest
    return now


def start_scheduler(
    digests: DigestPoster, client: WebClient, config_path: Path, misfire_grace_seconds: int
) -> Any | None:
    """An APScheduler BackgroundScheduler with one cron job per configured digest; None without digests."""
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.cron import CronTrigger

    try:
        config = load_digests(config_path)
    except DigestConfigError as exc:
        log.warning("no digests are scheduled: %s", str(exc).splitlines()[0])
        return None
    if not config.digests:
        return None
    scheduler = BackgroundScheduler(
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": misfire_grace_seconds}
    )
    for name, digest in config.digests.items():
        zone = config.zone(digest)

        def job(name: str = name, schedule: str = digest.schedule, zone: Any = zone) -> None:
            digests.fire(client, name, latest_fire(schedule, zone, dt.datetime.now(zone)))

        scheduler.add_job(job, CronTrigger.from_crontab(digest.schedule, timezone=zone), id=name, name=name)
    scheduler.start()
    for scheduled in scheduler.get_jobs():
        log.info("digest scheduled digest=%s next=%s", scheduled.id, scheduled.next_run_time)
    return scheduler


def post_now(digests: DigestPoster, client: WebClient, name: str, today: dt.date) -> str | None:
    """`steward digest run NAME --post`: post the digest now (not a scheduled fire: nothing is claimed)."""
    try:
        return digests.post(client, name, today)
    except SlackApiError as exc:
        channel = digests.config().digests[name].channel
        raise SlackSetupError(
            f"Slack refused the digest ({exc.response.get('error')}): is Steward invited to {channel}?"
        ) from None
