"""The digest schedule of `steward serve`: APScheduler fires one cron job per configured digest; a fire
later than the misfire grace is dropped (coalesced), not published late. Each fire is claimed once
across replicas by the publisher (bot/digests/publishing.py)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.digests.config import DigestConfigError, load_digests

log = logging.getLogger("steward.digests")


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
    fire: Callable[[str, dt.datetime], object], config_path: Path, misfire_grace_seconds: int
) -> Any | None:
    """An APScheduler BackgroundScheduler with one cron job per configured digest, each calling
    `fire(name, fire_time)`; None without digests."""
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
            fire(name, latest_fire(schedule, zone, dt.datetime.now(zone)))

        scheduler.add_job(job, CronTrigger.from_crontab(digest.schedule, timezone=zone), id=name, name=name)
    scheduler.start()
    for scheduled in scheduler.get_jobs():
        log.info("digest scheduled digest=%s next=%s", scheduled.id, scheduled.next_run_time)
    return scheduler
