"""API keys travel in headers only: never in a URL, a log line or an error message."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import requests

from fakeproviders import Fault
from tests.support import CMC_KEY, COINDESK_KEY, CRYPTOCOMPARE_KEY, Gunicorn, run_scrapers


def test_coinmarketcap_key_is_sent_as_a_header_and_never_in_the_url(scraped, providers):
    calls = [r for r in providers.requests if r.provider == "coinmarketcap"]
    assert calls
    for call in calls:
        assert call.headers["X-Cmc_Pro_Api_Key"] == CMC_KEY
        assert CMC_KEY not in call.raw_url
        assert "CMC_PRO_API_KEY" not in call.raw_url.upper()


def test_keys_and_database_password_never_appear_in_output(env, providers, db_url):
    password = "db-pass-8c1e"
    secret_env = {
        **env,
        "DATABASE_URL": db_url.replace("postgres@", f"postgres:{password}@", 1),
        "HTTP_BACKOFF_SECONDS": "0",
    }
    assert password in secret_env["DATABASE_URL"]
    commands = [
        ("coindesk", ["ranks"]),
        ("cryptocompare", ["ranks"]),
        ("coinmarketcap", ["ranks"]),
        ("coindesk", ["prices"]),
        ("coindesk", ["cmc", "listings"]),
        ("coindesk", ["cmc", "usage"]),
        ("coindesk", ["coindesk", "top"]),
        ("coindesk", ["cryptocompare", "top"]),
    ]
    outputs = []
    for fault in (None, Fault.ERROR_PAYLOAD):
        providers.clear_faults()
        if fault is not None:
            for provider in ("coindesk", "cryptocompare", "coinmarketcap"):
                providers.inject(provider, fault, times=-1)
        # Two at a time: whichever run wins the lock, every path's output is searched.
        with ThreadPoolExecutor(2) as pool:
            results = pool.map(
                lambda job: run_scrapers({**secret_env, "RANKING_PROVIDER": job[0]}, *job[1]),
                commands,
            )
            outputs += [result.stdout + result.stderr for result in results]
    for variable in ("COINDESK_API_KEY", "COINMARKETCAP_API_KEY", "CRYPTOCOMPARE_API_KEY"):
        result = run_scrapers(
            {**secret_env, "RANKING_PROVIDER": "cryptocompare", variable: "bad-key-5d7e"}, "ranks"
        )
        outputs.append(result.stdout + result.stderr)
    broken_db = {**secret_env, "DATABASE_URL": f"postgresql://u:{password}@127.0.0.1:1/x"}
    result = run_scrapers(broken_db, "ranks")
    outputs.append(result.stdout + result.stderr)
    text = "\n".join(outputs)
    assert "succeeded" in text
    assert "key rejected" in text
    for secret in (CMC_KEY, COINDESK_KEY, CRYPTOCOMPARE_KEY, "bad-key-5d7e", password):
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
