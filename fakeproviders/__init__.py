"""Fake CoinDesk Data, CryptoCompare and CoinMarketCap HTTP servers for tests and local runs."""

from fakeproviders.coinmarketcap import CoinMarketCapAccount
from fakeproviders.market import CmcAsset, Market, RankedCoin
from fakeproviders.server import FakeProviders, Fault, RecordedRequest

__all__ = [
    "CmcAsset",
    "CoinMarketCapAccount",
    "FakeProviders",
    "Fault",
    "Market",
    "RankedCoin",
    "RecordedRequest",
]
