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
            columns:                    # optional: a column's own method and thresholds
              amount: {method: psi, psi: {watch: 0.1, drift: 0.2}}
        drift:                          # optional: the digest's method and thresholds (docs/reference.md)
          method: {small: test, large: psi}
          psi: {watch: 0.1, drift: 0.2}
          dataset_share: {more_than: 0.3}

Errors name the file, line and field, like the policy files.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bot.actions.policy.yaml_lines import Document, FieldPath, Problems, read_yaml, validate
from bot.digests.drift import NUMERIC_ONLY, Choice, Thresholds
from bot.errors import ConfigurationError


class DigestConfigError(ConfigurationError):
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


MethodName = Literal["auto", "test", "distance", "ks", "chi2", "wasserstein", "jensen_shannon", "psi"]


class Band(_Strict):
    """Where watch and drift begin for one kind of statistic (either may be left at its default)."""

    watch: float | None = Field(default=None, ge=0)
    drift: float | None = Field(default=None, ge=0)


class BySize(_Strict):
    """The method for a small reference sample and for a large one (`small_sample` rows between)."""

    small: Choice = "test"
    large: Choice = "distance"


class ColumnRule(_Strict):
    """How a column is measured: the method and thresholds; what is not given is inherited."""

    method: MethodName | BySize | None = None
    p_value: Band | None = None
    distance: Band | None = None
    psi: Band | None = None
    missing: Band | None = None
    min_rows: int | None = Field(default=None, ge=1)
    small_sample: int | None = Field(default=None, ge=0)

    def apply(self, limits: Thresholds) -> Thresholds:
        """`limits` with what this rule sets."""
        changes: dict[str, object] = {}
        if isinstance(self.method, BySize):
            changes.update(small_method=self.method.small, large_method=self.method.large)
        elif self.method == "auto":
            changes.update(small_method="test", large_method="distance")
        elif self.method is not None:
            changes.update(small_method=self.method, large_method=self.method)
        for name in ("p_value", "distance", "psi", "missing"):
            band: Band | None = getattr(self, name)
            for level in ("watch", "drift"):
                if band is not None and getattr(band, level) is not None:
                    changes[f"{name}_{level}"] = getattr(band, level)
        for name in ("min_rows", "small_sample"):
            if getattr(self, name) is not None:
                changes[name] = getattr(self, name)
        return dataclasses.replace(limits, **changes)  # type: ignore[arg-type]


class DatasetShare(_Strict):
    """The share of drifting columns at which a model drifts: at least, or more than, a fraction."""

    at_least: float | None = Field(default=None, gt=0, le=1)
    more_than: float | None = Field(default=None, ge=0, lt=1)

    @model_validator(mode="after")
    def _one(self) -> DatasetShare:
        if (self.at_least is None) == (self.more_than is None):
            raise ValueError("give exactly one of at_least or more_than, e.g. {more_than: 0.3}")
        return self


class DriftRule(ColumnRule):
    """A digest's or a monitor's method and thresholds, and when the whole model counts as drifting."""

    dataset_share: Annotated[float, Field(gt=0, le=1)] | DatasetShare | None = None  # a number: at least

    def apply(self, limits: Thresholds) -> Thresholds:
        """`limits` with what this rule sets."""
        limits = super().apply(limits)
        share = self.dataset_share
        if isinstance(share, DatasetShare):
            more = share.more_than is not None
            value = share.more_than if share.more_than is not None else share.at_least
            return dataclasses.replace(limits, dataset_share=float(value or 0), dataset_more_than=more)
        if share is not None:
            return dataclasses.replace(limits, dataset_share=share, dataset_more_than=False)
        return limits


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
    drift: DriftRule | None = None  # this model's method and thresholds (over the digest's)
    columns: dict[str, ColumnRule] = Field(default_factory=dict)  # a column's own (over the model's)

    def kinds(self) -> dict[str, Literal["numeric", "categorical"]]:
        """Each monitored column and its type (the prediction is numeric)."""
        kinds: dict[str, Literal["numeric", "categorical"]] = dict.fromkeys(self.numeric, "numeric")
        kinds.update(dict.fromkeys(self.categorical, "categorical"))
        if self.prediction:
            kinds[self.prediction] = "numeric"
        return kinds

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
    drift: DriftRule | None = None  # the method and thresholds of every monitor (else the defaults)

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


def drift_limits(digest: Digest, monitor: Monitor, column: str | None = None) -> Thresholds:
    """The thresholds for a monitor (or one of its columns): defaults, then digest, monitor, column."""
    limits = Thresholds()
    for rule in (digest.drift, monitor.drift, monitor.columns.get(column) if column else None):
        if rule is not None:
            limits = rule.apply(limits)
    return limits


def _check_drift(name: str, digest: Digest, doc: Document, problems: Problems) -> None:
    """Columns that exist, methods that suit each column's type, watch before drift: at their lines."""
    for index, monitor in enumerate(digest.monitors):
        where: FieldPath = ("digests", name, "monitors", index)
        kinds = monitor.kinds()
        for column in monitor.columns:
            if column not in kinds:
                problems.add(
                    doc,
                    (*where, "columns", column),
                    f"not a column of this monitor; name one of {', '.join(kinds)} "
                    "(numeric, categorical or prediction)",
                )
        for column, kind in kinds.items():
            rules: list[tuple[FieldPath, ColumnRule | None]] = [
                (("digests", name, "drift"), digest.drift),
                ((*where, "drift"), monitor.drift),
                ((*where, "columns", column), monitor.columns.get(column)),
            ]
            limits = drift_limits(digest, monitor, column)
            setters = [path for path, rule in rules if rule is not None]
            at = setters[-1] if setters else ("digests", name)
            method_at = next(
                (path for path, rule in reversed(rules) if rule is not None and rule.method is not None), at
            )
            for method in sorted({limits.small_method, limits.large_method} & NUMERIC_ONLY):
                if kind == "categorical":
                    fix = "use" if "columns" in method_at else "give it its own method under columns:"
                    problems.add(
                        doc,
                        (*method_at, "method"),
                        f"{method} compares numbers, but column {column!r} is categorical; "
                        f"{fix} chi2, jensen_shannon, psi, test or distance",
                    )
            for band in ("p_value", "distance", "psi", "missing"):
                watch, drift = getattr(limits, f"{band}_watch"), getattr(limits, f"{band}_drift")
                if (watch < drift) if band == "p_value" else (watch > drift):
                    band_at = next(
                        (path for path, rule in reversed(rules) if rule and getattr(rule, band)), at
                    )
                    order = "above" if band == "p_value" else "below"
                    which = f"column {column!r}: " if "columns" in band_at else ""
                    problems.add(
                        doc,
                        (*band_at, band),
                        f"{which}watch ({watch:g}) must be {order} drift ({drift:g}); set both",
                    )


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
        for name, digest in parsed.digests.items():
            _check_drift(name, digest, doc, problems)
    if problems.items or parsed is None:
        raise DigestConfigError("\n".join(problems.texts()) or f"{path}: empty")
    return DigestConfig(path=path, timezone=parsed.timezone, digests=dict(parsed.digests))
