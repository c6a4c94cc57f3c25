"""Housekeeping of a serving process: expiry, recovery, policy audit and audit checkpoints, on a timer."""

from __future__ import annotations

import functools
import logging
import threading
import time

from bot.actions.checkpoints import sign_due
from bot.actions.runner import LEASE_SECONDS
from bot.slack.app import SlackApp
from bot.slack.audit import checkpoint_round
from bot.wiring import Services

log = logging.getLogger("steward.slack")


def start_housekeeping(slack: SlackApp, services: Services) -> threading.Thread:
    """Every STEWARD_HOUSEKEEPING_SECONDS: expire overdue requests (fail closed), report runs a dead process
    left behind, audit policy edits, answer the questions a dead replica acknowledged, and sign an audit
    checkpoint when one is due."""
    period = services.settings.housekeeping_seconds
    if slack.recovery is not None:
        slack.recovery.heartbeat()  # alive from the start: its first events are never taken over

    def questions() -> None:
        if slack.recovery is not None:
            slack.recovery.recover(slack.bolt.client, dead_after=3 * period)

    def requests() -> None:
        if slack.actions is not None:
            slack.actions.sweep(slack.bolt.client)
            # A run whose process stopped renewing its lease was interrupted; a live one renews it.
            slack.actions.recover(slack.bolt.client, LEASE_SECONDS)
            slack.actions.release_held(slack.bolt.client)
            slack.actions.run_stranded(slack.bolt.client, 3 * period)
            services.approvals.note_policy()  # an edited policy is audited even before it decides

    def audit() -> None:
        if slack.actions is not None:  # the audit log records guarded actions: signed every few minutes
            sign = functools.partial(sign_due, services.records)
            checkpoint_round(sign, slack.bolt.client, services.settings.audit_channel)

    def loop() -> None:
        while True:
            time.sleep(period)
            # Each part on its own: a failure in one (Slack unreachable while taking over a question)
            # must not keep overdue requests from expiring.
            for part in (questions, requests, audit):
                try:
                    part()
                except Exception:
                    log.exception("housekeeping (%s) failed; trying again in %.0f s", part.__name__, period)

    thread = threading.Thread(target=loop, name="steward-housekeeping", daemon=True)
    thread.start()
    return thread
