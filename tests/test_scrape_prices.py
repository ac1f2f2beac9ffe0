"""``python -m scrapers prices``: CoinMarketCap quotes for the ranked coins, by id, on a budget."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from fakeproviders import Fault
from scrapers.budget import CreditBudget
from scrapers.cli import main as scrapers_main
from scrapers.coinmarketcap import CoinMarketCapClient, CreditUsage
from tests.support import PayloadServer
from topcoins.models import PriceQuote, ScrapeRun
from topcoins.settings import CoinMarketCapSettings, HttpSettings

QUOTES_PATH = "/v2/cryptocurrency/quotes/latest"


def price_runs(db) -> list[ScrapeRun]:
    with Session(db) as session:
        return list(
            session.scalars(
                select(ScrapeRun).where(ScrapeRun.kind == "prices").order_by(ScrapeRun.id)
            )
        )


def quote_calls(providers) -> list[dict[str, str]]:
    return [r.query for r in providers.requests if r.path == QUOTES_PATH]


def assets_by_id(providers) -> dict:
    return {a.id: a for a in providers.market.assets}


def test_a_price_run_for_200_resolved_coins_records_2_credits(scrape, db, store, providers):
    missing = [c for c in providers.market.ranking[:201] if c.cmc_id is None]
    for coin in missing:
        providers.market.ranking.remove(coin)
    assert scrape("ranks") == 0
    assert all(row["cmc_id"] is not None for row in store.top_coins())
    providers.requests.clear()
    assert scrape("prices") == 0
    [call] = quote_calls(providers)
    assert len(call["id"].split(",")) == 200
    assert "symbol" not in call
    [run] = price_runs(db)
    assert (run.status, run.credit_count, run.item_count, run.ticker_lookups) == (
        "succeeded",
        2,
        200,
        0,
    )
    assert sum(1 for row in store.top_coins() if row["price_usd"] is not None) == 200


def test_every_ranked_coin_gets_the_price_of_its_own_asset(scraped, store, providers):
    rows = store.top_coins()
    assert len(rows) == 200
    assets = assets_by_id(providers)
    truth = {c.symbol.rstrip("*"): c.cmc_id for c in providers.market.ranking[:200]}
    for row in rows:
        expected = truth[row["symbol"]]
        assert row["cmc_id"] == expected, row["symbol"]
        assert row["price_usd"] == (assets[expected].price if expected else None)
    assert [r["symbol"] for r in rows if r["price_usd"] is None] == ["FLC"]


def test_only_the_resolved_ids_are_asked_and_stored(scraped, db, store, providers):
    resolved = {row["cmc_id"] for row in store.top_coins() if row["cmc_id"] is not None}
    [call] = quote_calls(providers)
    assert {int(i) for i in call["id"].split(",")} == resolved
    with Session(db) as session:
        stored = set(session.scalars(select(PriceQuote.cmc_id)))
    assert stored == resolved


def test_shared_tickers_are_priced_with_their_own_asset(scraped, store, providers):
    by_symbol = {r["symbol"]: r["cmc_id"] for r in store.top_coins()}
    assert (by_symbol["ETC"], by_symbol["HOT"], by_symbol["GRT"], by_symbol["BTG"]) == (
        1321,
        2682,
        6719,
        2083,
    )
    assert 7083 not in by_symbol.values(), "Uniswap (UNI) is not ranked"


def test_coins_far_down_coinmarketcaps_own_ranking_are_priced(scraped, store, providers):
    ranks = {a.id: a.cmc_rank for a in providers.market.assets}
    far_down = [r for r in store.top_coins() if r["cmc_id"] and (ranks[r["cmc_id"]] or 0) > 200]
    assert far_down
    assert all(r["price_usd"] is not None for r in far_down)


def test_with_a_fresh_map_coins_it_cannot_resolve_cost_no_ticker_lookup(scraped, db, providers):
    assert all("symbol" not in call for call in quote_calls(providers))
    [run] = price_runs(db)
    assert run.ticker_lookups == 0


def test_without_a_map_unresolved_coins_are_looked_up_by_ticker_as_a_last_resort(
    env, db, store, providers
):
    without_key = {k: v for k, v in env.items() if k != "COINMARKETCAP_API_KEY"}
    assert scrapers_main(["ranks"], without_key) == 0
    unresolved = [r["symbol"] for r in store.top_coins() if r["match"] is None]
    assert "ETC" in unresolved
    assert scrapers_main(["prices"], env) == 0
    _by_id, by_symbol = quote_calls(providers)
    assert set(by_symbol["symbol"].split(",")) == set(unresolved)
    [run] = price_runs(db)
    assert run.ticker_lookups == len(unresolved)
    etc = next(r for r in store.top_coins() if r["symbol"] == "ETC")
    assert (etc["cmc_id"], etc["match"]) == (1321, "ticker")
    assert etc["price_usd"] == assets_by_id(providers)[1321].price


def test_a_coinmarketcap_ranking_is_priced_with_its_own_quotes_for_nothing(
    scrape, db, store, providers
):
    assert scrape("ranks", RANKING_PROVIDER="coinmarketcap") == 0
    assert scrape("prices") == 0
    assert quote_calls(providers) == []
    [run] = price_runs(db)
    assert (run.credit_count, run.item_count) == (0, 200)
    assets = assets_by_id(providers)
    rows = store.top_coins()
    assert all(r["price_usd"] == assets[r["cmc_id"]].price for r in rows)
    assert {r["match"] for r in rows} == {"provider"}


def test_the_same_coinmarketcap_ranking_is_not_priced_twice(scrape, db, providers, capsys):
    assert scrape("ranks", RANKING_PROVIDER="coinmarketcap") == 0
    assert scrape("prices") == 0
    assert scrape("prices") == 0
    assert len(price_runs(db)) == 1
    assert "are stored already" in capsys.readouterr().out
    assert scrape("ranks", RANKING_PROVIDER="coinmarketcap") == 0
    assert scrape("prices") == 0
    assert len(price_runs(db)) == 2


def test_an_alias_in_a_coinmarketcap_ranking_costs_only_its_own_id(scrape, db, store, providers):
    assert scrape("ranks", RANKING_PROVIDER="coinmarketcap") == 0
    listed = {row["cmc_id"] for row in store.top_coins()}
    outside = next(a for a in providers.market.assets if a.id not in listed and a.price)
    store.alias("BTC", outside.id)
    assert scrape("ranks", RANKING_PROVIDER="coinmarketcap") == 0
    assert scrape("prices") == 0
    [call] = quote_calls(providers)
    assert call["id"] == str(outside.id)
    btc = next(r for r in store.top_coins() if r["symbol"] == "BTC")
    assert (btc["cmc_id"], btc["match"], btc["price_usd"]) == (outside.id, "alias", outside.price)
    assert price_runs(db)[-1].credit_count == 1


def test_each_price_run_records_the_plan_and_the_credits_left(scrape, db, providers):
    account = providers.coinmarketcap_account
    assert scrape("ranks") == 0
    account.credits_used_month = 1234
    assert scrape("prices") == 0
    [run] = price_runs(db)
    assert (run.credit_limit_monthly, run.credits_left_monthly) == (10_000, 10_000 - 1234)
    assert run.credits_reset_at == account.month_reset_at
    assert account.credits_used_month == 1234 + run.credit_count


def test_a_run_that_would_spend_below_the_floor_spends_nothing(
    scraped, scrape, db, store, providers
):
    served = store.top_coins()
    account = providers.coinmarketcap_account
    account.credits_used_month = account.credit_limit_monthly - 501
    providers.requests.clear()
    assert scrape("prices") == 1
    assert quote_calls(providers) == []
    failed = price_runs(db)[-1]
    assert failed.status == "failed"
    assert failed.error.startswith("CoinMarketCap: credit floor reached: ")
    assert "501" in failed.error
    assert "COINMARKETCAP_CREDIT_FLOOR is 500" in failed.error
    assert (failed.credit_count, failed.credits_left_monthly) == (0, 501)
    assert store.top_coins() == served


def test_the_credit_floor_is_the_operators_choice(scraped, scrape, db, providers):
    account = providers.coinmarketcap_account
    account.credits_used_month = account.credit_limit_monthly - 10
    assert scrape("prices", COINMARKETCAP_CREDIT_FLOOR="0") == 0
    assert scrape("prices", COINMARKETCAP_CREDIT_FLOOR="9") == 1


def test_the_daily_limit_is_checked_before_spending(scraped, scrape, db, providers):
    account = providers.coinmarketcap_account
    account.credit_limit_daily = account.credits_used_day + 1
    assert scrape("prices") == 1
    assert price_runs(db)[-1].error.startswith("CoinMarketCap: daily credit limit reached: ")


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault.RATE_LIMITED, "per-minute rate limit reached"),
        (Fault.DAILY_LIMIT, "daily credit limit reached"),
        (Fault.MONTHLY_LIMIT, "monthly credit limit reached"),
        (Fault.IP_RATE_LIMITED, "IP rate limit reached"),
    ],
)
def test_coinmarketcap_limits_fail_the_run_with_their_code(
    scraped, scrape, db, providers, fault, reason
):
    code = {
        Fault.RATE_LIMITED: 1008,
        Fault.DAILY_LIMIT: 1009,
        Fault.MONTHLY_LIMIT: 1010,
        Fault.IP_RATE_LIMITED: 1011,
    }[fault]
    providers.inject("coinmarketcap", fault, times=-1)
    assert scrape("prices", HTTP_RETRIES="0") == 1
    error = price_runs(db)[-1].error
    assert error.startswith(f"CoinMarketCap: {reason}: ")
    assert f"error {code}" in error
    assert "\n" not in error


def test_the_monthly_limit_reached_upstream_is_seen_before_any_spend(
    scraped, scrape, db, providers
):
    account = providers.coinmarketcap_account
    account.credits_used_month = account.credit_limit_monthly
    assert scrape("prices") == 1
    assert price_runs(db)[-1].credits_left_monthly == 0


def test_prices_before_any_ranking_fail_with_a_reason(scrape, db, providers):
    assert scrape("prices") == 1
    [run] = price_runs(db)
    assert run.status == "failed"
    assert "no ranking snapshot yet" in run.error
    assert [r for r in providers.requests if r.provider == "coinmarketcap"] == []


def test_price_drift_is_served_after_the_next_scrape(scrape, store, providers):
    assert scrape("ranks") == 0
    assert scrape("prices") == 0
    btc = assets_by_id(providers)[1]
    before = next(r for r in store.top_coins() if r["symbol"] == "BTC")["price_usd"]
    btc.price = before * 2
    assert scrape("prices") == 0
    assert next(r for r in store.top_coins() if r["symbol"] == "BTC")["price_usd"] == before * 2


def test_an_unresolved_coin_from_an_older_ranking_is_still_priced_by_ticker(scrape, store, db):
    """Rankings stored before ids existed have none: the view falls back to their tickers."""
    assert scrape("ranks") == 0
    with db.begin() as connection:
        connection.execute(
            text("UPDATE assets SET cmc_id = NULL, resolved_by = NULL WHERE symbol = 'ETH'")
        )
        connection.execute(text("DELETE FROM cmc_assets"))
    assert scrape("prices") == 0
    eth = next(r for r in store.top_coins() if r["symbol"] == "ETH")
    assert (eth["cmc_id"], eth["match"]) == (1027, "ticker")


def test_a_key_info_answer_without_credit_figures_does_not_stop_the_prices(caplog):
    """Enterprise plans name no limit, and a changed format must not stop the prices."""
    body = json.dumps({"status": {"error_code": 0, "credit_count": 0}, "data": {}}).encode()
    with PayloadServer({"/v1/key/info": body}) as coinmarketcap:
        client = CoinMarketCapClient(
            CoinMarketCapSettings(api_key="k", base_url=coinmarketcap.url), HttpSettings()
        )
        budget = CreditBudget(client, floor=500)
        budget.allow(2, "pricing 200 coins")
        client.close()
    assert budget.usage == CreditUsage(None, None, None, None)
    assert "COINMARKETCAP_CREDIT_FLOOR cannot be checked" in caplog.text


def test_a_failed_run_records_the_credits_it_spent_before_failing(scraped, scrape, db, providers):
    """A broken answer is still billed: the run says so, and so does the 24 h spend."""
    account = providers.coinmarketcap_account
    used = account.credits_used_month
    providers.inject("coinmarketcap", Fault.SHORT, times=-1)
    assert scrape("prices") == 1
    failed = price_runs(db)[-1]
    assert "quotes cover only 3 of" in failed.error
    assert failed.credit_count == account.credits_used_month - used == 2
    assert failed.credits_left_monthly == account.credit_limit_monthly - used
