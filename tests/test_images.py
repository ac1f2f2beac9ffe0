"""The container images: what the Dockerfile builds is what works, checked without Docker.

There is no Docker engine where the tests run.  The builder stage's RUN steps run for real, in a
copy of the build context (tests/dockerfile.py) and with a temporary directory in place of
/opt/venv: the requirements as wheels only, then the project, then ``pip check``.  Each target's
command then runs once, with that venv, the target's environment and a working directory holding
what the target copies there, so a missing package, file or entry point, or a wrong command,
fails here rather than in the cluster.  The runtime stage's RUN steps are only inspected, never
run: they would add users to this machine.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import Engine, create_engine, text

from api.health import API_VERSION
from tests.dockerfile import Dockerfile, Stage, context_entries, copy_context
from tests.support import ROOT, free_port, gunicorn_setting, wait_for
from topcoins import __version__
from topcoins.buildinfo import schema_head
from topcoins.settings import database_url

BUILD_ARGS = {
    "VERSION": __version__,
    "GIT_COMMIT": "5eed1e55c0ffee0123456789abcdef0123456789",
    "SOURCE_URL": "https://example.test/top-coins",
}
DOCKERFILE = Dockerfile.load(ROOT / "Dockerfile", BUILD_ARGS)
# Each target's ENTRYPOINT, CMD and EXPOSE; the manifests in k8s/ rely on them.
TARGETS = {
    "api": ([], ["gunicorn", "-c", "gunicorn.conf.py"], ["8080"]),
    "scraper": (["python", "-m", "scrapers"], ["--help"], []),
    "fakeproviders": (
        ["python", "-m", "fakeproviders"],
        ["--host", "0.0.0.0"],
        ["9101", "9102", "9103"],
    ),
}
VENV = "/opt/venv"
# What the base image itself puts in the environment, as far as our processes care.
BASE_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
BASE_IMAGE = re.compile(r"python:3\.11(\.\d+)?-slim(-bookworm)?(@sha256:[0-9a-f]{64})?")
OCI_LABELS = ("version", "revision", "source", "title", "description", "licenses")
BUILD_TOOLS = {"pip", "pip3", "ensurepip", "gcc", "g++", "cc", "make", "build-essential"}
HADOLINT = ROOT / ".venv" / "bin" / "hadolint"


@dataclass(frozen=True)
class Image:
    app: Path
    venv: Path
    env: dict[str, str]
    entrypoint: list[str]
    cmd: list[str]

    def argv(self, command: list[str] | None = None, args: list[str] | None = None) -> list[str]:
        """As Kubernetes builds it: ``command`` replaces ENTRYPOINT, ``args`` replaces CMD."""
        if command is None:
            argv = [*self.entrypoint, *(self.cmd if args is None else args)]
        else:
            argv = [*command, *(args or [])]
        executable = shutil.which(argv[0], path=self.env["PATH"])
        assert executable, f"{argv[0]!r} is not on the image's PATH"
        assert Path(executable).parent == self.venv / "bin", f"{executable} is not from the venv"
        return [executable, *argv[1:]]

    def run(self, argv: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, cwd=self.app, env={**self.env, **env}, capture_output=True, text=True, timeout=60
        )


def context_copies(stage: Stage) -> list[list[str]]:
    """Each COPY from the build context as [source…, destination]; COPY --from is left out."""
    return [c.split() for c in (i.arguments for i in stage.all("COPY")) if "--from" not in c]


def builder_of(stage: Stage) -> str:
    """The venv is all a target takes from another stage: its scripts name their interpreter by
    absolute path and would break anywhere else."""
    [source] = [c.split() for c in (i.arguments for i in stage.all("COPY")) if "--from" in c]
    assert source[1:] == [VENV, VENV], source
    return source[0].removeprefix("--from=")


@pytest.fixture(scope="session")
def build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the build context, the venv): the builder stage run, with this machine's pip settings
    (they name the local wheel sources) and this interpreter as the base image's ``python``."""
    [name] = {builder_of(DOCKERFILE.stage(target)) for target in TARGETS}
    stage = DOCKERFILE.stage(name)
    root = tmp_path_factory.mktemp("builder")
    workdir, venv, shims = copy_context(root / "build"), root / "venv", root / "shims"
    shims.mkdir()
    for python in ("python", "python3"):
        (shims / python).symlink_to(sys.executable)
    env = {k: v.replace(VENV, str(venv)) for k, v in stage.env(os.environ).items()}
    env["PATH"] = f"{shims}{os.pathsep}{env['PATH']}"
    for copy in context_copies(stage):  # all into WORKDIR, which the copy of the context is
        assert copy[-1] in {".", "./"}, copy
    for run in stage.all("RUN"):
        script = run.arguments.replace(VENV, str(venv))
        result = subprocess.run(
            ["/bin/sh", "-c", script],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"{script}\n{result.stdout}\n{result.stderr}"
    return workdir, venv


@pytest.fixture(scope="session")
def image(
    build: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Image]:
    context, venv = build

    def make(target: str) -> Image:
        stage = DOCKERFILE.stage(target)
        app = tmp_path_factory.mktemp(target)
        for *files, destination in context_copies(stage):
            assert destination == "./", f"{target}: copy single files into WORKDIR"
            for file in files:
                shutil.copy2(context / file, app / file)
        env = {k: v.replace(VENV, str(venv)) for k, v in stage.env(BASE_ENV).items()}
        return Image(app, venv, env, stage.entrypoint, stage.cmd)

    return make


@contextmanager
def writes_nothing(image: Image) -> Iterator[None]:
    """The root filesystem is read-only in the cluster; only /tmp and /dev/shm take writes."""

    def listing() -> dict[Path, tuple[int, int]]:
        tops = (image.app, image.venv)
        return {p: (p.lstat().st_size, p.lstat().st_mtime_ns) for t in tops for p in t.rglob("*")}

    before = listing()
    yield
    assert listing() == before, "wrote into the image's filesystem"


@contextmanager
def started(argv: list[str], **popen: Any) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(argv, text=True, **popen)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def status(url: str) -> int:
    try:
        return requests.get(url, timeout=2).status_code
    except requests.ConnectionError:
        return 0


@pytest.mark.skipif(not HADOLINT.exists(), reason="hadolint is missing: run bin/setup")
def test_hadolint_finds_nothing_and_every_ignore_says_why() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    result = subprocess.run(
        [str(HADOLINT), "--format", "json", "Dockerfile"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout or "[]") == []
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    pragma = re.compile(r"\s*#\s*hadolint\s+(global\s+)?ignore=")
    for number, line in enumerate(lines):
        if pragma.match(line):
            neighbours = lines[max(number - 1, 0) : number] + lines[number + 1 : number + 2]
            assert any(re.match(r"\s*#\s*\S", n) and not pragma.match(n) for n in neighbours), (
                f"Dockerfile:{number + 1}: say next to the ignore why the rule does not apply"
            )


def test_every_stage_starts_from_one_python_311_slim_image() -> None:
    bases = DOCKERFILE.external_bases()
    assert all(BASE_IMAGE.fullmatch(base) for base in bases), bases
    # The venv links to the builder's interpreter: the runtime must have the same one.
    assert len(set(bases)) == 1, bases


@pytest.mark.parametrize("target", TARGETS)
def test_target_runs_as_declared_non_root_labelled_and_without_build_tools(target: str) -> None:
    stage = DOCKERFILE.stage(target)
    exposed = [port for i in stage.all("EXPOSE") for port in i.arguments.split()]
    assert (stage.entrypoint, stage.cmd, exposed) == TARGETS[target]
    assert getattr(stage.last("WORKDIR"), "arguments", None) == "/app"
    builder_of(stage)
    user = getattr(stage.last("USER"), "arguments", "")
    match = re.fullmatch(r"([1-9]\d*):([1-9]\d*)", user)
    assert match, f"USER {user}: a numeric non-root uid:gid, so runAsNonRoot can verify it"
    runs = [i.arguments for i in stage.all("RUN")]
    assert re.search(rf"groupadd .*(--gid|-g)[ =]{match[2]}\b", " ".join(runs))
    assert re.search(rf"useradd .*(--uid|-u)[ =]{match[1]}\b", " ".join(runs))
    assert not {Path(word).name for run in runs for word in shlex.split(run)} & BUILD_TOOLS
    labels = {k.removeprefix("org.opencontainers.image."): v for k, v in stage.labels.items()}
    assert all(labels.get(key) for key in OCI_LABELS), labels
    assert labels["title"] == f"top-coins-{target}"
    assert (labels["version"], labels["revision"]) == (__version__, BUILD_ARGS["GIT_COMMIT"])
    env = stage.env(BASE_ENV)
    assert env["GIT_COMMIT"] == BUILD_ARGS["GIT_COMMIT"]
    assert (env["PYTHONDONTWRITEBYTECODE"], env["PYTHONUNBUFFERED"]) == ("1", "1")
    assert env["PATH"].startswith(f"{VENV}/bin:")


def test_build_context_holds_only_what_the_images_are_built_from() -> None:
    """The wheel's sources (pyproject.toml and the packages it names), the requirements, and
    the files the targets copy; nothing else (no tests, .git, .venv or k8s)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    needed = {"pyproject.toml"} | {name.split(".")[0] for name in packages}
    for stage in map(DOCKERFILE.stage, DOCKERFILE.names):
        needed |= {s.rstrip("/") for *sources, _ in context_copies(stage) for s in sources} - {"."}
    entries, _ = context_entries()
    assert sorted(entries) == sorted(needed)


def test_api_image_serves_and_stops_within_the_graceful_timeout(
    image: Callable[[str], Image], db_url: str, scraped: None
) -> None:
    """Ready once it has loaded the stored list, which takes a refresh interval or so."""
    api = image("api")
    graceful = gunicorn_setting("graceful_timeout")
    port = free_port()
    env = {**api.env, "PORT": str(port), "DATABASE_URL": db_url, "WEB_CONCURRENCY": "2"}
    base = f"http://127.0.0.1:{port}"
    log = api.app.parent / "api.log"
    with writes_nothing(api), log.open("w") as output:
        argv, cwd = api.argv(), api.app
        with started(argv, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT) as process:
            wait_for(lambda: status(base + "/healthz") == 200 or process.poll(), timeout=20)
            assert status(base + "/healthz") == 200, log.read_text()
            assert wait_for(lambda: status(base + "/readyz") == 200, timeout=10), log.read_text()
            assert requests.get(base + "/version", timeout=2).json() == {
                "version": __version__,
                "api_version": API_VERSION,
                "commit": BUILD_ARGS["GIT_COMMIT"],
            }
            stopping = time.monotonic()
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=graceful) == 0, log.read_text()
            assert time.monotonic() - stopping < graceful


def test_scraper_image_scrapes_ranks_then_prices(
    image: Callable[[str], Image], env: dict[str, str], db: Engine
) -> None:
    """With the environment the CronJobs give it (every key, each base URL); CryptoCompare, the
    ranking provider whose client the CLI imports only when it is chosen."""
    scraper = image("scraper")
    job_env = {k: v for k, v in env.items() if k != "PATH"} | {"RANKING_PROVIDER": "cryptocompare"}
    with writes_nothing(scraper):
        for job in ("ranks", "prices"):
            result = scraper.run(scraper.argv(args=[job]), job_env)
            assert result.returncode == 0, result.stdout + result.stderr
    with db.connect() as connection:
        found = connection.execute(text("SELECT kind, source, status FROM scrape_runs ORDER BY id"))
        assert [tuple(row) for row in found] == [
            ("ranking", "cryptocompare", "succeeded"),
            ("prices", "coinmarketcap", "succeeded"),
        ]
        assert connection.scalar(text("SELECT count(*) FROM price_quotes")) > 0


def test_scraper_image_migrates_an_empty_database(
    image: Callable[[str], Image], fresh_database: Callable[[], str]
) -> None:
    """The migration Job's command, in the image's /app."""
    scraper = image("scraper")
    url = fresh_database()
    with writes_nothing(scraper):
        argv = scraper.argv(command=["alembic", "upgrade", "head"])
        result = scraper.run(argv, {"DATABASE_URL": url})
    assert result.returncode == 0, result.stdout + result.stderr
    engine = create_engine(database_url({"DATABASE_URL": url}))
    try:
        with engine.connect() as connection:
            version = connection.scalar(text("SELECT version_num FROM alembic_version"))
        assert version == schema_head()
    finally:
        engine.dispose()


def test_fakeproviders_image_serves_the_fakes(image: Callable[[str], Image]) -> None:
    """The local overlay's container: each fake on a port of its own (a free one, on loopback
    here, in place of CMD), each refusing a request without its key (``fake-key`` by default)."""
    fakes = image("fakeproviders")
    ports = ["--coindesk-port", "0", "--cryptocompare-port", "0", "--coinmarketcap-port", "0"]
    key = {"Authorization": "Apikey fake-key"}
    calls = {
        "COINDESK_BASE_URL": ("/asset/v1/top/list?page=1&page_size=10", key),
        "CRYPTOCOMPARE_BASE_URL": ("/data/top/totalvolfull?tsym=USD&limit=10", key),
        "COINMARKETCAP_BASE_URL": ("/v1/key/info", {"X-CMC_PRO_API_KEY": "fake-key"}),
    }
    argv = fakes.argv(args=ports)
    with started(argv, cwd=fakes.app, env=fakes.env, stdout=subprocess.PIPE) as process:
        assert process.stdout is not None
        urls = dict(process.stdout.readline().strip().split("=", 1) for _ in calls)
        assert list(urls) == list(calls)
        for name, (path, headers) in calls.items():
            assert status(urls[name] + path) == 401, name
            assert requests.get(urls[name] + path, headers=headers, timeout=2).ok, name
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
