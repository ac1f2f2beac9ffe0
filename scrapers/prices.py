"""The price scrape: CoinMarketCap quotes for every coin of the latest ranking.

CoinMarketCap's own listing is ordered by market cap, and a coin with a high volume
can sit thousands of places down there, so we ask for the ranked coins themselves:
1. every ranked symbol without an alias, by symbol (v2 answers every asset with it);
2. ranked coins that step 1 matched neither by symbol nor by name, by the slug their
   name would have (CryptoCompare "IOT" "IOTA" is CoinMarketCap "iota");
3. the CoinMarketCap ids that operators pinned in ``symbol_aliases``.
Steps 2 and 3 are usually empty or tiny, so a run costs about one credit per 100
assets returned.  Which asset matches which coin is decided by the ``top_coins`` view.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from topcoins.models import PriceQuote, RankingEntry, RunStatus, ScrapeRun, Source, SymbolAlias

from .coinmarketcap import PROVIDER, CoinMarketCapClient, Quotes
from .errors import InvalidPayload, ScrapeError
from .snapshots import Snapshot

# Below this share of ranked symbols found, the answer is broken rather than sparse.
MIN_SYMBOL_COVERAGE = 0.5
_QUERYABLE_SYMBOL = re.compile(r"[A-Za-z0-9$._@-]{1,30}")


class NoRankingYet(ScrapeError):
    """Prices follow the ranking; without one there is nothing to price."""


@dataclass(frozen=True)
class Target:
    symbol: str
    name: str
    alias_cmc_id: int | None


class PricesJob:
    source = Source.COINMARKETCAP

    def __init__(self, client: CoinMarketCapClient) -> None:
        self.client = client

    def fetch(self, session: Session) -> Snapshot:
        with session.begin():
            targets = latest_targets(session)
        if not targets:
            raise NoRankingYet("no ranking snapshot yet: run `python -m scrapers ranks` first")
        quotes = self.collect(targets)
        unique = {quote.cmc_id: quote for quote in quotes.items}
        rows = [asdict(quote) for quote in unique.values()]
        priced = sum(1 for q in unique.values() if q.price_usd is not None)
        return Snapshot(
            PriceQuote,
            rows,
            credit_count=quotes.credit_count,
            details={"targets": len(targets), "priced_assets": priced},
        )

    def close(self) -> None:
        self.client.close()

    def collect(self, targets: list[Target]) -> Quotes:
        by_symbol = [t for t in targets if t.alias_cmc_id is None]
        symbols = {t.symbol for t in by_symbol if _QUERYABLE_SYMBOL.fullmatch(t.symbol)}
        quotes = self.client.quotes_by_symbol(symbols)
        found = {q.symbol for q in quotes.items}
        if symbols and len(found & symbols) < MIN_SYMBOL_COVERAGE * len(symbols):
            raise InvalidPayload(
                PROVIDER,
                f"quotes cover only {len(found & symbols)} of {len(symbols)} ranked symbols",
            )

        names = {q.name.lower() for q in quotes.items}
        unmatched = [t for t in by_symbol if t.symbol not in found and t.name.lower() not in names]
        slugs = {slug for t in unmatched if (slug := slugify(t.name))}
        if slugs:
            quotes.extend(self.client.quotes_by_slug(slugs))

        aliased = {t.alias_cmc_id for t in targets if t.alias_cmc_id is not None}
        if aliased:
            quotes.extend(self.client.quotes_by_id(aliased))
        return quotes


def latest_targets(session: Session) -> list[Target]:
    latest = (
        select(ScrapeRun.id)
        .where(ScrapeRun.source == Source.CRYPTOCOMPARE, ScrapeRun.status == RunStatus.SUCCEEDED)
        .order_by(ScrapeRun.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    rows = session.execute(
        select(RankingEntry.symbol, RankingEntry.name, SymbolAlias.cmc_id)
        .outerjoin(SymbolAlias, SymbolAlias.symbol == RankingEntry.symbol)
        .where(RankingEntry.run_id == latest)
        .order_by(RankingEntry.rank)
    )
    return [Target(symbol, name, alias) for symbol, name, alias in rows]


def slugify(name: str) -> str:
    """CoinMarketCap's slug convention: lower case, words joined by hyphens."""
    return "-".join(re.findall(r"[a-z0-9]+", name.lower()))
