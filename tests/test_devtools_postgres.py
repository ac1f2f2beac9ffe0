"""bin/local and bin/test find a database on any machine, down to an embedded pgserver cluster."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from devtools import postgres
from tests.support import ROOT, run_python

POSTGRES_TOOLS = ("postgres", "initdb", "pg_ctl", "pg_config", "psql")
LOCAL = postgres.LOCAL_URL


def unused_local_url() -> str:
    """A "local server" URL on a port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


@pytest.fixture
def scratch_repo() -> Iterator[Path]:
    """A repository root of its own, so the embedded cluster is this test's alone.

    Not under pytest's tmp_path: as root the cluster runs as user postgres, who must reach it.
    """
    root = Path(tempfile.mkdtemp(prefix="topcoins-embedded-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        postgres.stop_embedded_server(root)
        shutil.rmtree(root, ignore_errors=True)


def test_with_nothing_installed_an_embedded_server_is_started_and_reused(scratch_repo):
    """No DATABASE_URL, no local server, no PostgreSQL on PATH: pgserver's binaries it is."""
    path = [
        d
        for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and not any(os.path.exists(os.path.join(d, tool)) for tool in POSTGRES_TOOLS)
    ]
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("PG")}
    env |= {"PATH": os.pathsep.join(path), postgres.LOCAL_URL_ENV: unused_local_url()}
    script = textwrap.dedent(
        """
        import json, shutil, sys
        from pathlib import Path
        import psycopg
        from devtools import postgres

        assert not any(map(shutil.which, TOOLS)), "PostgreSQL binaries still on PATH"
        root = Path(sys.argv[1])
        admin = postgres.find_server(root)
        url = postgres.ensure_database(admin, "topcoins_embedded")
        with psycopg.connect(url, autocommit=True) as connection:
            one = connection.execute("SELECT 1").fetchone()
            connection.execute("CREATE TABLE coins (symbol text PRIMARY KEY)")
            connection.execute("INSERT INTO coins VALUES ('BTC')")
            coins = connection.execute("SELECT symbol FROM coins").fetchall()
            data = connection.execute("SHOW data_directory").fetchone()
        postgres.drop_database(admin, "topcoins_embedded")
        with psycopg.connect(admin) as connection:
            left = connection.execute(
                "SELECT count(*) FROM pg_database WHERE datname = 'topcoins_embedded'"
            ).fetchone()
        again = postgres.find_server(root)
        print(json.dumps({"admin": admin, "again": again, "one": one, "coins": coins,
                          "data": data[0], "left": left[0]}))
        """
    ).replace("TOOLS", repr(POSTGRES_TOOLS))
    result = run_python(env, "-c", script, str(scratch_repo))
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["admin"].startswith("postgresql://postgres@127.0.0.1:")
    assert found["admin"] != LOCAL
    assert found["again"] == found["admin"]
    assert found["one"] == [1]
    assert found["coins"] == [["BTC"]]
    assert found["left"] == 0
    assert found["data"] == str(postgres.embedded_base(scratch_repo) / "data")
    assert "creating the embedded PostgreSQL cluster" in result.stderr
    assert result.stderr.count("starting the embedded PostgreSQL") == 1
    # It outlives the process that started it, and later runs reuse it.
    assert postgres.embedded_server(scratch_repo) == found["admin"]
    with psycopg.connect(found["admin"], connect_timeout=3) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)


def test_without_pgserver_the_message_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setattr(postgres.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(postgres.PostgresUnavailable, match="pgserver is missing: set DATABASE_URL"):
        postgres.embedded_server(tmp_path)
    assert not postgres.embedded_base(tmp_path).exists()


def test_a_reachable_local_server_wins_over_the_embedded_one(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv(postgres.LOCAL_URL_ENV, raising=False)
    if postgres._connect_error(LOCAL) is not None:
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
    assert postgres.find_server(Path("/nonexistent"), allow_embedded=False) == LOCAL


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
    monkeypatch.setenv(postgres.LOCAL_URL_ENV, unused_local_url())
    assert postgres.find_server(Path("/nonexistent"), allow_embedded=False) == admin_url


def test_urls_are_handled_by_sqlalchemy():
    url = "postgres+psycopg://u:p%40ss@db.example:5433/app?sslmode=require&password=x"
    assert postgres.normalize_url(url).startswith("postgresql://u:p%40ss@db.example:5433/app?")
    masked = postgres.mask_url(url)
    assert "p%40ss" not in masked
    assert "password=x" not in masked
    assert "db.example:5433" in masked
    assert postgres.url_for_database(url + "&dbname=app", "other").split("?")[0].endswith("/other")
    assert "dbname" not in postgres.url_for_database(url + "&dbname=app", "other")
    assert postgres.mask_url("postgresql://u:secret@host:port/x") == "<malformed URL>"
    with pytest.raises(ValueError, match="postgresql://"):
        postgres.normalize_url("mysql://u@h/db")


def test_database_names_are_validated(admin_url):
    with pytest.raises(ValueError, match="name"):
        postgres.ensure_database(admin_url, "bad; DROP TABLE x")
    with pytest.raises(ValueError, match="maintenance"):
        postgres.drop_database(admin_url, postgres._parse(admin_url).database or "postgres")
