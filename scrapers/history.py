"""The history tables' partitions: one per table and UTC day, made ahead and dropped whole.

``ranking_entries`` and ``price_quotes`` are partitioned by ``day`` (see
``topcoins.models``).  Every run makes sure that the partitions of its own day and the
next exist, in a short transaction of its own before it writes, since making one locks
its parent against readers until commit.  Retention then drops a day at once: no row is
deleted, none is left for VACUUM, and the pruning costs the same at 200 coins and 5000.

Runs are forgotten by the day they ran, and a day's partitions are dropped once no run
of that day is left: the latest good run of each kind stays, whatever its age, since the
API serves it.  Partitions are named ``<table>_YYYYMMDD``; one named otherwise is not
ours and is left alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import CursorResult, delete, select, text
from sqlalchemy.orm import Session

from topcoins.models import (
    HISTORY_EPOCH,
    PriceQuote,
    RankingEntry,
    ScrapeRun,
    history_day,
    latest_runs,
)

# In the order top_coins reads them, which is the order they are locked in.
HISTORY_TABLES = (RankingEntry.__tablename__, PriceQuote.__tablename__)
_SUFFIX = re.compile(r"_(\d{8})$")

_PARTITIONS = text(
    "SELECT child.relname, parent.relname FROM pg_inherits i "
    "JOIN pg_class child ON child.oid = i.inhrelid "
    "JOIN pg_class parent ON parent.oid = i.inhparent "
    "WHERE parent.relname = ANY(:tables) AND parent.relkind = 'p' "
    "AND parent.relnamespace = current_schema()::regnamespace"
)
# Every BRIN index of the given partitions (those that exist), summarised in one statement.
_SUMMARIZE = text(
    "SELECT brin_summarize_new_values(x.indexrelid) FROM pg_index x "
    "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_am am ON am.oid = i.relam "
    "WHERE am.amname = 'brin' AND x.indrelid IN "
    "(SELECT to_regclass(name) FROM unnest(CAST(:partitions AS text[])) AS name)"
)


def partition_name(table: str, day: int) -> str:
    return f"{table}_{HISTORY_EPOCH + timedelta(days=day):%Y%m%d}"


def partition_day(name: str) -> int | None:
    found = _SUFFIX.search(name)
    if found is None:
        return None
    try:
        moment = datetime.strptime(found.group(1), "%Y%m%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    return history_day(moment)


def ensure_partitions(session: Session, day: int) -> list[str]:
    """The partitions of ``day`` and the day after, made if missing; the caller commits.

    The lock, taken only when one is missing, also keeps two runs (a ranking and a prices
    run) from making the same partition at once.
    """
    wanted = {partition_name(t, d): (t, d) for t in HISTORY_TABLES for d in (day, day + 1)}
    missing = wanted.keys() - _partitions(session)
    if not missing:
        return []
    _lock_history(session)
    missing -= _partitions(session)
    quote = session.get_bind().dialect.identifier_preparer.quote
    for name in sorted(missing):
        table, start = wanted[name]
        session.execute(
            text(
                f"CREATE TABLE {quote(name)} PARTITION OF {quote(table)} "
                f"FOR VALUES FROM ({int(start)}) TO ({int(start) + 1})"
            )
        )
    return sorted(missing)


@dataclass(frozen=True)
class Pruned:
    partitions: list[str]
    runs: int


def prune(session: Session, retention: timedelta, now: datetime | None = None) -> Pruned:
    """Forget the runs of the days before the cutoff, then drop the days no run is left on.

    The latest good run of each kind is never forgotten, whatever its age: its day's
    partitions stay, holding the rows of the forgotten runs of that day too, until a newer
    good run lets the day go.
    """
    cutoff = history_day((now or datetime.now(UTC)) - retention)
    result = session.execute(
        delete(ScrapeRun).where(
            ScrapeRun.day < cutoff, ScrapeRun.id.not_in(select(latest_runs.c.id))
        )
    )
    assert isinstance(result, CursorResult)
    kept = set(session.scalars(select(ScrapeRun.day).where(ScrapeRun.day < cutoff).distinct()))
    doomed = sorted(
        name
        for name in _partitions(session)
        if (day := partition_day(name)) is not None and day < cutoff and day not in kept
    )
    if doomed:
        _lock_history(session)
        quote = session.get_bind().dialect.identifier_preparer.quote
        for name in doomed:
            session.execute(text(f"DROP TABLE {quote(name)}"))
    return Pruned(doomed, result.rowcount)


def summarize(session: Session, day: int) -> None:
    """Index the pages a run just wrote, so that the next read of it skips all others.

    A BRIN index learns of new pages only when summarised, and until then a read scans
    them all; VACUUM would do it, but only after a fifth of the table is new.
    """
    session.execute(_SUMMARIZE, {"partitions": [partition_name(t, day) for t in HISTORY_TABLES]})


def _partitions(session: Session) -> set[str]:
    return {name for name, _ in session.execute(_PARTITIONS, {"tables": list(HISTORY_TABLES)})}


def _lock_history(session: Session) -> None:
    """Both parents, before any partition is made or dropped, in the order readers lock them.

    Making or dropping a partition locks its parent exclusively.  Taken one at a time, a
    reader of ``top_coins`` holding ``ranking_entries`` and waiting for ``price_quotes``
    would deadlock with us; taken up front, in the view's order, readers just wait.
    """
    quote = session.get_bind().dialect.identifier_preparer.quote
    session.execute(
        text(f"LOCK TABLE {', '.join(quote(t) for t in HISTORY_TABLES)} IN ACCESS EXCLUSIVE MODE")
    )
