"""The ranking scrape: CryptoCompare's top assets by volume become a ranking snapshot."""

from __future__ import annotations

from dataclasses import asdict

from sqlalchemy.orm import Session

from topcoins.models import RankingEntry, Source

from .cryptocompare import CryptoCompareClient
from .snapshots import Snapshot


class RanksJob:
    source = Source.CRYPTOCOMPARE

    def __init__(self, client: CryptoCompareClient, size: int) -> None:
        self.client = client
        self.size = size

    def fetch(self, session: Session) -> Snapshot:
        coins = self.client.top_by_volume(self.size)
        rows = [{k: v for k, v in asdict(coin).items() if k != "price_usd"} for coin in coins]
        return Snapshot(RankingEntry, rows)

    def close(self) -> None:
        self.client.close()
