"""API keys travel in headers only: never in a URL, a log line or an error message."""

from __future__ import annotations

import requests

from fakeproviders import Fault
from tests.support import CMC_KEY, Gunicorn, run_scrapers


def test_coinmarketcap_key_is_sent_as_a_header_and_never_in_the_url(scraped, providers):
    calls = [r for r in providers.requests if r.provider == "coinmarketcap"]
    assert calls
    for call in calls:
        assert call.headers["X-Cmc_Pro_Api_Key"] == CMC_KEY
        assert CMC_KEY not in call.raw_url
        assert "CMC_PRO_API_KEY" not in call.raw_url.upper()


def test_keys_and_database_password_never_appear_in_output(env, providers, db_url):
    password = "db-pass-8c1e"
    cc_key = "cc-key-4be2"
    secret_env = {
        **env,
        "CRYPTOCOMPARE_API_KEY": cc_key,
        "DATABASE_URL": db_url.replace("postgres@", f"postgres:{password}@", 1),
    }
    assert password in secret_env["DATABASE_URL"]
    outputs = []
    for fault in (None, Fault.ERROR_PAYLOAD, Fault.HTTP_500):
        providers.clear_faults()
        if fault is not None:
            providers.inject("coinmarketcap", fault, times=-1)
            providers.inject("cryptocompare", fault, times=-1)
        for command in (["ranks"], ["prices"], ["cmc", "listings"], ["cryptocompare", "top"]):
            result = run_scrapers({**secret_env, "HTTP_BACKOFF_SECONDS": "0"}, *command)
            outputs.append(result.stdout + result.stderr)
    broken_db = {**secret_env, "DATABASE_URL": f"postgresql://u:{password}@127.0.0.1:1/x"}
    result = run_scrapers(broken_db, "ranks")
    outputs.append(result.stdout + result.stderr)
    text = "\n".join(outputs)
    assert "succeeded" in text
    assert "failed" in text
    for secret in (CMC_KEY, cc_key, password):
        assert secret not in text


def test_api_output_never_shows_keys_or_the_database_password(env, db_url, scraped, tmp_path):
    password = "api-db-pass-31f0"
    outputs = []
    for name, url in (
        ("working", db_url.replace("postgres@", f"postgres:{password}@", 1)),
        ("broken", f"postgresql://u:{password}@127.0.0.1:1/none"),
    ):
        server = Gunicorn(
            {**env, "DATABASE_URL": url, "CRYPTOCOMPARE_API_KEY": "cc-key-77aa"},
            tmp_path / f"{name}.log",
        )
        try:
            server.wait_until_up()
            for path in ("/", "/?limit=abc", "/nope", "/readyz", "/metrics", "/?format=x"):
                response = requests.get(server.base + path, timeout=5)
                outputs.append(response.text)
        finally:
            server.stop()
        outputs.append(server.output())
    text = "\n".join(outputs)
    assert "Database unavailable" in text or "database unavailable" in text
    for secret in (password, CMC_KEY, "cc-key-77aa"):
        assert secret not in text
