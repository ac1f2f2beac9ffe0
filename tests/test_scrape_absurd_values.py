"""An absurd amount of USD from a provider fails the run, naming the coin, and is never served.

JSON is parsed with ``parse_float=Decimal``: ``1e400`` arrives as a finite number, and
stored it would be served as ``"price_usd": Infinity``, which is not JSON.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.support import PayloadServer
from tests.test_recorded_payloads import KEY_INFO, PAYLOADS
from topcoins.models import ScrapeRun

RANKING = {
    "coindesk": {},
    "cryptocompare": {"RANKING_PROVIDER": "cryptocompare"},
    "coinmarketcap": {"RANKING_PROVIDER": "coinmarketcap"},
}


def failures(db) -> list[str]:
    with Session(db) as session:
        runs = session.scalars(select(ScrapeRun).where(ScrapeRun.status == "failed"))
        return [run.error for run in runs]


@pytest.mark.parametrize(
    ("provider", "field", "value", "reason"),
    [
        (
            "coindesk",
            "price",
            "1e400",
            "CoinDesk: asset 1182 (BTC) has an absurd price_usd 1E+400",
        ),
        (
            "coindesk",
            "volume_24h",
            "-1",
            "CoinDesk: asset 1182 (BTC) has an absurd volume_24h_usd -1",
        ),
        (
            "cryptocompare",
            "price",
            "-5",
            "CryptoCompare: asset 1182 (BTC) has an absurd price_usd -5",
        ),
        (
            "cryptocompare",
            "volume_24h",
            "2e15",
            "CryptoCompare: asset 1182 (BTC) has an absurd volume_24h_usd 2E+15",
        ),
    ],
)
def test_an_absurd_number_in_a_ranking_fails_the_run_naming_the_coin(
    scraped, scrape, db, store, providers, provider, field, value, reason
):
    served = store.top_coins()
    setattr(providers.market.ranking[0], field, Decimal(value))
    assert scrape("ranks", **RANKING[provider]) == 1
    assert failures(db) == [reason]
    assert store.top_coins() == served


@pytest.mark.parametrize(
    ("command", "field", "value", "reason"),
    [
        (
            "prices",
            "price",
            "1e16",
            "CoinMarketCap: asset 1 (BTC) has an absurd price_usd 1E+16",
        ),
        (
            "prices",
            "volume_24h",
            "1e400",
            "CoinMarketCap: asset 1 (BTC) has an absurd volume_24h_usd 1E+400",
        ),
        (
            "ranks",
            "price",
            "-0.01",
            "CoinMarketCap: asset 1 (BTC) has an absurd price_usd -0.01",
        ),
    ],
)
def test_an_absurd_coinmarketcap_quote_fails_the_run_naming_the_coin(
    scraped, scrape, db, store, providers, command, field, value, reason
):
    served = store.top_coins()
    bitcoin = next(asset for asset in providers.market.assets if asset.id == 1)
    setattr(bitcoin, field, Decimal(value))
    assert scrape(command, **RANKING["coinmarketcap"]) == 1
    assert failures(db) == [reason]
    assert store.top_coins() == served


def test_a_listing_priced_at_1e400_is_not_served_as_infinity(scraped, scrape, db, store):
    """The recorded listing, byte for byte but for Bitcoin's price."""
    listing = (PAYLOADS / "coinmarketcap_listings_2025-02-08.json").read_bytes()
    absurd = listing.replace(b'"price": 96463.34789639605', b'"price": 1e400', 1)
    assert absurd != listing
    served = store.top_coins()
    bodies = {"/v1/cryptocurrency/listings/latest": absurd, "/v1/key/info": KEY_INFO}
    with PayloadServer(bodies) as coinmarketcap:
        settings = {"COINMARKETCAP_BASE_URL": coinmarketcap.url, "RANKING_SIZE": "100"}
        assert scrape("ranks", **RANKING["coinmarketcap"], **settings) == 1
    assert failures(db) == ["CoinMarketCap: asset 1 (BTC) has an absurd price_usd 1E+400"]
    assert store.top_coins() == served


def test_a_market_cap_above_a_quadrillion_dollars_fails_the_run(scraped, scrape, db, providers):
    """The fake derives CoinDesk's market cap from the volume, at 5 to 60 times it."""
    providers.market.ranking[0].volume_24h = Decimal("1e15")
    assert scrape("ranks") == 1
    [reason] = failures(db)
    assert reason.startswith("CoinDesk: asset 1182 (BTC) has an absurd market_cap_usd ")
