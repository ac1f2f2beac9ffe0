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

from sqlalchemy import select
from sqlalchemy.orm import Session

from topcoins.models import PriceQuote, RankingEntry, ResolvedBy, RunKind, Source, latest_runs

from .budget import CreditBudget
from .coinmarketcap import PROVIDER, QUOTE_ASSETS_PER_CREDIT, CoinMarketCapClient, Quote, Quotes
from .errors import InvalidPayload, NothingToDo, ScrapeError
from .resolution import map_is_trusted, map_refreshed_at
from .snapshots import Snapshot

# Below this share of the asked ids answered, the answer is broken rather than sparse.
MIN_ID_COVERAGE = 0.5
_QUERYABLE_SYMBOL = re.compile(r"[A-Za-z0-9$._@-]{1,30}")


class NoRankingYet(ScrapeError):
    """Prices follow the ranking; without one there is nothing to price."""


@dataclass(frozen=True)
class LatestRanking:
    run_id: int
    source: str
    finished_at: datetime
    entries: list[RankingEntry]


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
        reused = reused_quotes(ranking)
        ids = {e.cmc_id for e in ranking.entries if e.cmc_id is not None} - reused.keys()
        by_ticker: list[RankingEntry] = []
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
        quotes = Quotes(list(reused.values()))
        if ids:
            quotes.extend(self._by_id(ids))
        if by_ticker:
            by_symbol = self.client.quotes_by_symbol(e.symbol for e in by_ticker)
            self.budget.record(by_symbol.credit_count)
            quotes.extend(by_symbol)

        unique: dict[int, Quote] = {}
        for quote in quotes.items:
            unique.setdefault(quote.cmc_id, quote)
        return Snapshot(
            PriceQuote,
            [_row(quote) for quote in unique.values()],
            credit_count=self.budget.spent,
            ticker_lookups=len(by_ticker),
            details={
                "targets": len(ranking.entries),
                "reused_quotes": len(reused),
                "priced_assets": sum(1 for q in unique.values() if q.price_usd is not None),
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
        select(latest_runs.c.id, latest_runs.c.source, latest_runs.c.finished_at).where(
            latest_runs.c.kind == RunKind.RANKING
        )
    ).one_or_none()
    if run is None:
        return None
    entries = session.scalars(
        select(RankingEntry).where(RankingEntry.run_id == run.id).order_by(RankingEntry.rank)
    )
    return LatestRanking(run.id, run.source, run.finished_at, list(entries))


def reused_quotes(ranking: LatestRanking) -> dict[int, Quote]:
    """A CoinMarketCap ranking's own prices, for the coins it identified itself."""
    if ranking.source != Source.COINMARKETCAP:
        return {}
    return {
        e.cmc_id: Quote(
            cmc_id=e.cmc_id,
            symbol=e.symbol,
            name=e.name,
            slug=e.slug,
            cmc_rank=None,
            price_usd=e.price_usd,
            last_updated=e.price_updated_at,
        )
        for e in ranking.entries
        if e.cmc_id is not None and e.resolved_by == ResolvedBy.PROVIDER
    }


def _row(quote: Quote) -> dict[str, object]:
    return {
        "cmc_id": quote.cmc_id,
        "symbol": quote.symbol,
        "name": quote.name,
        "slug": quote.slug,
        "cmc_rank": quote.cmc_rank,
        "price_usd": quote.price_usd,
        "last_updated": quote.last_updated,
    }
