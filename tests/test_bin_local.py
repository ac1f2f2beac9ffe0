"""``bin/local``: the whole system on this machine, against the bundled fakes, per provider."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess

import pytest
import requests

from tests.support import ROOT, free_port, wait_for

PROVIDER_VARIABLES = ("_API_KEY", "_BASE_URL")


def served(port: int) -> list[list[str]] | None:
    try:
        response = requests.get(
            f"http://127.0.0.1:{port}/", params={"limit": "200", "format": "csv"}, timeout=2
        )
    except requests.ConnectionError:
        return None
    if response.status_code != 200:
        return None
    return list(csv.reader(io.StringIO(response.text)))


@pytest.mark.parametrize("provider", ["coindesk", "cryptocompare", "coinmarketcap"])
def test_bin_local_serves_200_ranked_and_priced_coins(fresh_database, tmp_path, provider):
    port = free_port()
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.endswith(PROVIDER_VARIABLES) and name != "RANKING_PROVIDER"
    }
    environment.update(
        DATABASE_URL=fresh_database(),
        PORT=str(port),
        RANKING_PROVIDER=provider,
        WEB_CONCURRENCY="1",
        GUNICORN_ACCESS_LOG="",
    )
    log = tmp_path / "local.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["bin/local"],
            cwd=ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            rows = wait_for(lambda: served(port), timeout=90)
            assert rows, log.read_text()
            meta = requests.get(f"http://127.0.0.1:{port}/", timeout=5).json()["meta"]
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
    assert "FAKE providers" in log.read_text()
    assert meta["ranking"]["source"] == provider
    assert len(rows) == 201
    priced = [row for row in rows[1:] if row[2]]
    # FlowChainCoin, ranked by both CryptoCompare APIs, is not on CoinMarketCap.
    assert len(priced) == (200 if provider == "coinmarketcap" else 199)
