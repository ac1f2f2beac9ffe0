"""The last good list on the pod's local disk, for a worker that starts while the database is away.

Each swap writes the list atomically (a new file renamed over the old), so a worker that
gunicorn starts or restarts during an outage serves what its siblings served instead of
nothing.  The file lives in the pod's own ``/tmp`` (an emptyDir): it is a cache of the
database, never a source of truth, and the database wins as soon as it answers.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from .toplist import Coin, Snapshot, TopList

log = logging.getLogger("api.saved_list")

FILE_NAME = "toplist.json"
FORMAT = 1


def save(directory: Path, top: TopList, schema: str) -> None:
    """Never raises: a full or read-only disk costs the fallback, not the swap."""
    snapshot = top.snapshot
    document = {
        "format": FORMAT,
        "schema": schema,
        "ranking": {
            "run_id": snapshot.ranking_run_id,
            "source": snapshot.ranking_source,
            "measure": snapshot.ranking_measure,
            "finished_at": snapshot.ranked_at.isoformat(),
        },
        "prices": {"run_id": snapshot.price_run_id, "finished_at": snapshot.priced_at.isoformat()},
        "coins": [
            [c.rank, c.symbol, c.name, None if c.price_usd is None else str(c.price_usd)]
            for c in top.coins
        ],
    }
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", dir=directory, prefix=".toplist-", suffix=".tmp", delete=False, encoding="utf-8"
        ) as out:
            json.dump(document, out, ensure_ascii=False, separators=(",", ":"))
        os.replace(out.name, directory / FILE_NAME)
    except OSError as exc:
        log.warning("could not save the served list for restarting workers: %s", exc)


def load(directory: Path, stale_after: float) -> tuple[TopList, str] | None:
    """The saved list and the schema it was loaded under, or ``None`` (with why, logged)."""
    path = directory / FILE_NAME
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring the saved list %s: %s", path, exc)
        return None
    try:
        return _parse(document, stale_after)
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        log.warning("ignoring the saved list %s: %s", path, exc)
        return None


def _parse(document: dict[str, Any], stale_after: float) -> tuple[TopList, str]:
    if document["format"] != FORMAT:
        raise ValueError(f"format {document['format']!r}, expected {FORMAT}")
    ranking, prices = document["ranking"], document["prices"]
    snapshot = Snapshot(
        ranking_run_id=int(ranking["run_id"]),
        ranking_source=str(ranking["source"]),
        ranking_measure=ranking["measure"],
        ranked_at=datetime.fromisoformat(ranking["finished_at"]),
        price_run_id=int(prices["run_id"]),
        priced_at=datetime.fromisoformat(prices["finished_at"]),
    )
    coins = tuple(
        Coin(int(rank), str(symbol), str(name), None if price is None else Decimal(price))
        for rank, symbol, name, price in document["coins"]
    )
    return TopList(coins, snapshot, stale_after), str(document["schema"])
