"""The digest configuration (`digests.yaml`): which digests run when, where they post, what they watch.

    timezone: Europe/Berlin             # for every schedule unless a digest names its own
    digests:
      model-drift:                      # `steward digest run model-drift`
        kind: drift
        schedule: "0 8 * * mon-fri"     # cron: minute hour day-of-month month day-of-week
        channel: C0MLOPS
        when_quiet: say                 # say: a one-line "all quiet"; skip: post nothing
        monitors:
          - model: fraud-scorer
            reference: {csv: "data/predictions/*.csv", from: 2026-10-01, to: 2026-10-14}
            current: {csv: "data/predictions/*.csv", last_days: 7}
            date_column: day
            numeric: [amount, account_age_days]
            categorical: [merchant_category, country, device]
            prediction: score

Errors name the file, line and field, like the policy files.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bot.actions.policy_yaml import Document, Problems, read_yaml, validate


class DigestConfigError(Exception):
    """The digest configuration cannot be used; the message lists every problem with file and line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Source(_Strict):
    """Where rows come from: CSV or Parquet files (a glob), or a SQL query over a SQLAlchemy URL."""

    csv: str | None = None
    parquet: str | None = None
    sql: str | None = None
    url: str | None = None  # the database of `sql` (`${NAME}` is read from the environment)
    start: dt.date | None = Field(default=None, alias="from")
    end: dt.date | None = Field(default=None, alias="to")
    last_days: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_kind(self) -> Source:
        kinds = [name for name in ("csv", "parquet", "sql") if getattr(self, name)]
        if len(kinds) != 1:
            raise ValueError("give exactly one of csv, parquet or sql")
        if self.sql and not self.url:
            raise ValueError("a sql source needs url (a SQLAlchemy URL)")
        if self.last_days is not None and (self.start or self.end):
            raise ValueError("give either last_days or from/to, not both")
        return self


class Monitor(_Strict):
    """One model's drift watch: a reference data set, the current window, and the columns to compare."""

    model: str
    reference: Source
    current: Source
    date_column: str | None = None  # needed for from/to and last_days
    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    prediction: str | None = None  # a numeric column, compared like a feature and reported apart
    runbook: str | None = None  # a path in the knowledge base; else the best match is looked up

    @model_validator(mode="after")
    def _columns(self) -> Monitor:
        if not (self.numeric or self.categorical or self.prediction):
            raise ValueError("name at least one column in numeric, categorical or prediction")
        windowed = any(s.start or s.end or s.last_days for s in (self.reference, self.current))
        if windowed and not self.date_column:
            raise ValueError("from/to and last_days need date_column (the column holding each row's date)")
        return self


class Digest(_Strict):
    """One scheduled digest."""

    kind: Literal["drift", "incidents", "governance"]
    schedule: str
    channel: str
    timezone: str | None = None
    when_quiet: Literal["say", "skip"] = "say"
    period_days: int = Field(default=7, ge=1)  # incidents and governance: the days before the digest
    monitors: tuple[Monitor, ...] = ()

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value)
        except ValueError as exc:
            raise ValueError(f"not a cron expression ({exc}); e.g. '0 8 * * mon-fri'") from None
        return value

    @model_validator(mode="after")
    def _monitors(self) -> Digest:
        if self.kind == "drift" and not self.monitors:
            raise ValueError("a drift digest needs at least one monitor")
        return self


class DigestFile(_Strict):
    """The whole file."""

    timezone: str = "UTC"
    digests: dict[str, Digest] = Field(default_factory=dict)


class DigestConfig(BaseModel):
    """The loaded configuration and where it came from."""

    model_config = ConfigDict(frozen=True)

    path: Path
    timezone: str
    digests: dict[str, Digest]

    def zone(self, digest: Digest) -> ZoneInfo:
        """The timezone a digest's schedule is read in."""
        return ZoneInfo(digest.timezone or self.timezone)


def load_digests(path: Path) -> DigestConfig:
    """Read and check the file; raises DigestConfigError naming every problem's file, line and field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DigestConfigError(
            f"{path}: cannot be read ({exc.strerror}); set STEWARD_DIGESTS_FILE to your digests.yaml"
        ) from None
    doc, problems = Document(str(path)), Problems()
    data = read_yaml(text, doc, problems)
    parsed = validate(DigestFile, data, doc, (), problems) if data is not None else None
    if parsed is not None:
        zones: list[tuple[tuple[str, ...], str]] = [(("timezone",), parsed.timezone)]
        zones += [
            (("digests", name, "timezone"), d.timezone) for name, d in parsed.digests.items() if d.timezone
        ]
        for key, zone in zones:
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                problems.add(doc, key, f"unknown timezone {zone!r}; use an IANA name such as Europe/Berlin")
    if problems.items or parsed is None:
        raise DigestConfigError("\n".join(problems.texts()) or f"{path}: empty")
    return DigestConfig(path=path, timezone=parsed.timezone, digests=dict(parsed.digests))
