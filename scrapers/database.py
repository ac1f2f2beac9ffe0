"""The scrapers' database sessions: held to the run's deadline, and gone with the scraper.

Every statement of a run gets what remains of its deadline as ``statement_timeout`` and
``lock_timeout``, set just before the statement rather than once per transaction: a
transaction whose first statement waited long must not grant the next one as much again.

A scraper can die without closing its sessions (killed, or its node gone).  The server
sees a closed socket at once only while it is reading from it, so it is also asked to
check on the client during a statement (``client_connection_check_interval``, PostgreSQL
14 and later) and to probe a silent one (``tcp_keepalives_*``, as the client does).
"""

from __future__ import annotations

import math
import re
from functools import partial
from typing import Any

from psycopg import errors
from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from topcoins.db import Timeouts, make_engine

from .deadline import Deadline, DeadlineReached

# How a reason about the database begins, as a provider's reason begins with its name.
DATABASE_PREFIX = "database: "
# A lock wait gives up this much before its statement would be cancelled, so that a run
# blocked by a lock says so, rather than only that its statement was cancelled.
LOCK_MARGIN_SECONDS = 0.25
# A cancelled statement this close to the deadline was cancelled by it.
CANCEL_SLACK_SECONDS = 1.0
# libpq and psycopg wait at least this long for a connection, whatever they are given.
MIN_CONNECT_SECONDS = 2
CLIENT_CHECK_INTERVAL_MS = 1000
_TABLE = re.compile(r'\b(?:FROM|INTO|UPDATE|JOIN)\s+"?(\w+)', re.IGNORECASE)


def scraper_engine(url: str, *, application_name: str, deadline: Deadline) -> Engine:
    """An engine whose connections are opened within ``deadline`` and watch their client."""
    engine = make_engine(url, application_name=application_name)
    event.listen(engine, "do_connect", partial(_connect_within, deadline))
    event.listen(engine, "connect", _watch_the_client)
    return engine


def bound(connection: Connection, deadline: Deadline) -> None:
    """Every statement ``connection`` sends from now on ends by ``deadline``."""
    event.listen(connection, "before_cursor_execute", partial(_limit, deadline))


def timeout_reason(exc: DBAPIError, deadline: Deadline) -> str | None:
    """The one-line reason of a statement the deadline cancelled, else ``None``."""
    if isinstance(exc.orig, errors.LockNotAvailable):
        table = _table(exc.statement)
        how = f"waiting for a lock on {table}" if table else "waiting for a lock"
    elif isinstance(exc.orig, errors.QueryCanceled) and (
        deadline.remaining() < CANCEL_SLACK_SECONDS
    ):
        how = f"during {_subject(exc.statement)}"
    else:
        return None
    return deadline.ran_out(how)


def database_reason(exc: SQLAlchemyError) -> str:
    """The driver's first line: says what failed without echoing the connection URL."""
    cause = getattr(exc, "orig", None) or exc
    first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return f"{type(cause).__name__}: {first}"


def _limit(
    deadline: Deadline,
    conn: Connection,
    cursor: Any,
    statement: str,
    parameters: Any,
    context: Any,
    executemany: bool,
) -> None:
    left = deadline.remaining()
    if left <= 0:
        raise DeadlineReached(DATABASE_PREFIX + deadline.ran_out(f"before {_subject(statement)}"))
    cursor.execute(
        "SELECT set_config('statement_timeout', %(statement)s, true), "
        "set_config('lock_timeout', %(lock)s, true)",
        {
            "statement": str(max(1, int(left * 1000))),
            "lock": str(max(1, int((left - LOCK_MARGIN_SECONDS) * 1000))),
        },
    )


def _connect_within(
    deadline: Deadline, dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]
) -> None:
    left = math.ceil(deadline.remaining())
    cparams["connect_timeout"] = max(MIN_CONNECT_SECONDS, min(cparams["connect_timeout"], left))


def _watch_the_client(dbapi_connection: Any, record: Any) -> None:
    """Server-side settings of the session; a server before 14 lacks the client check."""
    limits = Timeouts()
    settings = {
        "tcp_keepalives_idle": limits.keepalive_idle,
        "tcp_keepalives_interval": limits.keepalive_interval,
        "tcp_keepalives_count": limits.keepalive_count,
    }
    if dbapi_connection.info.server_version >= 140000:
        settings["client_connection_check_interval"] = CLIENT_CHECK_INTERVAL_MS
    with dbapi_connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config(name, setting, false) "
            "FROM unnest(%(names)s::text[], %(settings)s::text[]) AS s (name, setting)",
            {"names": list(settings), "settings": [str(v) for v in settings.values()]},
        )
    dbapi_connection.commit()


def _table(statement: str | None) -> str | None:
    """The table a statement names first: where an operator looks in ``pg_locks``."""
    found = _TABLE.search(statement or "")
    return found.group(1) if found else None


def _subject(statement: str | None) -> str:
    table = _table(statement)
    return f"a statement on {table}" if table else "a statement"
