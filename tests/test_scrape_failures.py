"""Every way a provider can fail leaves the served data as it was and says why, in one line."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from fakeproviders import Fault
from tests.support import run_scrapers
from topcoins.models import ScrapeRun

# How to make each provider's run: the scraper command and the settings that pick the provider.
RUNS = {
    "coindesk": ("ranks", {}),
    "cryptocompare": ("ranks", {"RANKING_PROVIDER": "cryptocompare"}),
    "coinmarketcap": ("prices", {}),
    "coinmarketcap-ranking": ("ranks", {"RANKING_PROVIDER": "coinmarketcap"}),
}
PREFIX = {
    "coindesk": "CoinDesk: ",
    "cryptocompare": "CryptoCompare: ",
    "coinmarketcap": "CoinMarketCap: ",
    "coinmarketcap-ranking": "CoinMarketCap: ",
}


def provider_of(run: str) -> str:
    return run.removesuffix("-ranking")


PERMANENT = [
    (Fault.HTTP_500, None, "HTTP 500"),
    (Fault.HTTP_503, 0, "HTTP 503"),
    (Fault.RATE_LIMITED, None, "rate"),
    (Fault.ERROR_PAYLOAD, None, ""),
    (Fault.MALFORMED_JSON, None, "not valid JSON"),
    (Fault.EMPTY, None, ""),
    (Fault.SHORT, None, ""),
    (Fault.MISSING_FIELDS, None, ""),
    (Fault.HANG, 5, "timed out"),
    (Fault.CONNECTION_RESET, None, "connection failed"),
]


def failed_runs(db) -> list[ScrapeRun]:
    with Session(db) as session:
        return list(session.scalars(select(ScrapeRun).where(ScrapeRun.status == "failed")))


@pytest.mark.parametrize("run", list(RUNS))
@pytest.mark.parametrize(
    ("fault", "argument", "reason"), PERMANENT, ids=[f[0].name for f in PERMANENT]
)
def test_failure_keeps_the_served_data_and_records_why(
    scraped, scrape, store, db, providers, run, fault, argument, reason
):
    served = store.top_coins()
    command, settings = RUNS[run]
    providers.inject(provider_of(run), fault, times=-1, argument=argument)
    started = time.monotonic()
    assert scrape(command, HTTP_TIMEOUT_SECONDS="1", SCRAPE_DEADLINE_SECONDS="3", **settings) == 1
    assert time.monotonic() - started < 5
    assert store.top_coins() == served
    [failed] = failed_runs(db)
    assert failed.source == provider_of(run)
    assert failed.item_count == 0
    assert reason.lower() in failed.error.lower()
    assert "\n" not in failed.error
    assert failed.error.startswith(PREFIX[run])


def test_coindesk_reports_some_failures_with_http_200_and_an_err_body(
    scraped, scrape, db, providers
):
    providers.inject("coindesk", Fault.ERROR_PAYLOAD, times=-1)
    assert scrape("ranks") == 1
    [failed] = failed_runs(db)
    assert failed.error.startswith("CoinDesk: error on /asset/v1/top/list page 1: ")
    assert failed.error.endswith("(HTTP 200)")


TRANSIENT = [
    (run, fault)
    for run in RUNS
    for fault in (Fault.HTTP_500, Fault.HTTP_503, Fault.CONNECTION_RESET, Fault.RATE_LIMITED)
    # CryptoCompare reports its rate limit as HTTP 200 with an error body: HTTP retries
    # cannot see it, so that run fails (see PERMANENT) and the next scheduled run retries.
    if (run, fault) != ("cryptocompare", Fault.RATE_LIMITED)
]


@pytest.mark.parametrize(("run", "fault"), TRANSIENT)
def test_a_transient_failure_is_retried(scraped, scrape, store, db, providers, run, fault):
    command, settings = RUNS[run]
    argument = 0 if fault is Fault.HTTP_503 else None
    providers.inject(provider_of(run), fault, times=1, argument=argument)
    assert scrape(command, **settings) == 0
    assert failed_runs(db) == []


def test_retry_after_is_honoured(scraped, scrape, providers):
    providers.inject("coinmarketcap", Fault.HTTP_503, times=1, argument=1)
    started = time.monotonic()
    assert scrape("prices", HTTP_BACKOFF_SECONDS="0") == 0
    assert time.monotonic() - started >= 1


def test_a_provider_that_keeps_hanging_is_given_up_on_by_the_deadline(scraped, scrape, providers):
    providers.inject("coindesk", Fault.HANG, times=-1, argument=20)
    started = time.monotonic()
    assert (
        scrape("ranks", HTTP_TIMEOUT_SECONDS="1.5", HTTP_RETRIES="10", SCRAPE_DEADLINE_SECONDS="4")
        == 1
    )
    assert time.monotonic() - started < 4.5


def test_one_deadline_bounds_a_ranking_that_talks_to_two_providers(scrape, providers):
    """A slow ranking leaves the id map's CoinMarketCap calls only what is left of the run."""
    providers.inject("coindesk", Fault.HANG, times=1, argument=2.5)
    providers.inject("coinmarketcap", Fault.HANG, times=-1, argument=20)
    started = time.monotonic()
    assert scrape("ranks", HTTP_TIMEOUT_SECONDS="3", SCRAPE_DEADLINE_SECONDS="4") == 0
    assert time.monotonic() - started < 5


def test_wrong_coinmarketcap_key_is_a_failed_run(scraped, scrape, db):
    assert scrape("prices", COINMARKETCAP_API_KEY="wrong-key") == 1
    [run] = failed_runs(db)
    assert run.error.startswith("CoinMarketCap: key rejected: ")
    assert "1001" in run.error


def test_failed_run_prints_one_json_line_and_no_traceback(scraped, env, providers):
    providers.inject("coinmarketcap", Fault.MALFORMED_JSON, times=-1)
    result = run_scrapers(env, "prices")
    assert result.returncode == 1
    assert result.stderr == ""
    [line] = result.stdout.splitlines()
    record = json.loads(line)
    assert record["level"] == "ERROR"
    assert record["outcome"] == "failed"
    assert record["source"] == "coinmarketcap"
    assert "not valid JSON" in record["message"]


def test_unreachable_database_is_one_line_and_exit_1(env):
    result = run_scrapers(
        {**env, "DATABASE_URL": "postgresql://u:dbsecret@127.0.0.1:1/none"}, "ranks"
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    [line] = (result.stdout + result.stderr).splitlines()
    assert "database error" in line
    assert "dbsecret" not in line
