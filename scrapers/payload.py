"""Small readers for untrusted provider JSON: a bad value becomes ``None``, never a crash.

The exception is an absurd amount of USD, which fails the run (``usd_or_none``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Context, Decimal
from typing import Any

from .errors import InvalidPayload

# More USD than all the money in the world: a price, volume or market cap above this is
# a broken number, not a market.
MAX_USD = Decimal("1e15")


def one_line(value: Any, limit: int = 300) -> str:
    """Provider text squeezed into one bounded log-safe line."""
    return " ".join(str(value or "").split())[:limit]


def text_or_none(value: Any) -> str | None:
    """A non-blank string, stripped."""
    return value.strip() or None if isinstance(value, str) else None


def int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# Provider ids are small positive integers; the history's narrow rows hold them in four bytes.
MAX_ID = 2**31 - 1


def id_or_none(value: Any) -> int | None:
    """A provider's asset id: a positive integer that fits the schema, else ``None``."""
    number = int_or_none(value)
    return number if number is not None and 0 < number <= MAX_ID else None


def decimal_or_none(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        return None
    number = Decimal(value)
    return number if number.is_finite() else None


def usd_or_none(value: Any, provider: str, asset: str, name: str) -> Decimal | None:
    """A USD price, volume or market cap; ``InvalidPayload`` naming the asset if absurd.

    JSON is parsed with ``parse_float=Decimal``, so ``1e400`` arrives finite; stored, it
    would be served as ``Infinity``, which is not JSON.
    """
    amount = decimal_or_none(value)
    if amount is not None and not 0 <= amount <= MAX_USD:
        shown = amount.normalize(Context(prec=12))
        raise InvalidPayload(provider, f"asset {asset} has an absurd {name} {shown}")
    return amount


# A day's change beyond this many percent is a broken number; it is dropped, not served.
MAX_PERCENT_CHANGE = Decimal("1e9")


def percent_change_or_none(value: Any) -> float | None:
    """A 24 h change in percent: informative only, so a broken one is left out, not fatal."""
    number = decimal_or_none(value)
    if number is None or not -100 <= number <= MAX_PERCENT_CHANGE:
        return None
    return float(number)


def asset_label(asset_id: int | None, symbol: str) -> str:
    """How a reason names an asset: the provider's id, then its ticker."""
    return symbol if asset_id is None else f"{asset_id} ({symbol})"


def datetime_or_none(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def unix_time_or_none(value: Any) -> datetime | None:
    """Unix seconds, as CryptoCompare and CoinDesk send times; absurd values become ``None``."""
    seconds = int_or_none(value)
    if seconds is None or not 0 < seconds < 2**33:
        return None
    return datetime.fromtimestamp(seconds, UTC)
