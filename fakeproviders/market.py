"""The fake market all three fake providers serve from.

CryptoCompare's ranking (served by the legacy CryptoCompare API and by CoinDesk Data) and
CoinMarketCap's asset list are kept as two independent lists on purpose: the code under test has
to reconcile providers that disagree on tickers, names, ids and prices, so the fake must be able
to disagree too.
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
CMC_STATUSES = ("active", "inactive", "untracked")
_UNMAPPED_SHARE = 0.25
_UNMAPPED_QUIRKS = frozenset({"IOT", "HOT*", "POLY*", "ETC", "GRT", "BTG", "XYZ"})
_VOLUME_FACTOR = (0.8, 1.25)
_VOLUME_STEP = Decimal("0.01")


@dataclass
class RankedCoin:
    """One CryptoCompare ranking entry; ``price`` None means the entry carries no RAW/DISPLAY.

    ``cmc_id`` is the CoinMarketCap asset the coin really is, ``coindesk_cmc_id`` what CoinDesk
    claims it is: upstream often leaves the claim out, so the two differ on purpose.
    """

    symbol: str
    full_name: str
    cc_id: int
    price: Decimal | None
    volume_24h: Decimal
    cmc_id: int | None = None
    coindesk_cmc_id: int | None = None


@dataclass
class CmcAsset:
    """One CoinMarketCap asset; ``cmc_rank`` None keeps it out of listings.

    ``volume_24h`` None lets the payload derive a volume from the market cap. ``status`` left
    empty is derived from ``cmc_rank`` once, at construction: change both together afterwards.
    """

    id: int
    symbol: str
    name: str
    slug: str
    cmc_rank: int | None
    price: Decimal | None
    volume_24h: Decimal | None = None
    status: str = ""

    def __post_init__(self) -> None:
        if not self.status:
            self.status = "inactive" if self.cmc_rank is None else "active"
        if self.status not in CMC_STATUSES:
            raise ValueError(f"status must be one of {CMC_STATUSES}, got {self.status!r}")


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
            key = symbol.rstrip("*").upper()
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
        cmc_id = int(row["cmc_id"]) if row["cmc_id"] else None
        picked = row["kind"] == "ranked" and cmc_id is not None
        if row["cc_symbol"]:
            cc_id = int(row["cc_id"])
            coin = RankedCoin(
                symbol=row["cc_symbol"],
                full_name=row["cc_full_name"],
                cc_id=cc_id,
                price=Decimal(row["cc_price"]) if row["cc_price"] else None,
                volume_24h=Decimal(row["cc_volume"]),
                cmc_id=cmc_id if picked else None,
                coindesk_cmc_id=_coindesk_cmc_id(
                    row["cc_symbol"], cc_id, cmc_id if picked else None
                ),
            )
            if row["kind"] == "sponsored":
                sponsored.append(coin)
            else:
                ranked.append((int(row["cc_rank"]), coin))
        if cmc_id is not None:
            assets[cmc_id] = CmcAsset(
                id=cmc_id,
                symbol=row["cmc_symbol"],
                name=row["cmc_name"],
                slug=row["cmc_slug"],
                cmc_rank=int(row["cmc_rank"]) if row["cmc_rank"] else None,
                price=Decimal(row["cmc_price"]) if row["cmc_price"] else None,
                volume_24h=_cmc_volume(cmc_id, Decimal(row["cc_volume"])) if picked else None,
            )
    ranked.sort(key=lambda item: item[0])
    ordered = sorted(assets.values(), key=_rank_order)
    return [coin for _, coin in ranked], ordered, sponsored


def _rank_order(asset: CmcAsset) -> tuple[bool, int]:
    return (asset.cmc_rank is None, asset.cmc_rank or 0)


def _coindesk_cmc_id(symbol: str, cc_id: int, cmc_id: int | None) -> int | None:
    """The quirk coins never carry the id, so the id map is exercised with the bundled market."""
    if symbol in _UNMAPPED_QUIRKS or random.Random(cc_id).random() < _UNMAPPED_SHARE:
        return None
    return cmc_id


def _cmc_volume(cmc_id: int, cc_volume: Decimal) -> Decimal:
    """Near CryptoCompare's volume but not equal, so the two volume rankings differ a little."""
    factor = Decimal(repr(random.Random(cmc_id).uniform(*_VOLUME_FACTOR)))
    return (cc_volume * factor).quantize(_VOLUME_STEP)


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
