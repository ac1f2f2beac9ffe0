"""The fake market both fake providers serve from.

CryptoCompare's ranking and CoinMarketCap's asset list are kept as two independent lists on
purpose: the code under test has to reconcile providers that disagree on tickers, names and
prices, so the fake must be able to disagree too.
"""

from __future__ import annotations

import copy
import csv
import functools
import io
import json
import random
import re
import threading
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from importlib import resources
from typing import Any

_DRIFT = 0.005
_DRIFT_DIGITS = 16


@dataclass
class RankedCoin:
    """One CryptoCompare ranking entry; ``price`` None means the entry carries no RAW/DISPLAY."""

    symbol: str
    full_name: str
    cc_id: int
    price: Decimal | None
    volume_24h: Decimal


@dataclass
class CmcAsset:
    """One CoinMarketCap asset; ``cmc_rank`` None is an untracked/inactive asset."""

    id: int
    symbol: str
    name: str
    slug: str
    cmc_rank: int | None
    price: Decimal | None


@dataclass
class Market:
    """Mutable state shared by the request threads; mutate under ``lock`` when racing requests."""

    ranking: list[RankedCoin]
    assets: list[CmcAsset]
    sponsored: list[RankedCoin] = field(default_factory=list)
    lock: threading.RLock = field(
        default_factory=threading.RLock, repr=False, compare=False, init=False
    )

    @classmethod
    def bundled(cls, seed: int = 0) -> Market:
        """Seed 0 is exactly ``coins.csv``; other seeds jitter prices, reproducibly per seed."""
        ranking, assets, sponsored = _bundled_rows()
        market = cls(
            ranking=copy.deepcopy(ranking),
            assets=copy.deepcopy(assets),
            sponsored=copy.deepcopy(sponsored),
        )
        if seed:
            market.drift_prices(random.Random(seed))
        return market

    def __deepcopy__(self, memo: dict[int, Any]) -> Market:
        with self.lock:
            return Market(
                ranking=copy.deepcopy(self.ranking, memo),
                assets=copy.deepcopy(self.assets, memo),
                sponsored=copy.deepcopy(self.sponsored, memo),
            )

    def restore(self, other: Market) -> None:
        """Copies ``other`` into this object so references held by tests stay valid."""
        fresh = copy.deepcopy(other)
        with self.lock:
            self.ranking = fresh.ranking
            self.assets = fresh.assets
            self.sponsored = fresh.sponsored

    def drift_prices(self, rng: random.Random) -> None:
        """One factor per ticker, so a coin moves the same way on both providers."""
        factors: dict[str, Decimal] = {}

        def factor(symbol: str) -> Decimal:
            key = symbol.upper()
            if key not in factors:
                factors[key] = Decimal(repr(1 + rng.uniform(-_DRIFT, _DRIFT)))
            return factors[key]

        with self.lock, localcontext() as ctx:
            ctx.prec = _DRIFT_DIGITS
            for coin in [*self.ranking, *self.sponsored]:
                if coin.price is not None:
                    coin.price = +(coin.price * factor(coin.symbol))
            for asset in self.assets:
                if asset.price is not None:
                    asset.price = +(asset.price * factor(asset.symbol))

    def maybe_swap_neighbours(self, rng: random.Random, probability: float = 0.3) -> None:
        with self.lock:
            if len(self.ranking) < 2 or rng.random() >= probability:
                return
            self.swap(rng.randrange(1, len(self.ranking)))

    def swap(self, rank: int) -> None:
        """Volumes stay with the positions, so the ranking stays ordered by volume."""
        with self.lock:
            if not 1 <= rank < len(self.ranking):
                raise ValueError(f"rank must be in 1..{len(self.ranking) - 1}, got {rank}")
            upper, lower = self.ranking[rank - 1], self.ranking[rank]
            upper.volume_24h, lower.volume_24h = lower.volume_24h, upper.volume_24h
            self.ranking[rank - 1], self.ranking[rank] = lower, upper


@functools.cache
def _bundled_rows() -> tuple[list[RankedCoin], list[CmcAsset], list[RankedCoin]]:
    text = resources.files(__package__).joinpath("coins.csv").read_text(encoding="utf-8")
    ranked: list[tuple[int, RankedCoin]] = []
    sponsored: list[RankedCoin] = []
    assets: dict[int, CmcAsset] = {}
    for row in csv.DictReader(io.StringIO(text)):
        if row["cc_symbol"]:
            coin = RankedCoin(
                symbol=row["cc_symbol"],
                full_name=row["cc_full_name"],
                cc_id=int(row["cc_id"]),
                price=Decimal(row["cc_price"]) if row["cc_price"] else None,
                volume_24h=Decimal(row["cc_volume"]),
            )
            if row["kind"] == "sponsored":
                sponsored.append(coin)
            else:
                ranked.append((int(row["cc_rank"]), coin))
        if row["cmc_id"]:
            assets[int(row["cmc_id"])] = CmcAsset(
                id=int(row["cmc_id"]),
                symbol=row["cmc_symbol"],
                name=row["cmc_name"],
                slug=row["cmc_slug"],
                cmc_rank=int(row["cmc_rank"]) if row["cmc_rank"] else None,
                price=Decimal(row["cmc_price"]) if row["cmc_price"] else None,
            )
    ranked.sort(key=lambda item: item[0])
    ordered = sorted(assets.values(), key=_rank_order)
    return [coin for _, coin in ranked], ordered, sponsored


def _rank_order(asset: CmcAsset) -> tuple[bool, int]:
    return (asset.cmc_rank is None, asset.cmc_rank or 0)


def render_json(value: Any) -> str:
    """JSON text with Decimals as exact number literals: Flask would turn them into strings."""
    text = json.dumps(
        value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_mark
    )
    return _DECIMAL_MARK.sub(lambda match: match.group(1), text)


_DECIMAL_MARK = re.compile(r'"\\u001fdecimal:([-0-9.]+)\\u001f"')


def _mark(value: Any) -> str:
    """The C encoder cannot emit raw number text, so Decimals pass through as marked strings."""
    if isinstance(value, Decimal) and value.is_finite():
        return f"\x1fdecimal:{value:f}\x1f"
    raise TypeError(f"cannot render {type(value).__name__} {value!r} as JSON")
