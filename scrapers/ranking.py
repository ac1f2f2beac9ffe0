"""What every ranking provider's client returns: the top coins by 24 h volume, in order."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from topcoins.models import Source

from .errors import InvalidPayload


@dataclass(frozen=True)
class RankedCoin:
    rank: int
    symbol: str
    name: str
    provider_asset_id: int | None = None
    slug: str | None = None
    # The CoinMarketCap id the ranking provider itself names for the coin, if any.
    cmc_id: int | None = None
    volume_24h_usd: Decimal | None = None
    price_usd: Decimal | None = None
    price_updated_at: datetime | None = None
    market_cap_usd: Decimal | None = None
    percent_change_24h: float | None = None


@dataclass
class Ranking:
    coins: list[RankedCoin] = field(default_factory=list)
    # CoinMarketCap credits the ranking cost (only CoinMarketCap bills per call).
    credit_count: int = 0


class RankingClient(Protocol):
    source: Source
    # What the provider orders by, in its own field name; stored with each ranking.
    measure: str

    # CoinMarketCap credits one ranking of ``count`` coins costs at most.
    def credits_for(self, count: int) -> int: ...

    def top_by_volume(self, count: int) -> Ranking: ...

    def close(self) -> None: ...


# Both CryptoCompare APIs page their rankings by at most 100 entries and at least 10.
PAGE_SIZE, MIN_PAGE_SIZE = 100, 10


@dataclass(frozen=True)
class Page:
    entries: list[Any]
    # How many coins the provider says it ranks, where it says so.
    total: int | None = None


def collect_pages(
    provider: str,
    count: int,
    pages: Iterable[int],
    fetch: Callable[[int, int], Page],
    parse: Callable[[Any, int], RankedCoin | None],
) -> list[RankedCoin]:
    """The first ``count`` coins of a paged ranking, ranked in the order the pages give.

    ``parse`` answers ``None`` for an entry nobody could be shown (no ticker): it is left
    out, and a coin that moved up between two page requests is kept once.  Ranks stay
    contiguous, and further pages fill what was left out.  Mostly unusable entries mean
    a broken answer rather than a few odd coins.
    """
    coins: list[RankedCoin] = []
    seen: set[object] = set()
    unusable = entries = 0
    page_size = max(MIN_PAGE_SIZE, min(PAGE_SIZE, count))
    available: int | None = None
    for number in pages:
        page = fetch(number, page_size)
        available = page.total if page.total is not None else available
        before = len(coins)
        for entry in page.entries:
            entries += 1
            coin = parse(entry, len(coins) + 1)
            if coin is None:
                unusable += 1
                continue
            key = coin.provider_asset_id if coin.provider_asset_id is not None else coin.symbol
            if key not in seen:
                seen.add(key)
                coins.append(coin)
        if unusable * 2 > entries:
            raise InvalidPayload(provider, f"{unusable} of {entries} ranked entries are unusable")
        # A short page is the end; a page of nothing new means the provider repeats itself.
        if len(page.entries) < page_size or len(coins) >= count or len(coins) == before:
            break
    coins = coins[:count]
    check_length(provider, coins, count, available)
    return coins


def check_length(provider: str, coins: list[RankedCoin], count: int, available: int | None) -> None:
    """A provider that lists fewer coins than it says it has answered with a broken page."""
    expected = count if available is None else min(count, available)
    if not coins or len(coins) < expected:
        raise InvalidPayload(provider, f"ranking holds {len(coins)} coins, expected {expected}")
