"""Configuration errors: one line naming the setting, exit code 2, never a traceback."""

from __future__ import annotations

import pytest

from tests.support import run_python, run_scrapers
from topcoins.settings import (
    ApiSettings,
    CoinDeskSettings,
    CoinMarketCapSettings,
    ConfigError,
    HttpSettings,
    ScraperSettings,
    database_url,
)


@pytest.mark.parametrize(
    ("command", "overrides", "named"),
    [
        ("ranks", {"DATABASE_URL": ""}, "DATABASE_URL is not set"),
        ("ranks", {"DATABASE_URL": "mysql://x@y/z"}, "DATABASE_URL"),
        ("ranks", {"RANKING_SIZE": "abc"}, "RANKING_SIZE"),
        ("ranks", {"RANKING_SIZE": "5"}, "RANKING_SIZE"),
        ("ranks", {"RETENTION_DAYS": "-1"}, "RETENTION_DAYS"),
        ("ranks", {"HTTP_TIMEOUT_SECONDS": "soon"}, "HTTP_TIMEOUT_SECONDS"),
        ("ranks", {"RANKING_PROVIDER": "coingecko"}, "RANKING_PROVIDER must be one of"),
        ("ranks", {"COINDESK_API_KEY": ""}, "COINDESK_API_KEY is not set"),
        ("ranks", {"COINDESK_BASE_URL": "ftp://x"}, "COINDESK_BASE_URL"),
        (
            "ranks",
            {"RANKING_PROVIDER": "cryptocompare", "CRYPTOCOMPARE_API_KEY": ""},
            "CRYPTOCOMPARE_API_KEY is not set",
        ),
        (
            "ranks",
            {"RANKING_PROVIDER": "cryptocompare", "CRYPTOCOMPARE_BASE_URL": "ftp://x"},
            "CRYPTOCOMPARE_BASE_URL",
        ),
        (
            "ranks",
            {"RANKING_PROVIDER": "coinmarketcap", "COINMARKETCAP_API_KEY": ""},
            "COINMARKETCAP_API_KEY is not set",
        ),
        ("ranks", {"COINMARKETCAP_CREDIT_FLOOR": "many"}, "COINMARKETCAP_CREDIT_FLOOR"),
        ("prices", {"COINMARKETCAP_API_KEY": ""}, "COINMARKETCAP_API_KEY is not set"),
        ("prices", {"COINMARKETCAP_BASE_URL": "not a url"}, "COINMARKETCAP_BASE_URL"),
        ("prices", {"COINMARKETCAP_CREDIT_FLOOR": "-5"}, "COINMARKETCAP_CREDIT_FLOOR"),
        ("cryptocompare", {"CRYPTOCOMPARE_API_KEY": ""}, "CRYPTOCOMPARE_API_KEY is not set"),
        ("coindesk", {"COINDESK_API_KEY": ""}, "COINDESK_API_KEY is not set"),
    ],
)
def test_bad_setting_is_one_line_naming_it_and_exit_2(env, command, overrides, named):
    argv = [command, "top"] if command in ("coindesk", "cryptocompare") else [command]
    result = run_scrapers({**env, **overrides}, *argv)
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert named in line


def test_secret_values_are_not_echoed_in_config_errors(env):
    result = run_scrapers({**env, "DATABASE_URL": "mysql://u:hunter2@h/d"}, "ranks")
    assert result.returncode == 2
    assert "hunter2" not in result.stderr


MALFORMED = [
    ("ranks", {"DATABASE_URL": "postgresql://u:hunter2@h:abc/d"}, "DATABASE_URL"),
    ("ranks", {"DATABASE_URL": "postgresql://u:hunter2@[::1/d"}, "DATABASE_URL"),
    ("ranks", {"DATABASE_URL": "postgresql://u:hunter2@h:99999/d"}, "DATABASE_URL"),
    (
        "ranks",
        {"RANKING_PROVIDER": "cryptocompare", "CRYPTOCOMPARE_BASE_URL": "ftp://user:hunter2@host"},
        "CRYPTOCOMPARE_BASE_URL",
    ),
    ("ranks", {"COINDESK_BASE_URL": "http://user:hunter2@[::1"}, "COINDESK_BASE_URL"),
    ("prices", {"COINMARKETCAP_BASE_URL": "https://hunter2:hunter2@h:abc"}, "COINMARKETCAP_BASE"),
    ("ranks", {"PUSHGATEWAY_URL": "gopher://hunter2@h"}, "PUSHGATEWAY_URL"),
    ("ranks", {"SCRAPE_GRACE_SECONDS": "0"}, "SCRAPE_GRACE_SECONDS"),
]


@pytest.mark.parametrize(("command", "overrides", "named"), MALFORMED)
def test_a_malformed_url_is_one_line_without_its_secret_and_exit_2(env, command, overrides, named):
    result = run_scrapers({**env, **overrides}, command)
    assert (result.returncode, result.stdout) == (2, "")
    [line] = result.stderr.splitlines()
    assert line.startswith(f"scrapers: configuration error: {named}")
    assert "hunter2" not in result.stderr


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:hunter2@h:abc/d",
        "postgresql://u:hunter2@[::1/d",
        "postgresql://u:hunter2@h:0/d",
    ],
)
def test_the_api_refuses_a_malformed_database_url_in_one_line(env, url):
    result = run_python(
        {**env, "DATABASE_URL": url}, "-c", "from api import create_app; create_app()"
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("api: configuration error: DATABASE_URL")


def test_api_without_database_url_exits_2_with_one_line(env):
    result = run_python(
        {**env, "DATABASE_URL": ""}, "-c", "from api import create_app; create_app()"
    )
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "DATABASE_URL is not set" in line


def test_defaults():
    settings = ScraperSettings.from_env({"DATABASE_URL": "postgresql://u@h/d"})
    assert (settings.ranking_size, settings.retention_days) == (200, 7.0)
    assert settings.ranking_provider == "coindesk"
    coinmarketcap = CoinMarketCapSettings.from_env({"COINMARKETCAP_API_KEY": "k"})
    assert (coinmarketcap.base_url, coinmarketcap.credit_floor) == (
        "https://pro-api.coinmarketcap.com",
        500,
    )
    assert CoinDeskSettings.from_env({"COINDESK_API_KEY": "k"}).base_url == (
        "https://data-api.coindesk.com"
    )
    assert settings.http == HttpSettings(
        timeout_seconds=10.0, retries=3, backoff_seconds=1.0, deadline_seconds=60.0
    )
    assert settings.grace_seconds == 5.0
    api = ApiSettings.from_env({"DATABASE_URL": "postgresql://u@h/d"})
    assert (api.stale_after_seconds, api.max_limit) == (900.0, 5000)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"),
        ("postgres://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
    ],
)
def test_database_url_takes_the_psql_form_and_picks_psycopg(given, expected):
    assert database_url({"DATABASE_URL": given}) == expected


def test_settings_objects_do_not_show_secrets():
    settings = ScraperSettings.from_env({"DATABASE_URL": "postgresql://u:hunter2@h/d"})
    assert "hunter2" not in repr(settings)
    with pytest.raises(ConfigError, match="RANKING_SIZE"):
        ScraperSettings.from_env({"DATABASE_URL": "postgresql://u@h/d", "RANKING_SIZE": "1.5"})


def test_ranking_provider_is_read_case_insensitively():
    env = {"DATABASE_URL": "postgresql://u@h/d", "RANKING_PROVIDER": " CoinMarketCap "}
    assert ScraperSettings.from_env(env).ranking_provider == "coinmarketcap"


def test_provider_settings_do_not_show_keys():
    shown = repr(CoinDeskSettings.from_env({"COINDESK_API_KEY": "cd-secret-9"})) + repr(
        CoinMarketCapSettings.from_env({"COINMARKETCAP_API_KEY": "cmc-secret-9"})
    )
    assert "secret" not in shown
