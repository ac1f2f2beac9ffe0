"""Real recorded provider payloads (tests/payloads), served byte for byte over loopback HTTP."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from sqlalchemy import Row, select

from tests.support import ROOT, PayloadServer
from topcoins.models import rankings

PAYLOADS = ROOT / "tests" / "payloads"
KEY_INFO = json.dumps(
    {
        "status": {"error_code": 0, "error_message": None, "credit_count": 0},
        "data": {
            "plan": {
                "credit_limit_monthly": 10000,
                "credit_limit_monthly_reset": "In 5 days, 2 hours, 1 minute",
                "credit_limit_monthly_reset_timestamp": "2026-12-01T00:00:00.000Z",
                "rate_limit_minute": 30,
            },
            "usage": {
                "current_minute": {"requests_made": 1, "requests_left": 29},
                "current_day": {"credits_used": 40, "credits_left": None},
                "current_month": {"credits_used": 3000, "credits_left": 7000},
            },
        },
    }
).encode()


def entries(db) -> list[Row]:
    with db.connect() as connection:
        return list(connection.execute(select(rankings).order_by(rankings.c.rank)))


def test_a_recorded_cryptocompare_page_is_ranked_and_its_starred_tickers_priced(
    scrape, db, store, providers
):
    """The issue's Polymath: CryptoCompare "POLY*" "Polymath Network"; CoinMarketCap "Polymath"."""
    page = (PAYLOADS / "cryptocompare_mktcapfull_2019.json").read_bytes()
    recorded = json.loads(page)["Data"]
    with PayloadServer({"/data/top/totalvolfull": page}) as cryptocompare:
        assert (
            scrape(
                "ranks",
                RANKING_PROVIDER="cryptocompare",
                CRYPTOCOMPARE_BASE_URL=cryptocompare.url,
                RANKING_SIZE="100",
            )
            == 0
        )
    stored = entries(db)
    assert [(e.symbol, e.name) for e in stored] == [
        (d["CoinInfo"]["Name"].rstrip("*"), d["CoinInfo"]["FullName"].strip()) for d in recorded
    ]
    volume = recorded[0]["RAW"]["USD"]["TOTALVOLUME24HTO"]
    assert stored[0].volume_24h_usd == pytest.approx(volume, rel=1e-6)
    assert scrape("prices") == 0
    served = {row["name"]: row for row in store.top_coins()}
    polymath = next(a for a in providers.market.assets if a.id == 2496)
    assert (served["Polymath Network"]["symbol"], served["Polymath Network"]["cmc_id"]) == (
        "POLY",
        2496,
    )
    assert served["Polymath Network"]["price_usd"] == polymath.price
    assert (served["Holo"]["symbol"], served["Holo"]["cmc_id"]) == ("HOT", 2682)


def test_a_recorded_coinmarketcap_listing_is_ranked_and_priced_at_its_exact_prices(
    scrape, db, store
):
    listing = (PAYLOADS / "coinmarketcap_listings_2025-02-08.json").read_bytes()
    recorded = json.loads(listing, parse_float=Decimal)["data"]
    bodies = {"/v1/cryptocurrency/listings/latest": listing, "/v1/key/info": KEY_INFO}
    with PayloadServer(bodies) as coinmarketcap:
        settings = {"COINMARKETCAP_BASE_URL": coinmarketcap.url, "RANKING_SIZE": "100"}
        assert scrape("ranks", RANKING_PROVIDER="coinmarketcap", **settings) == 0
        assert scrape("prices", **settings) == 0
        asked = [path.split("?")[0] for path in coinmarketcap.requests]
    assert "/v2/cryptocurrency/quotes/latest" not in asked
    stored = entries(db)
    assert [(e.cmc_id, e.symbol, e.slug) for e in stored] == [
        (a["id"], a["symbol"], a["slug"]) for a in recorded
    ]
    served = store.top_coins()
    assert [row["price_usd"] for row in served] == [a["quote"]["USD"]["price"] for a in recorded]
    assert served[0]["price_usd"] == Decimal("96463.34789639605")
