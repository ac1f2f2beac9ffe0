"""The ranking scrape: the chosen provider's top coins by volume, each resolved to an id.

The coins are resolved to CoinMarketCap ids here, once per ranking, with the rules of
``scrapers.resolution``, and the id map is refreshed here when it is a day old.  A map
that cannot be refreshed (no CoinMarketCap key, provider down, credit floor) leaves the
old map in use: the ranking itself never depends on CoinMarketCap unless CoinMarketCap
is the ranking provider.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy.orm import Session

from topcoins.models import RankingEntry, RunKind

from .budget import CreditBudget
from .coinmarketcap import MAP_PAGE_SIZE, CoinMarketCapClient, IdMap
from .errors import ScrapeError
from .ranking import RankedCoin, RankingClient
from .resolution import (
    IdIndex,
    aliases,
    map_candidates,
    map_is_due,
    map_refreshed_at,
    replace_map,
)
from .snapshots import Snapshot

log = logging.getLogger("scrapers.ranks")
# About how many assets CoinMarketCap's id map lists, to estimate a refresh's cost.
ACTIVE_ASSETS = 11_000


class RanksJob:
    kind = RunKind.RANKING

    def __init__(
        self,
        client: RankingClient,
        size: int,
        *,
        coinmarketcap: CoinMarketCapClient | None = None,
        budget: CreditBudget | None = None,
    ) -> None:
        self.client = client
        self.size = size
        self.source = client.source
        self.measure: str | None = client.measure
        self.coinmarketcap = coinmarketcap
        self.budget = budget

    def fetch(self, session: Session) -> Snapshot:
        cost = self.client.credits_for(self.size)
        if cost and self.budget is not None:
            self.budget.allow(cost, f"a ranking of {self.size} coins")
        ranking = self.client.top_by_volume(self.size)
        if self.budget is not None:
            self.budget.record(ranking.credit_count)
        coins = ranking.coins
        with session.begin():
            refreshed_at = map_refreshed_at(session)
            pinned = aliases(session, {coin.symbol for coin in coins})
        now = datetime.now(UTC)
        fresh_map = None
        if any(c.cmc_id is None for c in coins) and map_is_due(refreshed_at, now):
            fresh_map = self._refresh_map()
        if fresh_map is None:
            with session.begin():
                index = IdIndex(map_candidates(session, coins))
        else:
            index = IdIndex(fresh_map.assets)
        rows = [_row(coin, *index.resolve(coin, pinned.get(coin.symbol))) for coin in coins]
        resolved = Counter(row["resolved_by"] or "unresolved" for row in rows)
        details: dict[str, Any] = {"resolved": dict(sorted(resolved.items()))}
        prepare = None
        if fresh_map is not None:
            details["map_assets"] = len(fresh_map.assets)
            prepare = partial(replace_map, assets=fresh_map.assets, refreshed_at=now)
        return Snapshot(
            RankingEntry,
            rows,
            credit_count=self.budget.spent if self.budget else 0,
            details=details,
            prepare=prepare,
        )

    def _refresh_map(self) -> IdMap | None:
        if self.coinmarketcap is None or self.budget is None:
            log.warning(
                "COINMARKETCAP_API_KEY is not set: the id map is not refreshed, and coins "
                "without a provider id are resolved with the map as it is"
            )
            return None
        try:
            self.budget.allow(self._map_cost(), "the daily id map refresh")
            fresh = self.coinmarketcap.id_map()
        except ScrapeError as exc:
            log.warning("id map not refreshed, resolving with the map as it is: %s", exc)
            return None
        self.budget.record(fresh.credit_count)
        return fresh

    def _map_cost(self) -> int:
        """One credit a page of 5000; CoinMarketCap listed 10 830 active assets in 2025."""
        return math.ceil(ACTIVE_ASSETS / MAP_PAGE_SIZE)

    def close(self) -> None:
        self.client.close()
        if self.coinmarketcap is not None:
            self.coinmarketcap.close()


def _row(coin: RankedCoin, cmc_id: int | None, resolved_by: str | None) -> dict[str, Any]:
    return {
        "rank": coin.rank,
        "symbol": coin.symbol,
        "name": coin.name,
        "provider_asset_id": coin.provider_asset_id,
        "slug": coin.slug,
        "volume_24h_usd": coin.volume_24h_usd,
        "price_usd": coin.price_usd,
        "price_updated_at": coin.price_updated_at,
        "cmc_id": cmc_id,
        "resolved_by": resolved_by,
    }
