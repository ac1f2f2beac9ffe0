"""Which CoinMarketCap asset a ranked coin is, decided once per ranking and stored with it.

Tickers are not identities: several assets share one, and providers spell some of them
differently.  A ranked coin gets at most one CoinMarketCap id, from the first rule that
gives one:

1. ``alias``: an operator's row in ``symbol_aliases``;
2. ``provider``: the id the ranking provider names (CoinDesk's ASSET_ALTERNATIVE_IDS,
   CoinMarketCap's own listing);
3. ``symbol``: the id map's assets with the coin's ticker, the one of the same name first,
   then the best CoinMarketCap rank;
4. ``slug``: the map's slug equal to the slug of the coin's name, or to the provider's slug;
5. ``name``: the map's name equal to the coin's name once both drop the common suffixes
   ("Polymath Network" is "Polymath").

The id map is CoinMarketCap's ``/v1/cryptocurrency/map``, kept in ``cmc_assets`` and
refreshed by the ranking scrape at most once a day.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, or_, select
from sqlalchemy.orm import Session

from topcoins.models import CmcAsset, ResolvedBy, SymbolAlias

from .coinmarketcap import MapAsset
from .ranking import RankedCoin

MAP_REFRESH_INTERVAL = timedelta(days=1)
# Past this age (a day of failed refreshes) the map may lack new assets, and the price
# scrape falls back to ticker lookups for the coins it could not resolve.
MAP_TRUSTED_FOR = timedelta(days=2)
NAME_SUFFIXES = frozenset({"network", "protocol", "token", "coin"})
_WORD = re.compile(r"[^\W_]+")


def slugify(name: str) -> str:
    """CoinMarketCap's slug convention: lower case, words joined by hyphens."""
    return "-".join(_WORD.findall(name.casefold()))


def name_key(name: str) -> str:
    """A name as names are compared: case and punctuation ignored, common suffixes dropped."""
    words = _WORD.findall(name.casefold())
    while len(words) > 1 and words[-1] in NAME_SUFFIXES:
        words.pop()
    return " ".join(words)


Resolution = tuple[int, ResolvedBy] | tuple[None, None]
UNRESOLVED: Resolution = (None, None)


class IdIndex:
    """The id map's assets looked up the ways the rules need."""

    def __init__(self, assets: Iterable[MapAsset]) -> None:
        self.by_symbol: dict[str, list[MapAsset]] = defaultdict(list)
        self.by_slug: dict[str, MapAsset] = {}
        self.by_name: dict[str, list[MapAsset]] = defaultdict(list)
        for asset in assets:
            self.by_symbol[asset.symbol.upper()].append(asset)
            self.by_slug.setdefault(asset.slug, asset)
            self.by_name[name_key(asset.name)].append(asset)

    def resolve(self, coin: RankedCoin, alias: int | None) -> Resolution:
        if alias is not None:
            return alias, ResolvedBy.ALIAS
        if coin.cmc_id is not None:
            return coin.cmc_id, ResolvedBy.PROVIDER
        same_symbol = self.by_symbol.get(coin.symbol.upper())
        if same_symbol:
            return _best(same_symbol, coin.name).cmc_id, ResolvedBy.SYMBOL
        for slug in (slugify(coin.name), coin.slug):
            if slug and slug in self.by_slug:
                return self.by_slug[slug].cmc_id, ResolvedBy.SLUG
        same_name = self.by_name.get(name_key(coin.name))
        if same_name:
            return _best(same_name, coin.name).cmc_id, ResolvedBy.NAME
        return UNRESOLVED


def _best(candidates: Sequence[MapAsset], name: str) -> MapAsset:
    by_id = {asset.cmc_id: asset for asset in candidates}
    return by_id[best_namesake([(a.cmc_id, a.name, a.rank) for a in candidates], name)]


def best_namesake(candidates: Sequence[tuple[int, str, int | None]], name: str) -> int:
    """Of the assets (id, name, CoinMarketCap rank) sharing a ticker, the one meant by ``name``.

    The same name first, then the same name without its common suffixes, then the best
    rank: a namesake ranked 4000th is rarely the coin a ranking lists.
    """
    wanted, key = name.casefold(), name_key(name)

    def preference(candidate: tuple[int, str, int | None]) -> tuple[bool, bool, bool, int, int]:
        cmc_id, candidate_name, rank = candidate
        return (
            candidate_name.casefold() != wanted,
            name_key(candidate_name) != key,
            rank is None,
            rank or 0,
            cmc_id,
        )

    return min(candidates, key=preference)[0]


def map_refreshed_at(session: Session) -> datetime | None:
    return session.scalar(select(func.max(CmcAsset.refreshed_at)))


def map_is_due(refreshed_at: datetime | None, now: datetime) -> bool:
    return refreshed_at is None or now - refreshed_at >= MAP_REFRESH_INTERVAL


def map_is_trusted(refreshed_at: datetime | None, now: datetime) -> bool:
    return refreshed_at is not None and now - refreshed_at < MAP_TRUSTED_FOR


def map_candidates(session: Session, coins: Sequence[RankedCoin]) -> list[MapAsset]:
    """Only the map rows some rule could pick for these coins, through the map's indexes."""
    symbols = sorted({coin.symbol.upper() for coin in coins})
    slugs = sorted({slugify(coin.name) for coin in coins} | {c.slug for c in coins if c.slug})
    names = sorted({name_key(coin.name) for coin in coins})
    rows = session.execute(
        select(CmcAsset.cmc_id, CmcAsset.symbol, CmcAsset.name, CmcAsset.slug, CmcAsset.rank).where(
            or_(
                func.upper(CmcAsset.symbol).in_(symbols),
                CmcAsset.slug.in_(slugs),
                CmcAsset.name_key.in_(names),
            )
        )
    )
    return [MapAsset(*row) for row in rows]


def replace_map(session: Session, assets: Sequence[MapAsset], refreshed_at: datetime) -> None:
    """The whole map at once, in the caller's transaction: readers see old or new, never half."""
    session.execute(delete(CmcAsset))
    unique = {asset.cmc_id: asset for asset in assets}
    session.execute(
        insert(CmcAsset),
        [
            {
                "cmc_id": asset.cmc_id,
                "symbol": asset.symbol,
                "name": asset.name,
                "slug": asset.slug,
                "rank": asset.rank,
                "name_key": name_key(asset.name),
                "refreshed_at": refreshed_at,
            }
            for asset in unique.values()
        ],
    )


def aliases(session: Session, symbols: Iterable[str]) -> dict[str, int]:
    rows = session.execute(
        select(SymbolAlias.symbol, SymbolAlias.cmc_id).where(SymbolAlias.symbol.in_(set(symbols)))
    )
    return {symbol: cmc_id for symbol, cmc_id in rows}
