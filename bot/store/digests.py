"""Digest runs: one row per digest and scheduled fire time, so several replicas post each fire once."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

metadata = sa.MetaData()

digest_runs = sa.Table(
    "digest_runs",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("fire_time", sa.String(32), primary_key=True),  # ISO 8601 UTC, e.g. 2026-11-24T07:00:00Z
    sa.Column("claimed_at", sa.Float, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # running, posted, quiet, failed
    sa.Column("detail", sa.Text, nullable=True),  # the posted message's ts, or what failed
)


drift_results = sa.Table(
    "drift_results",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("day", sa.String(10), primary_key=True),  # the day the digest was made, YYYY-MM-DD
    sa.Column("feature", sa.String(128), primary_key=True),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("level", sa.String(8), nullable=False),
    sa.Column("missing_current", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class EarlierResult:
    """A column's result in an earlier digest: the trend a new digest compares with."""

    day: str
    method: str
    score: float
    level: str


class DriftHistory:
    """Drift results of posted digests, per digest, model, day and column."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, digest: str, model: str, day: str, rows: list[dict[str, object]]) -> None:
        """Store one model's columns for `day` (a digest posted again that day replaces them)."""
        with self.engine.begin() as connection:
            connection.execute(
                sa.delete(drift_results).where(
                    drift_results.c.digest == digest,
                    drift_results.c.model == model,
                    drift_results.c.day == day,
                )
            )
            if rows:
                connection.execute(
                    sa.insert(drift_results),
                    [{"digest": digest, "model": model, "day": day, **row} for row in rows],
                )

    def earlier(self, digest: str, model: str, before: str) -> dict[str, EarlierResult]:
        """Each column's most recent result from a digest made before `before` (a day)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(drift_results)
                .where(
                    drift_results.c.digest == digest,
                    drift_results.c.model == model,
                    drift_results.c.day < before,
                )
                .order_by(drift_results.c.day)
            ).all()
        return {row.feature: EarlierResult(row.day, row.method, row.score, row.level) for row in rows}


class DigestRuns:
    """Claims and outcomes of scheduled digest fires in the state database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def claim(self, digest: str, fire_time: str, now: float) -> bool:
        """True for exactly one caller per (digest, fire time), in every process sharing the database."""
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    sa.insert(digest_runs).values(
                        digest=digest, fire_time=fire_time, claimed_at=now, status="running"
                    )
                )
        except IntegrityError:
            return False
        return True

    def finish(self, digest: str, fire_time: str, status: str, detail: str | None) -> None:
        """Record how the claimed fire ended."""
        with self.engine.begin() as connection:
            connection.execute(
                sa.update(digest_runs)
                .where(digest_runs.c.digest == digest, digest_runs.c.fire_time == fire_time)
                .values(status=status, detail=detail)
            )

    def runs(self, digest: str) -> list[dict[str, object]]:
        """The recorded fires of a digest, oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(digest_runs).where(digest_runs.c.digest == digest).order_by(digest_runs.c.fire_time)
            )
            return [dict(row._mapping) for row in rows]
