"""The installable project: the wheel holds what its console scripts need, and they work.

The wheel is built from the Docker build context (tests/dockerfile.py), as the images build it,
and installed without its dependencies into an empty venv that sees this venv's packages through
a ``.pth`` file, so the project's own modules can come from the wheel only.  The scripts run from
a scratch directory, where nothing of the repository is importable.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from collections.abc import Callable
from email.parser import Parser
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text

from tests.dockerfile import copy_context
from tests.support import ROOT
from topcoins import __version__
from topcoins.buildinfo import schema_head
from topcoins.settings import database_url

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGES = ("api", "scrapers", "topcoins", "fakeproviders", "migrations")
SCRIPTS = ("top-coins-scraper", "top-coins-migrate", "top-coins-fakeproviders")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    context = copy_context(tmp / "context")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp / "dist"), str(context)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [found] = (tmp / "dist").glob("*.whl")
    return found


@pytest.fixture(scope="module")
def scripts(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The venv's bin directory, with the wheel installed."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv)}))
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    python = venv / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps"]
    # --ignore-installed: an editable install of the project in this venv must not count.
    result = subprocess.run(
        [*install, "--ignore-installed", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    where = subprocess.run(
        [str(python), "-c", f"import {', '.join(PACKAGES)}; print({PACKAGES[0]}.__file__)"],
        cwd=venv,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout
    return venv / "bin"


def test_wheel_holds_the_packages_with_their_data_and_nothing_else(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    files = {
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for path in (ROOT / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.name != "README.md"
    }
    dist_info = f"top_coins-{__version__}.dist-info"
    assert {n for n in names if not n.startswith(dist_info)} == files
    entry_points = zipfile.ZipFile(wheel).read(f"{dist_info}/entry_points.txt").decode()
    assert re.findall(r"^(\S+) = ", entry_points, re.MULTILINE) == sorted(SCRIPTS)


def test_wheel_requires_what_requirements_in_names(wheel: Path) -> None:
    metadata = zipfile.ZipFile(wheel).read(f"top_coins-{__version__}.dist-info/METADATA")
    fields = Parser().parsestr(metadata.decode())
    assert (fields["Name"], fields["Version"]) == ("top-coins", __version__)
    assert fields["Requires-Python"] == ">=3.11"
    wanted = [
        line.split("#")[0].strip()
        for line in (ROOT / "requirements.in").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    assert sorted(fields.get_all("Requires-Dist") or []) == sorted(wanted)
    assert sorted(PYPROJECT["project"]["dependencies"]) == sorted(wanted)


def test_scraper_script_shows_its_commands(scripts: Path) -> None:
    result = subprocess.run(
        [scripts / "top-coins-scraper", "--help"],
        cwd=scripts,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    for command in ("ranks", "prices", "cmc", "coindesk", "cryptocompare"):
        assert command in result.stdout


def test_migrate_script_brings_an_empty_database_to_the_head(
    scripts: Path, fresh_database: Callable[[], str]
) -> None:
    url = fresh_database()
    result = subprocess.run(
        [scripts / "top-coins-migrate"],
        cwd=scripts,
        env={"DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Running upgrade" in result.stderr
    engine = create_engine(database_url({"DATABASE_URL": url}))
    try:
        with engine.connect() as connection:
            version = connection.scalar(text("SELECT version_num FROM alembic_version"))
        assert version == schema_head()
    finally:
        engine.dispose()


def test_fakeproviders_script_serves_until_sigterm(scripts: Path) -> None:
    ports = ["--coindesk-port", "0", "--cryptocompare-port", "0", "--coinmarketcap-port", "0"]
    process = subprocess.Popen(
        [scripts / "top-coins-fakeproviders", *ports, "--coinmarketcap-key", "k"],
        cwd=scripts,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        urls = dict(process.stdout.readline().strip().split("=", 1) for _ in range(3))
        url = urls["COINMARKETCAP_BASE_URL"] + "/v1/key/info"
        # The bundled market comes from the packaged coins.csv.
        response = requests.get(url, headers={"X-CMC_PRO_API_KEY": "k"}, timeout=2)
        assert response.status_code == 200
        assert requests.get(url, timeout=2).status_code == 401
        coins = urls["COINDESK_BASE_URL"] + "/asset/v1/top/list?page=1&page_size=10"
        assert requests.get(coins, headers={"Authorization": "Apikey fake-key"}, timeout=2).ok
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
