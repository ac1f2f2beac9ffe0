"""``cmc listings`` and ``cryptocompare top``: provider clients for checking by hand."""

from __future__ import annotations

import pytest

from fakeproviders import Fault
from tests.support import run_scrapers


def test_cmc_listings_prints_a_table_of_coinmarketcaps_top(env, providers):
    result = run_scrapers(env, "cmc", "listings", "--limit", "10")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:6] == ["Rank", "Id", "Symbol", "Name", "Price", "USD"]
    assert set(lines[1]) <= {"-", " "}
    first = providers.market.assets[0]
    assert lines[2].split()[:3] == [str(first.cmc_rank), str(first.id), first.symbol]
    assert len(lines) == 2 + 10 + 1
    assert lines[-1] == "10 assets, 1 credit(s) used"
    [request] = providers.requests
    assert request.query == {"start": "1", "limit": "10", "convert": "USD"}


def test_cmc_listings_sorts_by_volume_on_request(env, providers):
    result = run_scrapers(env, "cmc", "listings", "--limit", "5", "--sort", "volume_24h")
    assert result.returncode == 0, result.stderr
    [request] = providers.requests
    assert (request.query["sort"], request.query["sort_dir"]) == ("volume_24h", "desc")


def test_cmc_usage_prints_the_credits_left_for_free(env, providers):
    providers.coinmarketcap_account.credits_used_month = 1500
    result = run_scrapers(env, "cmc", "usage")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "credits left this month: 8500"
    assert lines[1] == "monthly credit limit:    10000"
    assert providers.coinmarketcap_account.credits_used_month == 1500


@pytest.mark.parametrize("provider", ["coindesk", "cryptocompare"])
def test_top_prints_the_volume_ranking(env, providers, provider):
    result = run_scrapers(env, provider, "top", "--limit", "10")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["Rank", "Symbol", "Name", "CMC"]
    assert len(lines) == 12
    assert [line.split()[1] for line in lines[2:]] == [
        c.symbol.rstrip("*") for c in providers.market.ranking[:10]
    ]


def test_provider_error_is_one_line_and_exit_1(env, providers):
    providers.inject("coinmarketcap", Fault.ERROR_PAYLOAD, times=-1)
    result = run_scrapers(env, "cmc", "listings")
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("scrapers: CoinMarketCap: key rejected: ")
    assert "HTTP 401, error 1001" in line


def test_bad_limit_is_a_usage_error(env):
    result = run_scrapers(env, "cmc", "listings", "--limit", "0")
    assert result.returncode == 2
    assert "--limit" in result.stderr
    assert "Traceback" not in result.stderr
