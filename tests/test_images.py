"""The container images: what each Dockerfile runs is what works, checked without Docker.

There is no Docker engine where the tests run, so each image is assembled from its Dockerfile
with tests/dockerfile.py.  The builder's pip install runs for real, into a temporary venv in
place of /opt/venv; the final stage's COPY instructions fill a temporary /app from the build
context that .dockerignore leaves; then the image's command runs there, with the image's
environment and the venv first on PATH.  A file missing from a COPY or from the context, a
missing package or a wrong command fails here rather than in the cluster.  The final stage's
RUN steps are only inspected, never run: they would add users to this machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from sqlalchemy import Engine, create_engine, text

from api.health import API_VERSION
from tests.dockerfile import Copy, Dockerfile, DockerIgnore, Stage
from tests.support import (
    CMC_KEY,
    COINDESK_KEY,
    CRYPTOCOMPARE_KEY,
    ROOT,
    free_port,
    gunicorn_setting,
    wait_for,
)
from topcoins import __version__
from topcoins.buildinfo import schema_head
from topcoins.settings import database_url

DOCKERFILES = {"api": ROOT / "Dockerfile.api", "scraper": ROOT / "Dockerfile.scraper"}
BUILD_ARGS = {
    "VERSION": __version__,
    "GIT_COMMIT": "5eed1e55c0ffee0123456789abcdef0123456789",
    "SOURCE_URL": "https://example.test/top-coins",
}
VENV = "/opt/venv"
# What the base image itself puts in the environment, as far as our processes care.
BASE_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
BASE_IMAGE = re.compile(r"python:3\.11(\.\d+)?-slim(-bookworm)?(@sha256:[0-9a-f]{64})?")
OCI_LABELS = ("version", "revision", "source", "title", "description", "licenses")
BUILD_TOOLS = {"pip", "pip3", "ensurepip", "gcc", "g++", "cc", "make", "build-essential"}
# Final-stage instructions that change no file; its RUN steps are inspected, not run.
METADATA = {"RUN", "ENV", "ARG", "LABEL", "USER", "EXPOSE", "CMD", "ENTRYPOINT"}
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
            argv,
            cwd=self.app,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


class Rootfs:
    """An image's filesystem under a temporary directory; ``mounts`` place what cannot move."""

    def __init__(self, root: Path, mounts: Mapping[str, Path] | None = None) -> None:
        self.root = root
        self.mounts = dict(mounts or {})

    def host(self, path: str) -> Path:
        for inside, outside in self.mounts.items():
            if path == inside or path.startswith(inside + "/"):
                return outside / posixpath.relpath(path, inside)
        return self.root / path.lstrip("/")


def copy_plan(copy: Copy, workdir: str, context: list[str]) -> list[tuple[str, str]]:
    """(file in the build context, its absolute path in the image), as COPY lays them out."""
    destination = posixpath.join(workdir, copy.destination)
    into_directory = copy.destination.endswith("/") or len(copy.sources) > 1
    plan: list[tuple[str, str]] = []
    for source in copy.sources:
        assert not set(source) & set("*?["), f"line {copy.line}: COPY wildcards are not modelled"
        name = posixpath.normpath(source)
        if name in context:
            target = posixpath.basename(name) if into_directory else ""
            plan.append((name, posixpath.normpath(posixpath.join(destination, target))))
            continue
        below = [f for f in context if name == "." or f.startswith(name + "/")]
        assert below, f"line {copy.line}: COPY {source}: not in the build context (.dockerignore?)"
        for file in below:
            inside = posixpath.relpath(file, name)
            plan.append((file, posixpath.normpath(posixpath.join(destination, inside))))
    return plan


def copy_into(rootfs: Rootfs, plan: list[tuple[str, str]]) -> None:
    for file, inside in plan:
        target = rootfs.host(inside)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / file, target)


def build_context() -> list[str]:
    return DockerIgnore.load(ROOT / ".dockerignore").context(ROOT)


def venv_source(dockerfile: Dockerfile) -> Stage:
    """The builder stage; the venv is the only thing the final stage may take from it, because
    its scripts name their interpreter by absolute path and would break anywhere else."""
    [copy] = [c for c in dockerfile.final.copies if c.from_stage]
    assert (copy.sources, copy.destination) == ((VENV,), VENV), f"line {copy.line}"
    return dockerfile.stage(copy.from_stage or "")


def prefix(stage: Stage, end: int) -> Stage:
    return Stage(stage.base, stage.name, stage.line, stage.instructions[:end])


def run_builder(stage: Stage, context: list[str], rootfs: Rootfs, shims: Path) -> None:
    """Carries out the builder stage with this machine's pip settings (they name the local
    wheel sources) and this interpreter standing in for the base image's ``python``."""
    workdir = "/"
    for index, instruction in enumerate(stage.instructions):
        if instruction.keyword == "WORKDIR":
            workdir = posixpath.join(workdir, instruction.arguments)
            rootfs.host(workdir).mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "COPY":
            copy = Copy.parse(instruction)
            assert copy.from_stage is None, f"line {copy.line}: the builder copies from the context"
            copy_into(rootfs, copy_plan(copy, workdir, context))
        elif instruction.keyword == "RUN":
            staged = prefix(stage, index).evaluate(os.environ, BUILD_ARGS)
            env = {**staged.args, **staged.env}
            env = {k: v.replace(VENV, str(rootfs.host(VENV))) for k, v in env.items()}
            env["PATH"] = f"{shims}{os.pathsep}{env['PATH']}"
            script = instruction.arguments.replace(VENV, str(rootfs.host(VENV)))
            result = subprocess.run(
                ["/bin/sh", "-c", script],
                cwd=rootfs.host(workdir),
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert result.returncode == 0, f"line {instruction.line}: {script}\n{result.stderr}"
        elif instruction.keyword not in {"ENV", "ARG", "LABEL"}:
            pytest.fail(f"line {instruction.line}: the test cannot run {instruction.keyword}")


def assemble(dockerfile: Dockerfile, context: list[str], rootfs: Rootfs) -> Image:
    stage = dockerfile.final
    workdir = "/"
    for instruction in stage.instructions:
        if instruction.keyword == "WORKDIR":
            workdir = posixpath.join(workdir, instruction.arguments)
            rootfs.host(workdir).mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "COPY":
            copy = Copy.parse(instruction)
            if not copy.from_stage:
                copy_into(rootfs, copy_plan(copy, workdir, context))
        elif instruction.keyword not in METADATA:
            pytest.fail(f"line {instruction.line}: the test cannot run {instruction.keyword}")
    venv = rootfs.host(VENV)
    evaluated = stage.evaluate(BASE_ENV, BUILD_ARGS, dockerfile.global_args)
    env = {k: v.replace(VENV, str(venv)) for k, v in evaluated.env.items()}
    return Image(rootfs.host(workdir), venv, env, stage.entrypoint, stage.cmd)


@pytest.fixture(scope="session")
def build_image(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Image]:
    """Both images, sharing one venv when their builder stages and inputs are the same."""
    context = build_context()
    shims = tmp_path_factory.mktemp("shims")
    for name in ("python", "python3"):
        (shims / name).symlink_to(sys.executable)
    venvs: dict[str, Path] = {}
    images: dict[str, Image] = {}

    def build(name: str) -> Image:
        if name in images:
            return images[name]
        dockerfile = Dockerfile.load(DOCKERFILES[name])
        builder = venv_source(dockerfile)
        recipe = json.dumps([(i.keyword, i.arguments) for i in builder.instructions])
        digest = hashlib.sha256(recipe.encode())
        for copy in builder.copies:
            for file, _ in copy_plan(copy, "/", context):
                digest.update((ROOT / file).read_bytes())
        key = digest.hexdigest()
        if key not in venvs:
            builder_root = Rootfs(tmp_path_factory.mktemp(f"{name}-builder"))
            run_builder(builder, context, builder_root, shims)
            venvs[key] = builder_root.host(VENV)
        rootfs = Rootfs(tmp_path_factory.mktemp(name), {VENV: venvs[key]})
        images[name] = assemble(dockerfile, context, rootfs)
        return images[name]

    return build


@pytest.fixture(scope="session")
def api_image(build_image: Callable[[str], Image]) -> Image:
    return build_image("api")


@pytest.fixture(scope="session")
def scraper_image(build_image: Callable[[str], Image]) -> Image:
    return build_image("scraper")


def listing(image: Image) -> dict[str, tuple[int, int]]:
    return {
        str(path): (path.lstat().st_size, path.lstat().st_mtime_ns)
        for top in (image.app, image.venv)
        for path in top.rglob("*")
    }


@contextmanager
def writes_nothing(image: Image) -> Iterator[None]:
    """The root filesystem is read-only in the cluster; only /tmp and /dev/shm take writes."""
    before = listing(image)
    yield
    after = listing(image)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert changed == [], "wrote into the image's filesystem"


def status(url: str) -> int:
    try:
        return requests.get(url, timeout=2).status_code
    except requests.ConnectionError:
        return 0


@pytest.mark.skipif(not HADOLINT.exists(), reason="hadolint is missing: run bin/setup")
def test_hadolint_finds_nothing() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    result = subprocess.run(
        [str(HADOLINT), "--format", "json", *map(str, DOCKERFILES.values())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout or "[]") == []


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_hadolint_ignore_says_why(name: str) -> None:
    lines = DOCKERFILES[name].read_text().splitlines()
    pragma = re.compile(r"\s*#\s*hadolint\s+(global\s+)?ignore=")
    reason = re.compile(r"\s*#\s*\S")
    for number, line in enumerate(lines):
        if pragma.match(line):
            neighbours = lines[max(number - 1, 0) : number] + lines[number + 1 : number + 2]
            assert any(reason.match(n) and not pragma.match(n) for n in neighbours), (
                f"{name}:{number + 1}: say next to the ignore why the rule does not apply"
            )


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_stage_starts_from_one_python_311_slim_image(name: str) -> None:
    bases = Dockerfile.load(DOCKERFILES[name]).external_bases()
    assert all(BASE_IMAGE.fullmatch(base) for base in bases), bases
    # The venv links to the builder's interpreter: the runtime must have the same one.
    assert len(set(bases)) == 1, bases


@pytest.mark.parametrize("name", DOCKERFILES)
def test_final_stage_runs_as_a_fixed_non_root_user(name: str) -> None:
    final = Dockerfile.load(DOCKERFILES[name]).final
    match = re.fullmatch(r"(\d+):(\d+)", final.user or "")
    assert match, f"USER {final.user}: numeric uid:gid, so runAsNonRoot can verify it"
    uid, gid = match.groups()
    assert int(uid) > 0
    assert int(gid) > 0
    script = " ".join(final.runs)
    assert re.search(rf"groupadd .*(--gid|-g)[ =]{gid}\b", script)
    assert re.search(rf"useradd .*(--uid|-u)[ =]{uid}\b", script)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_final_stage_installs_no_build_tools(name: str) -> None:
    final = Dockerfile.load(DOCKERFILES[name]).final
    words = {Path(word).name for run in final.runs for word in shlex.split(run)}
    assert not words & BUILD_TOOLS


@pytest.mark.parametrize("name", DOCKERFILES)
def test_final_stage_is_labelled_and_knows_its_commit(name: str) -> None:
    dockerfile = Dockerfile.load(DOCKERFILES[name])
    evaluated = dockerfile.final.evaluate(BASE_ENV, BUILD_ARGS, dockerfile.global_args)
    labels = {
        key.removeprefix("org.opencontainers.image."): value
        for key, value in evaluated.labels.items()
    }
    assert all(labels.get(key) for key in OCI_LABELS), labels
    assert labels["version"] == BUILD_ARGS["VERSION"]
    assert labels["revision"] == BUILD_ARGS["GIT_COMMIT"]
    assert evaluated.env["GIT_COMMIT"] == BUILD_ARGS["GIT_COMMIT"]
    assert evaluated.env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert evaluated.env["PYTHONUNBUFFERED"] == "1"
    assert evaluated.env["PATH"].startswith(f"{VENV}/bin:")


def test_image_commands() -> None:
    api = Dockerfile.load(DOCKERFILES["api"]).final
    assert (api.entrypoint, api.cmd, api.exposed) == (
        [],
        ["gunicorn", "-c", "gunicorn.conf.py"],
        ["8080"],
    )
    scraper = Dockerfile.load(DOCKERFILES["scraper"]).final
    assert (scraper.entrypoint, scraper.cmd) == (["python", "-m", "scrapers"], ["--help"])


def test_build_context_holds_only_what_the_images_copy() -> None:
    context = build_context()
    copied = set()
    for path in DOCKERFILES.values():
        for stage in Dockerfile.load(path).stages:
            workdir = "/"
            for instruction in stage.instructions:
                if instruction.keyword == "WORKDIR":
                    workdir = posixpath.join(workdir, instruction.arguments)
                elif instruction.keyword == "COPY" and not Copy.parse(instruction).from_stage:
                    copied |= {f for f, _ in copy_plan(Copy.parse(instruction), workdir, context)}
    assert sorted(set(context) - copied) == []
    assert not [f for f in context if f.split("/")[0] in {"tests", ".git", ".venv", "k8s"}]


def test_api_image_serves_and_stops_within_the_graceful_timeout(
    api_image: Image, db_url: str, scraped: None
) -> None:
    """Ready once it has loaded the stored list, which takes a refresh interval or so."""
    graceful = gunicorn_setting("graceful_timeout")
    port = free_port()
    env = {**api_image.env, "PORT": str(port), "DATABASE_URL": db_url, "WEB_CONCURRENCY": "2"}
    base = f"http://127.0.0.1:{port}"
    log = api_image.app.parent / "api.log"
    with writes_nothing(api_image), log.open("w") as output:
        process = subprocess.Popen(
            api_image.argv(),
            cwd=api_image.app,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: status(base + "/healthz") == 200 or process.poll(), timeout=20)
            assert status(base + "/healthz") == 200, log.read_text()
            assert wait_for(lambda: status(base + "/readyz") == 200, timeout=10), log.read_text()
            version = requests.get(base + "/version", timeout=2).json()
            assert version == {
                "version": __version__,
                "api_version": API_VERSION,
                "commit": BUILD_ARGS["GIT_COMMIT"],
            }
            stopping = time.monotonic()
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=graceful) == 0, log.read_text()
            assert time.monotonic() - stopping < graceful
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.mark.parametrize("provider", ["coindesk", "cryptocompare", "coinmarketcap"])
def test_scraper_image_scrapes_ranks_then_prices(
    scraper_image: Image, env: dict[str, str], db: Engine, provider: str
) -> None:
    """Each ranking provider the image can be told to use, with the environment the CronJobs
    give it (every key, each base URL)."""
    job_env = {k: v for k, v in env.items() if k != "PATH"}
    job_env["RANKING_PROVIDER"] = provider
    with writes_nothing(scraper_image):
        for job, table in (("ranks", "ranking_entries"), ("prices", "price_quotes")):
            result = scraper_image.run(scraper_image.argv(args=[job]), job_env)
            assert result.returncode == 0, result.stdout + result.stderr
            with db.connect() as connection:
                assert connection.scalar(text(f"SELECT count(*) FROM {table}")) > 0, job
    with db.connect() as connection:
        found = connection.execute(text("SELECT kind, source, status FROM scrape_runs ORDER BY id"))
        assert [tuple(row) for row in found] == [
            ("ranking", provider, "succeeded"),
            ("prices", "coinmarketcap", "succeeded"),
        ]


def test_scraper_image_default_command_is_help(scraper_image: Image) -> None:
    result = scraper_image.run(scraper_image.argv(), {})
    assert result.returncode == 0, result.stderr
    assert "ranks" in result.stdout
    assert "prices" in result.stdout


def test_scraper_image_migrates_an_empty_database(
    scraper_image: Image, fresh_database: Callable[[], str]
) -> None:
    url = fresh_database()
    with writes_nothing(scraper_image):
        argv = scraper_image.argv(command=["alembic", "upgrade", "head"])
        result = scraper_image.run(argv, {"DATABASE_URL": url})
    assert result.returncode == 0, result.stdout + result.stderr
    engine = create_engine(database_url({"DATABASE_URL": url}))
    try:
        with engine.connect() as connection:
            assert connection.scalar(text("SELECT version_num FROM alembic_version")) == (
                schema_head()
            )
    finally:
        engine.dispose()


def test_scraper_image_serves_the_fake_providers(scraper_image: Image) -> None:
    """The local overlay's fake-providers container: every fake on a port of its own (0: a free
    one here), each requiring the key it is given."""
    keys = {"coindesk": COINDESK_KEY, "cryptocompare": CRYPTOCOMPARE_KEY, "coinmarketcap": CMC_KEY}
    args = [
        word
        for provider, key in keys.items()
        for word in (f"--{provider}-port", "0", f"--{provider}-key", key)
    ]
    argv = scraper_image.argv(command=["python", "-m", "fakeproviders"], args=args)
    process = subprocess.Popen(
        argv,
        cwd=scraper_image.app,
        env=scraper_image.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in range(3)]
        urls = dict(line.split("=", 1) for line in lines if "=" in line)
        assert list(urls) == [
            "COINDESK_BASE_URL",
            "CRYPTOCOMPARE_BASE_URL",
            "COINMARKETCAP_BASE_URL",
        ]
        # One cheap call to each, with and without its key: every fake checks keys.
        calls = {
            "COINDESK_BASE_URL": (
                "/asset/v1/top/list?page=1&page_size=10",
                "Authorization",
                f"Apikey {COINDESK_KEY}",
            ),
            "CRYPTOCOMPARE_BASE_URL": (
                "/data/top/totalvolfull?tsym=USD&limit=10",
                "Authorization",
                f"Apikey {CRYPTOCOMPARE_KEY}",
            ),
            "COINMARKETCAP_BASE_URL": ("/v1/key/info", "X-CMC_PRO_API_KEY", CMC_KEY),
        }
        for name, (path, header, value) in calls.items():
            url = urls[name] + path
            assert status(url) == 401, name
            assert requests.get(url, headers={header: value}, timeout=2).status_code == 200, name
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_dockerignore_matches_as_the_builder_does() -> None:
    ignore = DockerIgnore("*\n!keep/\n**/__pycache__\n*.txt\n!keep/**/*.md\n")
    assert ignore.excluded("other.py")
    assert ignore.excluded("other/deep/file.py")
    assert not ignore.excluded("keep/a.py")
    assert ignore.excluded("keep/__pycache__/a.pyc")
    assert ignore.excluded("keep/sub/__pycache__/a.pyc")
    assert ignore.excluded("top.txt")
    assert not ignore.excluded("keep/a.txt"), "* stays within one path segment"
    assert not ignore.excluded("keep/__pycache__/notes.md"), "the last matching pattern wins"


def test_dockerfile_parser_reads_our_subset() -> None:
    dockerfile = Dockerfile.parse(
        "ARG BASE=python:3.11-slim\n"
        "FROM $BASE AS build\n"
        "RUN a \\\n"
        "    # inside a continuation\n"
        "    && b\n"
        "FROM build\n"
        "ARG V\n"
        'ENV A=1 B="two words" P=/x:$PATH\n'
        "COPY --from=build --chown=1:1 /s /d\n"
        "LABEL v=$V\n"
        'CMD ["x", "y"]\n'
    )
    build, final = dockerfile.stages
    assert (build.base, build.name, build.runs) == ("python:3.11-slim", "build", ["a     && b"])
    assert dockerfile.external_bases() == ["python:3.11-slim"]
    evaluated = final.evaluate({"PATH": "/bin"}, {"V": "7"}, dockerfile.global_args)
    assert evaluated.env == {"PATH": "/bin", "A": "1", "B": "two words", "P": "/x:/bin"}
    assert evaluated.labels == {"v": "7"}
    [copy] = final.copies
    assert (copy.sources, copy.destination, copy.from_stage) == (("/s",), "/d", "build")
    assert final.cmd == ["x", "y"]
