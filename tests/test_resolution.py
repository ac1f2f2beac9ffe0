"""Each ranked coin is resolved to one CoinMarketCap id, stored with the ranking, rule by rule."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from fakeproviders import Fault
from scrapers.cli import main as scrapers_main
from topcoins.models import CmcAsset, ScrapeRun, rankings

MAP_PATH = "/v1/cryptocurrency/map"


def resolved(db) -> dict[str, tuple[int | None, str | None]]:
    """Symbol → (cmc_id, rule) in the latest ranking."""
    with db.connect() as connection:
        latest = connection.scalar(select(func.max(rankings.c.run_id)))
        entries = connection.execute(select(rankings).where(rankings.c.run_id == latest))
        return {e.symbol: (e.cmc_id, e.resolved_by) for e in entries}


def coin(providers, symbol: str):
    return next(c for c in providers.market.ranking if c.symbol == symbol)


def asset(providers, cmc_id: int):
    return next(a for a in providers.market.assets if a.id == cmc_id)


def map_calls(providers) -> int:
    return sum(1 for r in providers.requests if r.path == MAP_PATH)


def test_an_operators_alias_wins_over_every_rule(scrape, store, db, providers):
    coin(providers, "HOT*").coindesk_cmc_id = 2682
    store.alias("HOT", 2430)
    assert scrape("ranks") == 0
    assert resolved(db)["HOT"] == (2430, "alias")


def test_the_id_the_ranking_provider_names_is_taken_as_it_is(scrape, db, providers):
    iota = coin(providers, "IOT")
    iota.coindesk_cmc_id = 1720
    assert scrape("ranks") == 0
    assert resolved(db)["IOT"] == (1720, "provider")


def test_a_shared_ticker_goes_to_the_asset_of_the_same_name(scrape, db, providers):
    """Ethercoin ranks better on CoinMarketCap, but the coin is Ethereum Classic."""
    assert asset(providers, 1400).cmc_rank < asset(providers, 1321).cmc_rank
    assert scrape("ranks", RANKING_PROVIDER="cryptocompare") == 0
    table = resolved(db)
    assert table["ETC"] == (1321, "symbol")
    assert table["GRT"] == (6719, "symbol")
    assert table["BTG"] == (2083, "symbol")


def test_a_shared_ticker_without_a_name_match_goes_to_the_best_ranked(scrape, db, providers):
    coin(providers, "HOT*").full_name = "Holochain"
    assert scrape("ranks", RANKING_PROVIDER="cryptocompare") == 0
    assert resolved(db)["HOT"] == (2682, "symbol")


def test_a_starred_cryptocompare_ticker_is_resolved_as_the_plain_ticker(scrape, db, providers):
    assert scrape("ranks", RANKING_PROVIDER="cryptocompare") == 0
    assert resolved(db)["HOT"] == (2682, "symbol")


def test_a_ticker_coinmarketcap_spells_differently_is_found_by_the_slug_of_the_name(
    scrape, db, providers
):
    """CryptoCompare's IOT "IOTA" is CoinMarketCap's MIOTA, slug "iota"."""
    assert not any(a.symbol == "IOT" for a in providers.market.assets)
    assert scrape("ranks", RANKING_PROVIDER="cryptocompare") == 0
    assert resolved(db)["IOT"] == (1720, "slug")


def test_a_name_with_a_common_suffix_finds_the_shorter_name(scrape, db, providers):
    """Golem Network Token became GLM "Golem": neither its ticker nor its slug still match."""
    golem = asset(providers, 100027)
    golem.symbol, golem.name, golem.slug = "GLM", "Golem", "golem-network-tokens"
    assert scrape("ranks", RANKING_PROVIDER="cryptocompare") == 0
    assert resolved(db)["GNT"] == (100027, "name")


def test_polymath_network_finds_polymath_by_name_alone(scrape, db, providers):
    polymath = asset(providers, 2496)
    assert (polymath.name, coin(providers, "POLY*").full_name) == ("Polymath", "Polymath Network")
    polymath.symbol, polymath.slug = "POLYX", "polymesh"
    assert scrape("ranks", RANKING_PROVIDER="cryptocompare") == 0
    assert resolved(db)["POLY"] == (2496, "name")


def test_polymath_from_the_recorded_payloads_is_priced(scrape, store, providers):
    """CryptoCompare "POLY*" "Polymath Network"; CoinMarketCap 2496 "Polymath"."""
    assert scrape("ranks", RANKING_PROVIDER="cryptocompare") == 0
    assert scrape("prices") == 0
    poly = next(r for r in store.top_coins() if r["name"] == "Polymath Network")
    assert (poly["symbol"], poly["cmc_id"]) == ("POLY", 2496)
    assert poly["price_usd"] == asset(providers, 2496).price


def test_a_coin_coinmarketcap_does_not_list_stays_unresolved_and_unpriced(
    scrape, store, db, providers
):
    flc = coin(providers, "FLC")
    assert flc.cmc_id is None
    assert scrape("ranks") == 0
    assert resolved(db)["FLC"] == (None, None)
    assert scrape("prices") == 0
    row = next(r for r in store.top_coins() if r["symbol"] == "FLC")
    assert (row["rank"], row["price_usd"], row["match"]) == (
        providers.market.ranking.index(flc) + 1,
        None,
        None,
    )


def test_the_id_map_is_fetched_at_most_once_a_day(scrape, db, providers):
    assert scrape("ranks") == 0
    assert scrape("ranks") == 0
    assert map_calls(providers) == 1
    with Session(db) as session:
        stored = session.scalar(select(func.count()).select_from(CmcAsset))
    assert stored == sum(1 for a in providers.market.assets if a.status == "active")
    with db.begin() as connection:
        connection.execute(text("UPDATE cmc_assets SET refreshed_at = now() - interval '25 hours'"))
    assert scrape("ranks") == 0
    assert map_calls(providers) == 2


def test_the_map_refresh_is_paid_by_the_ranking_run_and_recorded(scrape, db, providers):
    assert scrape("ranks") == 0
    with Session(db) as session:
        run = session.scalars(select(ScrapeRun)).one()
    assert run.credit_count == 1
    assert run.credit_limit_monthly == providers.coinmarketcap_account.credit_limit_monthly


def test_without_a_coinmarketcap_key_the_ranking_keeps_the_providers_ids(
    env, db, providers, capsys
):
    without_key = {k: v for k, v in env.items() if k != "COINMARKETCAP_API_KEY"}
    assert scrapers_main(["ranks"], without_key) == 0
    assert [r for r in providers.requests if r.provider == "coinmarketcap"] == []
    table = resolved(db)
    given = [c for c in providers.market.ranking[:200] if c.coindesk_cmc_id is not None]
    assert all(table[c.symbol.rstrip("*")] == (c.coindesk_cmc_id, "provider") for c in given)
    assert table["ETC"] == (None, None)
    assert "COINMARKETCAP_API_KEY is not set" in capsys.readouterr().out


def test_a_failing_map_refresh_keeps_the_ranking_and_the_map_it_had(scrape, db, providers):
    assert scrape("ranks") == 0
    with db.begin() as connection:
        connection.execute(text("UPDATE cmc_assets SET refreshed_at = now() - interval '25 hours'"))
    providers.inject("coinmarketcap", Fault.HTTP_500, times=-1)
    assert scrape("ranks") == 0
    assert resolved(db)["ETC"] == (1321, "symbol")
    with Session(db) as session:
        runs = session.scalars(select(ScrapeRun).order_by(ScrapeRun.id)).all()
        oldest = session.scalar(select(func.min(CmcAsset.refreshed_at)))
    assert [r.status for r in runs] == ["succeeded", "succeeded"]
    assert oldest is not None


def test_the_map_refresh_never_spends_below_the_credit_floor(scrape, db, providers, capsys):
    account = providers.coinmarketcap_account
    account.credits_used_month = account.credit_limit_monthly - 500
    assert scrape("ranks") == 0
    assert map_calls(providers) == 0
    assert "credit floor reached" in capsys.readouterr().out
    assert resolved(db)["BTC"] == (1, "provider")


def test_a_new_alias_applies_from_the_next_ranking_and_is_priced_by_id(
    scrape, store, db, providers
):
    assert scrape("ranks") == 0
    assert scrape("prices") == 0
    store.alias("HOT", 2430)
    assert scrape("ranks") == 0
    assert scrape("prices") == 0
    hot = next(r for r in store.top_coins() if r["symbol"] == "HOT")
    assert (hot["cmc_id"], hot["match"]) == (2430, "alias")
    assert hot["price_usd"] == asset(providers, 2430).price
    assert isinstance(hot["price_usd"], Decimal)
