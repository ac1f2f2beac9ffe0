"""CoinMarketCap credits: what is left of the month, read before a run spends any.

``/v1/key/info`` is free, so a run that is about to spend credits asks first, keeps what
it read for its run record (and from there ``/metrics``), and refuses a spend that would
leave fewer than ``COINMARKETCAP_CREDIT_FLOOR`` credits in the month.  The served data
does not depend on the spend: a refused run fails, and the last snapshot stays served.
"""

from __future__ import annotations

import logging

from .coinmarketcap import PROVIDER, CoinMarketCapClient, CreditUsage
from .errors import ProviderError

log = logging.getLogger("scrapers.budget")


class CreditFloorReached(ProviderError):
    """Spending would take the month's credits below the floor; nothing was spent."""


class CreditBudget:
    """One run's view of the key's credits: read once, then debited by what the run spends."""

    def __init__(self, client: CoinMarketCapClient, floor: int) -> None:
        self.client = client
        self.floor = floor
        self.usage: CreditUsage | None = None
        self.spent = 0

    def read(self) -> CreditUsage:
        if self.usage is None:
            self.usage = self.client.key_info()
            if self.usage.credits_left_monthly is None:
                log.warning(
                    "/v1/key/info names no credits left this month: "
                    "COINMARKETCAP_CREDIT_FLOOR cannot be checked"
                )
        return self.usage

    def allow(self, credits: int, purpose: str) -> None:
        """Raise ``CreditFloorReached`` unless ``credits`` more can be spent on ``purpose``."""
        usage = self.read()
        if credits <= 0:
            return
        if usage.credits_left_monthly is not None:
            left = usage.credits_left_monthly - self.spent
            if left - credits < self.floor:
                limit = usage.credit_limit_monthly
                of = f" of the month's {limit}" if limit is not None else ""
                raise CreditFloorReached(
                    PROVIDER,
                    f"credit floor reached: {purpose} needs about {credits} credit(s), "
                    f"{left}{of} are left and COINMARKETCAP_CREDIT_FLOOR is {self.floor}; "
                    "nothing was spent",
                )
        if usage.credits_left_daily is not None:
            left_today = usage.credits_left_daily - self.spent
            if left_today < credits:
                raise CreditFloorReached(
                    PROVIDER,
                    f"daily credit limit reached: {purpose} needs about {credits} credit(s) "
                    f"and {left_today} are left today; nothing was spent",
                )

    def record(self, credits: int) -> None:
        self.spent += credits
