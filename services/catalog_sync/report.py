"""Reading the reporting side back: the watermark and the batch log, for the demo and tests."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql


@dataclass(frozen=True)
class Watermark:
    last_lsn: int
    last_source_ts: datetime
    changes_loaded: int
    batches: int


@dataclass(frozen=True)
class Batch:
    changes: int
    loaded: int
    rejected: int
    last_lsn: int
    last_source_ts: datetime
    loaded_at: datetime

    @property
    def lag_s(self) -> float:
        """From the commit of the batch's latest change to its load."""
        return (self.loaded_at - self.last_source_ts).total_seconds()


def watermark(
    conn: psycopg.Connection[tuple[object, ...]], schema: str, pipeline: str
) -> Watermark | None:
    row = conn.execute(
        sql.SQL(
            "SELECT last_lsn, last_source_ts, changes_loaded, batches"
            " FROM {}.sync_watermark WHERE pipeline = %s"
        ).format(sql.Identifier(schema)),
        (pipeline,),
    ).fetchone()
    return None if row is None else Watermark(*row)  # type: ignore[arg-type]


def batches(
    conn: psycopg.Connection[tuple[object, ...]], schema: str, pipeline: str, after_id: int = 0
) -> list[Batch]:
    """The loads logged after ``after_id`` (see ``last_batch_id``), oldest first."""
    rows = conn.execute(
        sql.SQL(
            "SELECT changes, loaded, rejected, last_lsn, last_source_ts, loaded_at"
            " FROM {}.sync_batches WHERE pipeline = %s AND id > %s ORDER BY id"
        ).format(sql.Identifier(schema)),
        (pipeline, after_id),
    ).fetchall()
    return [Batch(*row) for row in rows]  # type: ignore[arg-type]


def last_batch_id(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> int:
    row = conn.execute(
        sql.SQL("SELECT coalesce(max(id), 0) FROM {}.sync_batches").format(sql.Identifier(schema))
    ).fetchone()
    return int(row[0]) if row else 0  # type: ignore[call-overload]


@dataclass(frozen=True)
class Figures:
    """What a run of the pipeline did, for a summary line."""

    changes: int
    """Changes that went through (loaded, rejected, or redelivered)."""
    loaded: int
    rejected: int
    batches: int
    batch_sizes: tuple[int, int, int]
    """Smallest, median and largest batch."""
    lag_s: tuple[float, float]
    """Median and largest commit-to-load time of a batch."""
    seconds: float
    """From the first change's commit to the last load."""

    @property
    def rows_per_s(self) -> float:
        return self.changes / self.seconds if self.seconds > 0 else 0.0

    @classmethod
    def of(cls, loads: list[Batch], began: datetime) -> Figures:
        if not loads:
            raise ValueError("no batch was loaded")
        sizes = sorted(b.changes for b in loads)
        lags = sorted(b.lag_s for b in loads)
        return cls(
            changes=sum(sizes),
            loaded=sum(b.loaded for b in loads),
            rejected=sum(b.rejected for b in loads),
            batches=len(loads),
            batch_sizes=(sizes[0], int(statistics.median(sizes)), sizes[-1]),
            lag_s=(statistics.median(lags), lags[-1]),
            seconds=(max(b.loaded_at for b in loads) - began).total_seconds(),
        )

    def __str__(self) -> str:
        smallest, median, largest = self.batch_sizes
        return (
            f"{self.changes} changes in {self.batches} batches "
            f"(sizes {smallest}/{median}/{largest} min/median/max): "
            f"{self.loaded} loaded, {self.rejected} rejected to the DLQ; "
            f"lag {self.lag_s[0]:.2f}s median, {self.lag_s[1]:.2f}s max; "
            f"{self.rows_per_s:,.0f} changes/s over {self.seconds:.1f}s"
        )
