"""Small readers for untrusted provider JSON: a bad value becomes ``None``, never a crash."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any


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


def decimal_or_none(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        return None
    number = Decimal(value)
    return number if number.is_finite() else None


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
