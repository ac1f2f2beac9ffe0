"""Find, or failing that start, a PostgreSQL server for local runs and tests.

bin/local, bin/test and the pytest conftest must work on a machine with nothing but Python 3.11,
so the first reachable option wins:

1. ``DATABASE_URL`` from the environment; when it is set but unreachable a note goes to stderr.
2. The local server, ``postgresql://postgres@127.0.0.1:5432/postgres``
   (``TOPCOINS_PG_LOCAL_URL`` names another one).
3. An embedded cluster under ``<repo>/.local/pgserver``, run on a free 127.0.0.1 port with the
   PostgreSQL binaries of the ``pgserver`` wheel (bin/setup installs it), never the system's.
   It outlives the run: later calls reuse it, or start it again on the port remembered in
   ``.local/pgserver/port``. Its data is disposable, so fsync is off. PostgreSQL refuses to run
   as root, so as root it runs as the owner of its data, else as user ``postgres``, else
   ``nobody``.
4. Otherwise :class:`PostgresUnavailable` with a one-line hint.

Command line, for bash scripts (stdout carries only the URL, progress goes to stderr, failures
are one stderr line and exit code 2)::

    python -m devtools.postgres url [--database NAME] [--no-embedded]
    python -m devtools.postgres drop NAME [--no-embedded]
    python -m devtools.postgres stop
"""

import argparse
import contextlib
import fcntl
import importlib.util
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_URL_ENV = "TOPCOINS_PG_LOCAL_URL"
CONNECT_TIMEOUT_S = 3
HINT = "set DATABASE_URL=postgresql://USER:PASSWORD@HOST:PORT/DB, or run bin/setup for pgserver"

_NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_LOOSE_PASSWORD_RE = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
_Completed = subprocess.CompletedProcess[str]


class PostgresUnavailable(RuntimeError):
    """Carries a one-line, password-free message that the CLI prints as is.

    Raised rather than exiting so that the pytest conftest can turn it into pytest.exit.
    """


def _parse(url: str) -> URL:
    try:
        parsed = make_url(url.strip())
    except (ArgumentError, ValueError):
        raise ValueError("malformed PostgreSQL URL (is the port a number?)") from None
    if parsed.get_backend_name() not in ("postgres", "postgresql"):
        raise ValueError(f"not a postgresql:// URL: {parsed.drivername}://…")
    return parsed


def normalize_url(url: str) -> str:
    """SQLAlchemy-style schemes (``postgresql+psycopg://``) mean nothing to libpq or psql."""
    return _parse(url).set(drivername="postgresql").render_as_string(hide_password=False)


def mask_url(url: str) -> str:
    """The URL without its password (also in ``?password=``), so messages can show it."""
    try:
        parsed = _parse(url)
    except ValueError:
        return "<malformed URL>"
    if "password" in parsed.query:
        parsed = parsed.update_query_dict({"password": "***"})
    return parsed.render_as_string(hide_password=True)


def url_for_database(url: str, name: str) -> str:
    """Swap the database while keeping host, credentials and options."""
    parsed = _parse(url).set(drivername="postgresql", database=name)
    return parsed.difference_update_query(["dbname"]).render_as_string(hide_password=False)


def _one_line(message: str) -> str:
    return _LOOSE_PASSWORD_RE.sub(r"\1***@", " ".join(message.split()))


def _tail(text: str, *, first: bool = False) -> str:
    """The line of a message or log that tells what went wrong: its last, or its first."""
    lines = [line for line in text.splitlines() if line.strip()]
    return _one_line(lines[0 if first else -1]) if lines else "no output"


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
    except (psycopg.Error, ValueError) as exc:
        return _tail(str(exc), first=True)
    return None


def find_server(repo_root: Path, *, allow_embedded: bool = True) -> str:
    """Return an admin URL (``postgresql://user@host:port/dbname``, as psql accepts it).

    With DATABASE_URL that is DATABASE_URL itself: its credentials create further databases and
    the database it names stays the maintenance one.
    """
    env_url = os.environ.get("DATABASE_URL", "").strip()
    if env_url:
        error = _connect_error(env_url)
        if error is None:
            return normalize_url(env_url)
        _note(f"DATABASE_URL {mask_url(env_url)} is unreachable ({error}); looking further")
    local = os.environ.get(LOCAL_URL_ENV, "").strip() or LOCAL_URL
    error = _connect_error(local)
    if error is None:
        return normalize_url(local)
    if not allow_embedded:
        raise PostgresUnavailable(f"no reachable PostgreSQL server: {HINT}")
    _note(f"no PostgreSQL at {mask_url(local)} ({error}); using the embedded one")
    return embedded_server(repo_root)


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
    admin = _parse(admin_url)
    if name == (admin.query.get("dbname") or admin.database):
        raise ValueError(f"refusing to drop {name!r}: it is the admin URL's maintenance database")
    with _connect(admin_url) as conn:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        conn.execute(drop.format(sql.Identifier(name)))


# --- embedded server -------------------------------------------------------------------------


def embedded_base(repo_root: Path) -> Path:
    return repo_root / ".local" / "pgserver"


def _bindir() -> Path:
    """pgserver's binaries (its documented POSTGRES_BIN_PATH), found without importing it."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        raise PostgresUnavailable(f"no reachable PostgreSQL server and pgserver is missing: {HINT}")
    bindir = Path(spec.origin).parent / "pginstall" / "bin"
    if not (bindir / "postgres").is_file():
        raise PostgresUnavailable(f"pgserver has no PostgreSQL binaries in {bindir}: reinstall it")
    return bindir


def _embedded_url(port: int) -> str:
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def _server_user(data: Path) -> pwd.struct_passwd | None:
    """Who runs PostgreSQL: we ourselves, unless we are root, which PostgreSQL refuses."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(OSError, KeyError):
        owner = data.stat().st_uid
        if owner != 0:
            return pwd.getpwuid(owner)
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PostgresUnavailable(f"running as root and no user postgres or nobody to run as: {HINT}")


def _run(cmd: list[str | Path], user: pwd.struct_passwd | None, cwd: Path) -> _Completed:
    # PG* variables (PGDATA, PGPORT, PGOPTIONS ...) would quietly change what the tools do.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C"}
    try:
        return subprocess.run(
            [str(part) for part in cmd],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            user=None if user is None else user.pw_uid,
            group=None if user is None else user.pw_gid,
            extra_groups=None if user is None else [],
        )
    except PermissionError:
        raise PostgresUnavailable(f"cannot run {cmd[0]} in {cwd}{_root_hint(user)}") from None


def _root_hint(user: pwd.struct_passwd | None) -> str:
    if user is None:
        return ""
    return (
        f" (as root, PostgreSQL runs as user {user.pw_name}, who needs search permission on"
        " the repository's parent directories: chmod o+x them, or run as a normal user)"
    )


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """bin/local and bin/test may start at once; only one of them may initdb or start."""
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _running_port(data: Path) -> int | None:
    """Port of the live postmaster of ``data``, else None, removing a stale postmaster.pid.

    PostgreSQL refuses to start while the pid in postmaster.pid exists, which trips on a crashed
    postmaster not yet reaped and on a pid reused by another program after a container restart.
    """
    pid_file = data / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    try:
        alive = b"postgres" in Path(f"/proc/{pid}/cmdline").read_bytes()  # empty for a zombie
    except OSError:
        alive = not Path("/proc/self").exists() and _pid_exists(pid)  # no /proc (macOS)
    if alive:
        return port
    pid_file.unlink(missing_ok=True)
    return None


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


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


def _initdb(bindir: Path, base: Path, user: pwd.struct_passwd | None) -> None:
    partial = base / "data.partial"
    shutil.rmtree(partial, ignore_errors=True)
    as_whom = f" as user {user.pw_name}" if user else ""
    _note(f"creating the embedded PostgreSQL cluster in {base}{as_whom} …")
    options = ["-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"]
    result = _run([bindir / "initdb", "-D", partial, *options], user, base)
    if result.returncode != 0:
        tail = _tail(result.stderr or result.stdout)
        raise PostgresUnavailable(f"initdb failed: {tail}{_root_hint(user)}")
    with (partial / "postgresql.conf").open("a") as conf:
        conf.write(
            "\n# devtools.postgres: throwaway cluster, durability traded for speed\n"
            "listen_addresses = '127.0.0.1'\n"
            "unix_socket_directories = ''\n"
            "fsync = off\n"
            "synchronous_commit = off\n"
            "full_page_writes = off\n"
        )
    partial.rename(base / "data")


def embedded_server(repo_root: Path) -> str:
    """Admin URL of the embedded cluster, created and started as needed."""
    bindir = _bindir()
    base = embedded_base(repo_root)
    data = base / "data"
    base.mkdir(parents=True, exist_ok=True)
    with _locked(base / "lock"):
        port = _running_port(data)
        if port is not None and _connect_error(_embedded_url(port)) is None:
            return _embedded_url(port)
        user = _server_user(data)
        if user is not None:
            os.chown(base, user.pw_uid, user.pw_gid)
        started = time.monotonic()
        if not (data / "PG_VERSION").is_file():
            _initdb(bindir, base, user)
        port = _choose_port(base / "port")
        log = base / "log"
        _note(f"starting the embedded PostgreSQL on 127.0.0.1:{port} (log: {log}) …")
        cmd: list[str | Path] = [bindir / "pg_ctl", "-D", data, "-l", log, "-w", "-t", "60"]
        if _run([*cmd, "-o", f"-p {port}", "start"], user, base).returncode != 0:
            log_tail = _tail(log.read_text(errors="replace")) if log.is_file() else "no log"
            raise PostgresUnavailable(
                f"the embedded PostgreSQL did not start ({log_tail}); "
                f"see {log}, or delete {base} to start afresh{_root_hint(user)}"
            )
        url = _embedded_url(port)
        error = _connect_error(url)
        if error is not None:
            raise PostgresUnavailable(f"the embedded PostgreSQL started but refuses us: {error}")
        _note(f"the embedded PostgreSQL is up after {time.monotonic() - started:.1f} s")
        return url


def stop_embedded_server(repo_root: Path) -> None:
    """Stop without deleting: the next find_server starts it again in well under a second."""
    base = embedded_base(repo_root)
    data = base / "data"
    if not base.is_dir():
        _note("no embedded PostgreSQL to stop")
        return
    with _locked(base / "lock"):
        if _running_port(data) is None:
            _note("the embedded PostgreSQL is not running")
            return
        cmd: list[str | Path] = [_bindir() / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop"]
        result = _run(cmd, _server_user(data), base)
        if result.returncode != 0:
            raise PostgresUnavailable(f"pg_ctl stop failed: {_tail(result.stderr)}")
        _note(f"stopped the embedded PostgreSQL in {base}")


# --- command line ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.postgres",
        description="Find or start a PostgreSQL server for development and tests.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    url = commands.add_parser("url", help="print the admin URL, or the URL of --database")
    url.add_argument("--database", metavar="NAME", help="create NAME if missing, print its URL")
    url.add_argument("--no-embedded", action="store_true", help="never start the embedded one")
    drop = commands.add_parser("drop", help="drop database NAME if it exists")
    drop.add_argument("name", metavar="NAME")
    drop.add_argument("--no-embedded", action="store_true", help="never start the embedded one")
    commands.add_parser("stop", help="stop the embedded server, if running")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "url":
            admin = find_server(REPO_ROOT, allow_embedded=not args.no_embedded)
            print(ensure_database(admin, args.database) if args.database else admin)
        elif args.command == "drop":
            drop_database(find_server(REPO_ROOT, allow_embedded=not args.no_embedded), args.name)
        else:
            stop_embedded_server(REPO_ROOT)
    except PostgresUnavailable as exc:
        print(f"devtools.postgres: {exc}", file=sys.stderr)
        return 2
    except (psycopg.Error, OSError, subprocess.SubprocessError, ValueError) as exc:
        print(f"devtools.postgres: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
