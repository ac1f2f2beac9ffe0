"""bin/local and bin/test find a database on any machine, down to a private throwaway cluster."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from devtools import postgres
from tests.support import ROOT


@pytest.fixture
def scratch_repo(tmp_path: Path):
    """A repository root of its own, so the private cluster is this test's alone."""
    yield tmp_path
    postgres.stop_private_cluster(tmp_path)
    for base in (postgres._primary_base(tmp_path), postgres._fallback_base(tmp_path)):
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(postgres._find_bindir(Path("/nonexistent")) is None, reason="no initdb here")
def test_without_any_server_a_private_cluster_is_started_and_reused(scratch_repo, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv(postgres.SKIP_LOCAL_ENV, "1")
    admin = postgres.find_server(scratch_repo)
    assert ":5432/" not in admin
    url = postgres.ensure_database(admin, "topcoins_private")
    with psycopg.connect(url) as connection:
        assert connection.execute("SELECT current_database()").fetchone() == ("topcoins_private",)
    assert postgres.find_server(scratch_repo) == admin
    postgres.drop_database(admin, "topcoins_private")


def test_unreachable_database_url_falls_back_with_a_masked_note(monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:topsecret@127.0.0.1:1/x")
    found = postgres.find_server(ROOT)
    note = capsys.readouterr().err
    assert "unreachable" in note
    assert "topsecret" not in note
    with psycopg.connect(found, connect_timeout=3) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)


def test_reachable_database_url_wins(monkeypatch, admin_url):
    monkeypatch.setenv(
        "DATABASE_URL", admin_url.replace("postgresql://", "postgresql+psycopg://", 1)
    )
    assert postgres.find_server(Path("/nonexistent")) == admin_url


def test_database_names_are_validated(admin_url):
    with pytest.raises(ValueError, match="name"):
        postgres.ensure_database(admin_url, "bad; DROP TABLE x")
