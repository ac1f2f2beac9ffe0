"""The price scrape: CoinMarketCap USD quotes for the coins of the latest ranking, by id.

Every ranked coin was resolved to a CoinMarketCap id when it was ranked, so a run asks
``quotes/latest?id=`` for exactly those ids: about one credit per 100 coins, and no asset
it did not ask for.  When CoinMarketCap is the ranking provider its listing carried the
prices already: the run reuses them and spends nothing.

Coins without an id are looked up by ticker only while the id map cannot be trusted to
know them (no map yet, or no refresh for two days).  With a fresh map, a coin it cannot
resolve is not an active CoinMarketCap asset, and a ticker lookup would be billed every
run to find namesakes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from sqlalchemy import insert, literal, select
from sqlalchemy.orm import Session

from topcoins.models import (
    Asset,
    PriceQuote,
    RankingEntry,
    RunKind,
    ScrapeRun,
    Source,
    TickerMatch,
    latest_runs,
)

from .budget import CreditBudget
from .coinmarketcap import PROVIDER, QUOTE_ASSETS_PER_CREDIT, CoinMarketCapClient, Quote, Quotes
from .errors import InvalidPayload, NothingToDo, ScrapeError
from .resolution import best_namesake, map_is_trusted, map_refreshed_at
from .snapshots import Snapshot

# Below this share of the asked ids answered, the answer is broken rather than sparse.
MIN_ID_COVERAGE = 0.5
_QUERYABLE_SYMBOL = re.compile(r"[A-Za-z0-9$._@-]{1,30}")


class NoRankingYet(ScrapeError):
    """Prices follow the ranking; without one there is nothing to price."""


@dataclass(frozen=True)
class RankedAsset:
    asset_id: int
    symbol: str
    name: str
    cmc_id: int | None


@dataclass(frozen=True)
class LatestRanking:
    run_id: int
    day: int
    source: str
    finished_at: datetime
    entries: list[RankedAsset]
    # The ids whose prices the ranking's own listing carried (CoinMarketCap's).
    quoted_ids: frozenset[int]


class PricesJob:
    kind = RunKind.PRICES
    source = Source.COINMARKETCAP
    measure = None

    def __init__(self, client: CoinMarketCapClient, budget: CreditBudget) -> None:
        self.client = client
        self.budget = budget

    def fetch(self, session: Session) -> Snapshot:
        with session.begin():
            ranking = latest_ranking(session)
            refreshed_at = map_refreshed_at(session)
            priced_at = session.scalar(
                select(latest_runs.c.finished_at).where(latest_runs.c.kind == RunKind.PRICES)
            )
        if ranking is None:
            raise NoRankingYet("no ranking snapshot yet: run `python -m scrapers ranks` first")
        reused = ranking.quoted_ids
        ids = {e.cmc_id for e in ranking.entries if e.cmc_id is not None} - reused
        by_ticker: list[RankedAsset] = []
        if not map_is_trusted(refreshed_at, datetime.now(UTC)):
            by_ticker = [
                e
                for e in ranking.entries
                if e.cmc_id is None and _QUERYABLE_SYMBOL.fullmatch(e.symbol)
            ]
        if reused and not ids and not by_ticker and priced_at and priced_at > ranking.finished_at:
            raise NothingToDo(f"the prices of ranking run {ranking.run_id} are stored already")

        self.budget.read()
        cost = math.ceil(len(ids) / QUOTE_ASSETS_PER_CREDIT) + (1 if by_ticker else 0)
        self.budget.allow(cost, f"pricing {len(ids) + len(by_ticker)} coins")
        quotes = Quotes()
        if ids:
            quotes.extend(self._by_id(ids))
        matches: dict[int, int] = {}
        if by_ticker:
            by_symbol = self.client.quotes_by_symbol(e.symbol for e in by_ticker)
            self.budget.record(by_symbol.credit_count)
            quotes.extend(by_symbol)
            matches = ticker_matches(by_ticker, by_symbol.items)

        unique: dict[int, Quote] = {}
        for quote in quotes.items:
            if quote.cmc_id not in reused:
                unique.setdefault(quote.cmc_id, quote)
        bought = list(unique.values())
        return Snapshot(
            len(bought) + len(reused),
            partial(write_prices, ranking=ranking, quotes=bought, matches=matches),
            credit_count=self.budget.spent,
            ticker_lookups=len(by_ticker),
            details={
                "targets": len(ranking.entries),
                "reused_quotes": len(reused),
                "priced_assets": sum(1 for q in bought if q.price_usd is not None) + len(reused),
            },
        )

    def _by_id(self, ids: set[int]) -> Quotes:
        quotes = self.client.quotes_by_id(ids)
        self.budget.record(quotes.credit_count)
        answered = len({q.cmc_id for q in quotes.items} & ids)
        if answered < MIN_ID_COVERAGE * len(ids):
            raise InvalidPayload(PROVIDER, f"quotes cover only {answered} of {len(ids)} asked ids")
        return quotes

    def close(self) -> None:
        self.client.close()


def latest_ranking(session: Session) -> LatestRanking | None:
    run = session.execute(
        select(
            latest_runs.c.id, latest_runs.c.day, latest_runs.c.source, latest_runs.c.finished_at
        ).where(latest_runs.c.kind == RunKind.RANKING)
    ).one_or_none()
    if run is None:
        return None
    entries = session.execute(
        select(RankingEntry.asset_id, Asset.symbol, Asset.name, Asset.cmc_id)
        .join(Asset, Asset.id == RankingEntry.asset_id)
        .where(RankingEntry.day == run.day, RankingEntry.run_id == run.id)
        .order_by(RankingEntry.rank)
    )
    quoted = session.scalars(
        select(PriceQuote.cmc_id).where(PriceQuote.day == run.day, PriceQuote.run_id == run.id)
    )
    return LatestRanking(
        run.id,
        run.day,
        run.source,
        run.finished_at,
        [RankedAsset(*row) for row in entries],
        frozenset(quoted),
    )


def ticker_matches(entries: list[RankedAsset], quotes: list[Quote]) -> dict[int, int]:
    """Each coin's CoinMarketCap id among the namesakes its ticker found: asset id to id."""
    by_symbol: dict[str, list[Quote]] = {}
    for quote in quotes:
        by_symbol.setdefault(quote.symbol.upper(), []).append(quote)
    matches = {}
    for entry in entries:
        namesakes = by_symbol.get(entry.symbol.upper())
        if namesakes:
            best = best_namesake([(q.cmc_id, q.name, q.cmc_rank) for q in namesakes], entry.name)
            matches[entry.asset_id] = best
    return matches


def write_prices(
    session: Session,
    run: ScrapeRun,
    *,
    ranking: LatestRanking | None,
    quotes: list[Quote],
    matches: dict[int, int],
) -> None:
    """The quotes under ``run``: those bought, and those the ranking's listing carried."""
    if ranking is not None and ranking.quoted_ids:
        copied = select(
            PriceQuote.last_updated,
            literal(run.id),
            PriceQuote.cmc_id,
            literal(run.day),
            PriceQuote.price_usd,
            PriceQuote.market_cap_usd,
            PriceQuote.percent_change_24h,
        ).where(PriceQuote.day == ranking.day, PriceQuote.run_id == ranking.run_id)
        columns = ["last_updated", "run_id", "cmc_id", "day", "price_usd"]
        columns += ["market_cap_usd", "percent_change_24h"]
        session.execute(insert(PriceQuote).from_select(columns, copied))
    if quotes:
        session.execute(
            insert(PriceQuote),
            [
                {
                    "run_id": run.id,
                    "day": run.day,
                    "cmc_id": quote.cmc_id,
                    "price_usd": quote.price_usd,
                    "last_updated": quote.last_updated,
                    "market_cap_usd": quote.market_cap,
                    "percent_change_24h": quote.percent_change_24h,
                }
                for quote in quotes
            ],
        )
    if matches:
        session.execute(
            insert(TickerMatch),
            [
                {"run_id": run.id, "asset_id": asset_id, "cmc_id": cmc_id}
                for asset_id, cmc_id in matches.items()
            ],
        )
