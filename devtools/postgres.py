"""Find, or failing that provide, a PostgreSQL server for local runs and tests.

bin/local, bin/test and the pytest conftest must work on any fresh Debian machine without the
developer configuring a database first, so the first reachable option wins:

1. ``DATABASE_URL`` from the environment; when it is set but unreachable a note goes to stderr.
2. A server on 127.0.0.1:5432 that lets user ``postgres`` in without a password (db ``postgres``).
3. A private throwaway cluster under ``<repo>/.local/postgres`` made with the installed
   ``initdb`` and run with ``pg_ctl`` on a free 127.0.0.1 port, remembered in
   ``.local/postgres/port`` so later calls reuse (or restart) the same cluster. Its data is
   disposable, so fsync and friends are off. As root it runs as the ``postgres`` system user
   (else ``nobody``); if that user cannot reach the repo (e.g. a repo under ``/root``) the
   cluster lives in ``/tmp/topcoins-postgres-<hash of repo path>`` instead.
4. Otherwise :class:`PostgresUnavailable` with a one-line hint.

``TOPCOINS_PG_SKIP_LOCAL=1`` skips option 2: it is how the private-cluster path gets exercised
(by hand or by tests) on machines that do have a local server.

Command line, for bash scripts (stdout carries only the URL, progress goes to stderr, failures
are one stderr line and exit code 2)::

    python -m devtools.postgres url [--database NAME] [--no-private]
    python -m devtools.postgres drop NAME [--no-private]
    python -m devtools.postgres stop
"""

import argparse
import contextlib
import fcntl
import hashlib
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CONNECT_TIMEOUT_S = 3
SKIP_LOCAL_ENV = "TOPCOINS_PG_SKIP_LOCAL"
HINT = (
    "set DATABASE_URL=postgresql://USER:PASSWORD@HOST:PORT/DB, "
    "or install PostgreSQL with `apt-get install postgresql`"
)

_NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_SCHEME_RE = re.compile(r"^(?:postgresql\+[a-z0-9_]+|postgres)://", re.IGNORECASE)
_USERINFO_RE = re.compile(r"^([a-z][a-z0-9+.-]*://[^:/@]*:).*@", re.IGNORECASE)
_QUERY_PASSWORD_RE = re.compile(r"(^|&)(password=)[^&#]*", re.IGNORECASE)
_LOOSE_PASSWORD_RE = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
_SUN_PATH_MAX = 107
_SOCKET_NAME = ".s.PGSQL.65535"
_Completed = subprocess.CompletedProcess[str]


class PostgresUnavailable(RuntimeError):
    """Carries a one-line, password-free message that the CLI prints as is.

    Raised rather than exiting so that the pytest conftest can turn it into pytest.exit.
    """


def normalize_url(url: str) -> str:
    """SQLAlchemy-style schemes (``postgresql+psycopg://``) mean nothing to libpq or psql."""
    return _SCHEME_RE.sub("postgresql://", url.strip(), count=1)


def mask_url(url: str) -> str:
    """Hide the password wherever it hides, even unencoded, so messages can show the URL."""
    head, sep, query = url.partition("?")
    return _USERINFO_RE.sub(r"\1***@", head) + sep + _QUERY_PASSWORD_RE.sub(r"\1\2***", query)


def url_for_database(url: str, name: str) -> str:
    """Swap the database while keeping host, credentials and options."""
    head, sep, query = normalize_url(url).partition("?")
    scheme, _, rest = head.partition("://")
    authority = rest.split("/", 1)[0]
    params = [p for p in query.split("&") if p and not p.lower().startswith("dbname=")]
    return f"{scheme}://{authority}/{name}" + (sep + "&".join(params) if params else "")


def _database_of(url: str) -> str:
    head, _, query = normalize_url(url).partition("?")
    for param in query.split("&"):
        if param.lower().startswith("dbname="):
            return param.split("=", 1)[1]
    rest = head.partition("://")[2]
    return rest.split("/", 1)[1] if "/" in rest else ""


def _one_line(message: str) -> str:
    return _LOOSE_PASSWORD_RE.sub(r"\1***@", " ".join(message.split()))


def _note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _check_name(name: str) -> None:
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"invalid database name {name!r}: use [a-z_][a-z0-9_]*, at most 63 chars")


def _connect(url: str) -> psycopg.Connection:
    return psycopg.connect(normalize_url(url), connect_timeout=CONNECT_TIMEOUT_S, autocommit=True)


def _connect_error(url: str) -> str | None:
    """A reason string rather than an exception: the caller moves on to the next option."""
    try:
        with _connect(url) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return _one_line(str(exc))
    return None


def _port_listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def find_server(repo_root: Path, *, allow_private: bool = True) -> str:
    """Return an admin URL (``postgresql://user@host:port/dbname``, as psql accepts it).

    With DATABASE_URL that is DATABASE_URL itself: its credentials create further databases and
    the database it names stays the maintenance one.
    """
    env_url = os.environ.get("DATABASE_URL", "").strip()
    if env_url:
        url = normalize_url(env_url)
        error = _connect_error(url)
        if error is None:
            return url
        _note(f"DATABASE_URL {mask_url(url)} is unreachable ({error}); looking further")
    if not os.environ.get(SKIP_LOCAL_ENV) and _port_listening("127.0.0.1", 5432):
        error = _connect_error(LOCAL_URL)
        if error is None:
            return LOCAL_URL
        _note(f"the server on 127.0.0.1:5432 refused {LOCAL_URL} ({error}); looking further")
    if allow_private:
        return _private_cluster(repo_root)
    raise PostgresUnavailable(f"no reachable PostgreSQL server: {HINT}")


def ensure_database(admin_url: str, name: str) -> str:
    """Create ``name`` unless it exists and return its URL; safe to race with itself."""
    _check_name(name)
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    with _connect(admin_url) as conn:
        for attempt in range(10):
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                break
            try:
                conn.execute(create)
                break
            except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                break
            except psycopg.errors.ObjectInUse:
                # Another CREATE DATABASE is copying template1 right now; it lets go quickly.
                if attempt == 9:
                    raise
                time.sleep(0.2)
    return url_for_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    """Drop ``name`` even while tests still hold connections to it."""
    _check_name(name)
    if name == _database_of(admin_url):
        raise ValueError(f"refusing to drop {name!r}: it is the admin URL's maintenance database")
    with _connect(admin_url) as conn:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        conn.execute(drop.format(sql.Identifier(name)))


# --- private cluster -------------------------------------------------------------------------


def _primary_base(repo_root: Path) -> Path:
    return repo_root / ".local" / "postgres"


def _fallback_base(repo_root: Path) -> Path:
    digest = hashlib.sha256(str(repo_root.resolve()).encode()).hexdigest()[:12]
    return Path("/tmp") / f"topcoins-postgres-{digest}"  # noqa: S108 - reachable by any user


def _existing_base(repo_root: Path) -> Path | None:
    for base in (_primary_base(repo_root), _fallback_base(repo_root)):
        if (base / "data" / "PG_VERSION").is_file():
            return base
    return None


def _display(path: Path, repo_root: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(repo_root))
    return str(path)


def _version_key(bindir: Path) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else -1 for p in bindir.parent.name.split("."))


def _find_bindir(data: Path) -> Path | None:
    """Prefer binaries matching an existing cluster, because newer ones refuse to start it."""
    candidates: list[Path] = []
    with contextlib.suppress(OSError):
        version = (data / "PG_VERSION").read_text().strip()
        candidates.append(Path("/usr/lib/postgresql") / version / "bin")
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
            if out:
                candidates.append(Path(out))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates += [Path(on_path).resolve().parent, Path(on_path).parent]
    for bindir in candidates:
        if all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


def _service_user(data: Path) -> str | None:
    """initdb and postgres refuse root; an existing cluster keeps running as its owner."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(OSError, KeyError):
        owner = data.stat().st_uid
        if owner != 0:
            return pwd.getpwuid(owner).pw_name
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name).pw_name
    raise PostgresUnavailable(
        f"running as root and there is no 'postgres' or 'nobody' user to run PostgreSQL as: {HINT}"
    )


def _as_user(cmd: list[str], user: str | None) -> list[str]:
    if user is None:
        return cmd
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--", *cmd]
    return ["su", "-s", "/bin/sh", user, "-c", shlex.join(cmd)]


def _run(cmd: list[str], user: str | None, cwd: Path, timeout: float) -> _Completed:
    # PG* variables (PGDATA, PGPORT, PGOPTIONS ...) would quietly change what the tools do.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C"}
    return subprocess.run(
        _as_user(cmd, user),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _output_tail(result: _Completed) -> str:
    lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    return _one_line(lines[-1]) if lines else f"exit code {result.returncode}"


def _log_tail(log: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        if lines:
            return _one_line(lines[-1])
    return "no log output"


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """bin/local and bin/test may start at once; only one of them may initdb or start."""
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _process(pid: int) -> tuple[str, str | None, bytes] | None:
    """State letter, working directory (None when not ours to see) and command line."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    try:
        cwd: str | None = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        cwd = None
    return stat.rpartition(")")[2].split()[0], cwd, cmdline


def _running_port(data: Path) -> int | None:
    """Port of the live postmaster of ``data``, else None.

    Postgres refuses to start while the pid in postmaster.pid exists, which trips on a crashed
    postmaster not yet reaped and on a pid reused by another program after a container restart.
    """
    pid_file = data / "postmaster.pid"
    deadline = time.monotonic() + 10
    while True:
        try:
            lines = pid_file.read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        process = _process(pid)
        if process is None:
            return None
        state, cwd, cmdline = process
        if state != "Z":
            ours = cwd == str(data.resolve()) if cwd is not None else b"postgres" in cmdline
            if ours:
                return port
            _note(f"removing stale {pid_file}: pid {pid} is another program")
            pid_file.unlink(missing_ok=True)
            return None
        if time.monotonic() > deadline:
            return port
        time.sleep(0.1)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _choose_port(port_file: Path) -> int:
    """Keep the remembered port while it is free, so URLs saved elsewhere stay valid."""
    with contextlib.suppress(OSError, ValueError):
        port = int(port_file.read_text().strip())
        if 1024 <= port <= 65535 and _port_free(port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    port_file.write_text(f"{port}\n")
    return port


def _private_url(port: int) -> str:
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def _conf_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _prepare_base(repo_root: Path, user: str | None) -> Path:
    primary = _primary_base(repo_root)
    if user is None:
        return primary
    entry = pwd.getpwnam(user)
    os.chown(primary, entry.pw_uid, entry.pw_gid)
    probe = _run(["test", "-w", str(primary), "-a", "-x", str(primary)], user, Path("/"), 30)
    if probe.returncode == 0:
        return primary
    fallback = _fallback_base(repo_root)
    if fallback.is_symlink():
        raise PostgresUnavailable(f"{fallback} is a symlink; remove it and retry")
    fallback.mkdir(mode=0o700, exist_ok=True)
    if fallback.stat().st_uid not in (0, entry.pw_uid):
        raise PostgresUnavailable(f"{fallback} belongs to another user; remove it and retry")
    os.chown(fallback, entry.pw_uid, entry.pw_gid)
    _note(f"user {user} cannot reach {primary}; keeping the private cluster in {fallback}")
    return fallback


def _initdb(base: Path, bindir: Path, user: str | None, repo_root: Path) -> None:
    partial = base / "data.partial"
    shutil.rmtree(partial, ignore_errors=True)
    as_whom = f" as user {user}" if user else ""
    _note(f"creating a private PostgreSQL cluster under {_display(base, repo_root)}{as_whom} …")
    started = time.monotonic()
    result = _run(
        [
            str(bindir / "initdb"),
            "-D",
            str(partial),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ],
        user,
        base,
        300,
    )
    if result.returncode != 0:
        raise PostgresUnavailable(f"initdb failed: {_output_tail(result)}")
    sockets = str(base) if len(str(base)) + 1 + len(_SOCKET_NAME) <= _SUN_PATH_MAX else ""
    with (partial / "postgresql.conf").open("a") as conf:
        conf.write(
            "\n# devtools.postgres: throwaway cluster, durability traded for speed\n"
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = {_conf_string(sockets)}\n"
            "fsync = off\n"
            "synchronous_commit = off\n"
            "full_page_writes = off\n"
        )
    partial.rename(base / "data")
    _note(f"initdb took {time.monotonic() - started:.1f} s")


def _start(base: Path, bindir: Path, user: str | None, repo_root: Path) -> int:
    port = _choose_port(base / "port")
    log = base / "postgres.log"
    where = f"127.0.0.1:{port} (log: {_display(log, repo_root)})"
    _note(f"starting the private PostgreSQL cluster on {where} …")
    started = time.monotonic()
    cmd = [str(bindir / "pg_ctl"), "-D", str(base / "data"), "-l", str(log), "-w", "-t", "60"]
    result = _run([*cmd, "-o", f"-p {port}", "start"], user, base, 90)
    if result.returncode != 0:
        raise PostgresUnavailable(
            f"pg_ctl could not start the private cluster ({_log_tail(log)}); "
            f"see {log}, or delete {base} to recreate it"
        )
    _note(f"started in {time.monotonic() - started:.1f} s")
    return port


def _private_cluster(repo_root: Path) -> str:
    primary = _primary_base(repo_root)
    primary.mkdir(parents=True, exist_ok=True)
    with _locked(primary / "lock"):
        base = _existing_base(repo_root)
        if base is not None:
            port = _running_port(base / "data")
            if port is not None and _connect_error(_private_url(port)) is None:
                return _private_url(port)
        bindir = _find_bindir((base or primary) / "data")
        if bindir is None:
            raise PostgresUnavailable(
                f"no reachable PostgreSQL server, nor binaries to run a private one: {HINT}"
            )
        user = _service_user((base or primary) / "data")
        if base is None:
            base = _prepare_base(repo_root, user)
            _initdb(base, bindir, user, repo_root)
        port = _start(base, bindir, user, repo_root)
        url = _private_url(port)
        error = _connect_error(url)
        if error is not None:
            raise PostgresUnavailable(f"the private cluster started but refuses us: {error}")
        return url


def stop_private_cluster(repo_root: Path) -> None:
    """Stop without deleting: the next find_server restarts it in about a second."""
    primary = _primary_base(repo_root)
    if not primary.is_dir():
        _note("no private PostgreSQL cluster to stop")
        return
    stopped = False
    with _locked(primary / "lock"):
        for base in (primary, _fallback_base(repo_root)):
            data = base / "data"
            if _running_port(data) is None:
                continue
            bindir = _find_bindir(data)
            if bindir is None:
                raise PostgresUnavailable(f"cannot stop the cluster in {data}: no pg_ctl found")
            cmd = [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop"]
            result = _run(cmd, _service_user(data), base, 90)
            if result.returncode != 0:
                raise PostgresUnavailable(f"pg_ctl stop failed: {_output_tail(result)}")
            _note(f"stopped the private PostgreSQL cluster under {_display(base, repo_root)}")
            stopped = True
    if not stopped:
        _note("no private PostgreSQL cluster is running")


# --- command line ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.postgres",
        description="Find or start a PostgreSQL server for development and tests.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    url = commands.add_parser("url", help="print the admin URL, or the URL of --database")
    url.add_argument("--database", metavar="NAME", help="create NAME if missing, print its URL")
    url.add_argument("--no-private", action="store_true", help="never use a private cluster")
    drop = commands.add_parser("drop", help="drop database NAME if it exists")
    drop.add_argument("name", metavar="NAME")
    drop.add_argument("--no-private", action="store_true", help="never use a private cluster")
    commands.add_parser("stop", help="stop the private cluster, if running")
    return parser


_EXPECTED_ERRORS = (
    psycopg.Error,
    OSError,
    subprocess.SubprocessError,
    ValueError,
)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "url":
            admin = find_server(REPO_ROOT, allow_private=not args.no_private)
            print(ensure_database(admin, args.database) if args.database else admin)
        elif args.command == "drop":
            drop_database(find_server(REPO_ROOT, allow_private=not args.no_private), args.name)
        else:
            stop_private_cluster(REPO_ROOT)
    except PostgresUnavailable as exc:
        print(f"devtools.postgres: {exc}", file=sys.stderr)
        return 2
    except _EXPECTED_ERRORS as exc:
        print(f"devtools.postgres: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
