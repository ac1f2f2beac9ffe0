"""``cmc listings`` and ``cryptocompare top``: provider clients for checking by hand."""

from __future__ import annotations

from fakeproviders import Fault
from tests.support import run_scrapers


def test_cmc_listings_prints_a_table_of_coinmarketcaps_top(env, providers):
    result = run_scrapers(env, "cmc", "listings", "--limit", "10")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["Rank", "Id", "Symbol", "Name", "Price", "USD"]
    assert set(lines[1]) <= {"-", " "}
    first = providers.market.assets[0]
    assert lines[2].split()[:3] == [str(first.cmc_rank), str(first.id), first.symbol]
    assert len(lines) == 2 + 10 + 1
    assert lines[-1] == "10 assets, 1 credit(s) used"
    [request] = providers.requests
    assert request.query == {"start": "1", "limit": "10", "convert": "USD"}


def test_cryptocompare_top_prints_the_volume_ranking(env, providers):
    result = run_scrapers(env, "cryptocompare", "top", "--limit", "10")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["Rank", "Symbol", "Name"]
    assert len(lines) == 12
    assert [line.split()[1] for line in lines[2:]] == [
        c.symbol for c in providers.market.ranking[:10]
    ]


def test_provider_error_is_one_line_and_exit_1(env, providers):
    providers.inject("coinmarketcap", Fault.ERROR_PAYLOAD, times=-1)
    result = run_scrapers(env, "cmc", "listings")
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("scrapers: CoinMarketCap: HTTP 401")


def test_bad_limit_is_a_usage_error(env):
    result = run_scrapers(env, "cmc", "listings", "--limit", "0")
    assert result.returncode == 2
    assert "--limit" in result.stderr
    assert "Traceback" not in result.stderr
