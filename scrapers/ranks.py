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
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from topcoins.models import PriceQuote, RankingEntry, RunKind, ScrapeRun, Source

from .assets import Description, asset_ids
from .budget import CreditBudget
from .coinmarketcap import MAP_PAGE_SIZE, CoinMarketCapClient, IdMap, MapAsset
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
        resolved = [(coin, *index.resolve(coin, pinned.get(coin.symbol))) for coin in coins]
        counts = Counter(by or "unresolved" for _, _, by in resolved)
        details: dict[str, Any] = {"resolved": dict(sorted(counts.items()))}
        if fresh_map is not None:
            details["map_assets"] = len(fresh_map.assets)
        return Snapshot(
            len(coins),
            partial(
                write_ranking,
                resolved=resolved,
                fresh_map=fresh_map.assets if fresh_map is not None else None,
                refreshed_at=now,
            ),
            credit_count=self.budget.spent if self.budget else 0,
            details=details,
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


def write_ranking(
    session: Session,
    run: ScrapeRun,
    *,
    resolved: Sequence[tuple[RankedCoin, int | None, str | None]],
    fresh_map: list[MapAsset] | None = None,
    refreshed_at: datetime | None = None,
) -> None:
    """The ranking under ``run``, each coin as its asset; the id map with it, if refreshed."""
    if fresh_map is not None and refreshed_at is not None:
        replace_map(session, fresh_map, refreshed_at)
    described = [(coin, _description(coin, cmc_id, by)) for coin, cmc_id, by in resolved]
    ids = asset_ids(session, Source(run.source), (d for _, d in described))
    session.execute(
        insert(RankingEntry),
        [
            {
                "run_id": run.id,
                "day": run.day,
                "rank": coin.rank,
                "asset_id": ids[description],
                "volume_24h_usd": coin.volume_24h_usd,
            }
            for coin, description in described
        ],
    )
    if run.source == Source.COINMARKETCAP:
        _store_listing_quotes(session, run, [coin for coin, _, _ in resolved])


def _store_listing_quotes(session: Session, run: ScrapeRun, coins: list[RankedCoin]) -> None:
    """CoinMarketCap's listing carries its prices: the next prices run copies, not buys, them."""
    quotes: dict[int, RankedCoin] = {}
    for coin in coins:
        if coin.cmc_id is not None and coin.price_usd is not None:
            quotes.setdefault(coin.cmc_id, coin)
    if quotes:
        session.execute(
            insert(PriceQuote),
            [
                {
                    "run_id": run.id,
                    "day": run.day,
                    "cmc_id": cmc_id,
                    "price_usd": coin.price_usd,
                    "last_updated": coin.price_updated_at,
                    "market_cap_usd": coin.market_cap_usd,
                    "percent_change_24h": coin.percent_change_24h,
                }
                for cmc_id, coin in quotes.items()
            ],
        )


def _description(coin: RankedCoin, cmc_id: int | None, resolved_by: str | None) -> Description:
    return Description(
        symbol=coin.symbol,
        name=coin.name,
        provider_asset_id=coin.provider_asset_id,
        slug=coin.slug,
        cmc_id=cmc_id,
        resolved_by=resolved_by,
    )
