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

from .rendered_list import Coin, Snapshot, TopList

log = logging.getLogger("api.saved_list")

FILE_NAME = "toplist.json"
FORMAT = 2


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
            [
                c.rank,
                c.symbol,
                c.name,
                None if c.price_usd is None else str(c.price_usd),
                c.cmc_id,
                c.provider_asset_id,
                c.volume_24h_usd,
                c.market_cap_usd,
                c.percent_change_24h,
                None if c.price_updated_at is None else c.price_updated_at.isoformat(),
            ]
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


def _coin(
    rank: int,
    symbol: str,
    name: str,
    price: str | None,
    cmc_id: int | None,
    provider_asset_id: int | None,
    volume: float | None,
    market_cap: float | None,
    change: float | None,
    updated_at: str | None,
) -> Coin:
    return Coin(
        rank=int(rank),
        symbol=str(symbol),
        name=str(name),
        price_usd=None if price is None else Decimal(price),
        cmc_id=None if cmc_id is None else int(cmc_id),
        provider_asset_id=None if provider_asset_id is None else int(provider_asset_id),
        volume_24h_usd=None if volume is None else float(volume),
        market_cap_usd=None if market_cap is None else float(market_cap),
        percent_change_24h=None if change is None else float(change),
        price_updated_at=None if updated_at is None else datetime.fromisoformat(updated_at),
    )


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
    coins = tuple(_coin(*fields) for fields in document["coins"])
    return TopList(coins, snapshot, stale_after), str(document["schema"])
