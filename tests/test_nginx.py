"""nginx in front of gunicorn, as the API pod runs them: the real nginx with the project's template
(k8s/base/api-nginx.conf.template) in front of gunicorn started as its image starts it.

What it is there for: slow clients cannot take gunicorn's sync workers, connections are kept
alive, /metrics stays off the public port, and every answer nginx makes itself is a problem
document, as the app's are, never an HTML page (nginx's, or gunicorn's for a request it
refuses). And GET / is answered from a micro-cache: each distinct answer reaches gunicorn about
once a second, never an error, never a probe.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import pytest
import requests
import yaml
from alembic import command
from sqlalchemy import Engine, text

from fakeproviders import FakeProviders
from scrapers.cli import main as scrapers_main
from tests import frontend
from tests.conftest import environment
from tests.frontend import MISSING, Nginx, free_ports
from tests.support import ROOT, Gunicorn, Store, alembic_config, wait_for
from topcoins.db import make_engine
from topcoins.settings import database_url

needs_nginx = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

PROBLEM_JSON = "application/problem+json"
# What the app and nginx name each status in a problem's title (RFC 9110's reason phrases).
TITLES = {
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    414: "URI Too Long",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    502: "Bad Gateway",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}
# gunicorn's own limits (its defaults; gunicorn.conf.py keeps them): nginx must refuse first.
GUNICORN_REQUEST_LINE = 4094
GUNICORN_HEADER_FIELDS = 100
REQUEST_ID = re.compile(r"[0-9a-f]{32}")


def directive(name: str) -> str:
    """The value of a directive the template sets once, as written."""
    (value,) = re.findall(rf"^\s*{name}\s+([^;]+);", frontend.TEMPLATE.read_text(), re.MULTILINE)
    return value


def seconds(value: str) -> float:
    assert value.endswith("s"), value
    return float(value[:-1])


# --- talking HTTP at the byte level ---------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def exchange(port: int, request: bytes, timeout: float = 5) -> Answer:
    """Send raw bytes (requests and http.client refuse to send malformed ones) and read one
    answer: its status line, header and a Content-Length body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed without an answer: {data!r}"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        # A HEAD answer announces the length of a body it does not send.
        length = 0 if request.startswith(b"HEAD ") else int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return Answer(int(status_line.split(" ")[1]), headers, body[:length])


def get(target: str, *extra: bytes, method: bytes = b"GET") -> bytes:
    """A raw request: ``extra`` header lines after Host."""
    lines = [method + b" " + target.encode("latin-1") + b" HTTP/1.1", b"Host: top-coins.test"]
    return b"\r\n".join([*lines, *extra, b"", b""])


def assert_problem(answer: Answer, status: int) -> dict:
    """An RFC 9457 problem, never an HTML page, with the headers every answer carries."""
    assert answer.status == status, answer
    assert answer.headers["content-type"] == PROBLEM_JSON, answer
    assert answer.headers["x-content-type-options"] == "nosniff"
    problem = answer.json()
    assert problem["status"] == status
    assert problem["title"] == TITLES[status]
    assert problem["type"] == "about:blank"
    assert problem["detail"]
    return problem


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pod(
    fresh_database: Callable[[], str],
    provider_server: FakeProviders,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Gunicorn, Nginx]]:
    """The API as its pod serves it, a ranking and prices stored: nginx with the project's
    template in front of gunicorn, which listens on loopback only.  On a database of its
    own, shared by the tests of this module, which only read."""
    url = fresh_database()
    command.upgrade(alembic_config(url), "head")
    provider_server.reset()
    env = environment(url, provider_server)
    assert scrapers_main(["ranks"], env) == 0
    assert scrapers_main(["prices"], env) == 0
    server = Gunicorn(env, tmp_path_factory.mktemp("pod") / "gunicorn.log")
    try:
        server.wait_until_up()
        with Nginx(f"127.0.0.1:{server.port}") as nginx:
            ready = wait_for(lambda: status(nginx.base + "/readyz") == 200, timeout=10)
            assert ready, server.output() + nginx.output()
            yield server, nginx
    finally:
        server.stop()


@pytest.fixture
def api(pod: tuple[Gunicorn, Nginx]) -> Nginx:
    return pod[1]


def status(url: str) -> int | None:
    try:
        return requests.get(url, timeout=2).status_code
    except requests.ConnectionError:
        return None


class EchoUpstream:
    """Stands in for gunicorn to show what nginx passes on: records each request's headers and
    answers as the app does, with an X-Request-ID."""

    def __init__(self) -> None:
        self.seen: list[list[tuple[str, str]]] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                seen.append(list(self.headers.items()))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Request-ID", self.headers.get("X-Request-ID", ""))
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_port}"
        Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the template -----------------------------------------------------------------------------


@needs_nginx
def test_template_renders_only_its_own_variables_and_nginx_accepts_it() -> None:
    assert frontend.variables() == [
        "NGINX_PORT",
        "NGINX_METRICS_PORT",
        "NGINX_UPSTREAM",
        "NGINX_UPSTREAM_TIMEOUT",
        "NGINX_TEMP",
    ]
    directory = frontend.scratch_directory()
    try:
        port, metrics_port = free_ports(2)
        values = {
            "NGINX_PORT": str(port),
            "NGINX_METRICS_PORT": str(metrics_port),
            "NGINX_UPSTREAM": "127.0.0.1:9",
            "NGINX_UPSTREAM_TIMEOUT": "10s",
            "NGINX_TEMP": str(directory),
        }
        rendered = frontend.render(values)
        assert "${NGINX_" not in rendered
        assert f"listen {port} default_server;" in rendered
        assert "server 127.0.0.1:9;" in rendered
        # nginx's own variables are left for nginx.
        for variable in ("$proxy_add_x_forwarded_for", "$api_request_id", "$status", "$host"):
            assert variable in rendered, variable
        config = directory / "nginx.conf"
        config.write_text(rendered)
        nginx = frontend.nginx_binary()
        assert nginx is not None
        result = subprocess.run(
            [nginx, "-t", "-c", str(config), *frontend.RUN_FLAGS],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_bin_local_renders_the_template_with_the_same_variables() -> None:
    script = (ROOT / "bin" / "local").read_text()
    assert f"'{frontend.envsubst_list()}'" in script
    assert "k8s/base/api-nginx.conf.template" in script
    for name in frontend.variables():
        assert re.search(rf"\b{name}=", script), f"bin/local does not set {name}"


def test_the_limits_are_stricter_than_gunicorns() -> None:
    """A request gunicorn would refuse with its HTML page must be refused by nginx first."""
    header_buffers = directive("large_client_header_buffers").split()
    count, size = int(header_buffers[0]), header_buffers[1]
    assert count >= 1
    # The request line, CRLF included, must fit one buffer.
    assert int(size.removesuffix("k")) * 1024 - 2 <= GUNICORN_REQUEST_LINE
    assert directive("proxy_intercept_errors") == "off", "the app's problems pass untouched"
    assert directive("proxy_pass_request_headers") == "off"
    assert directive("server_tokens") == "off"
    for name in ("client_header_timeout", "client_body_timeout", "send_timeout"):
        assert 1 <= seconds(directive(name)) <= 10, name
    assert directive("reset_timedout_connection") == "on"


# --- slow clients -------------------------------------------------------------------------------

SLOW_CLIENTS = 8  # four times gunicorn's two workers in the tests
LINE_INTERVAL = 2.0  # seconds between two header lines of a slow client


def trickle(port: int, give_up: float) -> tuple[float | None, int]:
    """A slow client: a request line, then one header line every LINE_INTERVAL seconds, never
    the blank line that ends the header. Returns (seconds until the server closed the
    connection, or None if it never did before ``give_up``; header lines sent)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: top-coins.test\r\n")
        while time.monotonic() - started < give_up:
            readable, _, _ = select.select([sock], [], [], LINE_INTERVAL)
            try:
                if readable:
                    if not sock.recv(4096):
                        return time.monotonic() - started, sent
                    continue
                sock.sendall(f"X-Slow-{sent}: still typing\r\n".encode())
                sent += 1
            except (ConnectionResetError, BrokenPipeError):
                return time.monotonic() - started, sent
    return None, sent


@needs_nginx
def test_slow_clients_are_cut_off_and_never_starve_the_api(api: Nginx) -> None:
    header_timeout = seconds(directive("client_header_timeout"))
    assert header_timeout > 2 * LINE_INTERVAL, "several lines arrive before the cut"
    latencies: list[float] = []
    with ThreadPoolExecutor(SLOW_CLIENTS) as pool:
        attack = [pool.submit(trickle, api.port, header_timeout + 5) for _ in range(SLOW_CLIENTS)]
        time.sleep(0.5)  # every slow connection is open
        # The kubelet's probes, one connection each, while every slow client is connected.
        while not all(f.done() for f in attack):
            for path in ("/healthz", "/readyz"):
                started = time.monotonic()
                answer = requests.get(api.base + path, timeout=5)
                latencies.append(time.monotonic() - started)
                assert answer.status_code == 200, (path, answer.text)
            time.sleep(0.2)
        outcomes = [f.result() for f in attack]
    assert len(latencies) >= 2 * header_timeout, "probed throughout the attack"
    assert max(latencies) < 0.5, f"a probe waited {max(latencies):.2f} s"
    for closed_after, lines in outcomes:
        assert closed_after is not None, "a slow client was never cut off"
        # The timer runs for the whole header: sending lines does not extend it.
        assert lines >= 2
        assert header_timeout - 0.5 < closed_after < header_timeout + 1.5


# --- request metrics --------------------------------------------------------------------------


def made_up_methods(count: int) -> list[str]:
    """Distinct methods nginx and gunicorn both accept: letters only, at most 20 characters."""
    methods = []
    for number in range(count):
        suffix = ""
        while True:
            number, digit = divmod(number, 26)
            suffix += chr(ord("A") + digit)
            if number == 0:
                break
        methods.append(f"FLOOD{suffix}")
    return methods


def flask_series(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("flask_http_request_")]


@needs_nginx
def test_a_flood_of_made_up_methods_leaves_metrics_flat(api: Nginx) -> None:
    """Each distinct method a client makes up must not become a series of its own: that would
    grow /metrics, each worker's metric files and Prometheus without bound."""

    def metrics() -> str:
        answer = requests.get(api.metrics_base + "/metrics", timeout=10)
        assert answer.status_code == 200
        return answer.text

    methods = made_up_methods(1010)
    assert len(set(methods)) == len(methods)
    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)

    def send(batch: list[str]) -> None:
        for method in batch:
            connection.request(method, "/")
            answer = connection.getresponse()
            answer.read()
            assert answer.status == 405, (method, answer.status)

    try:
        send(methods[:10])
        metrics()  # /metrics's own series exist from here on
        before = metrics()
        send(methods[10:])
        after = metrics()
    finally:
        connection.close()
    assert len(flask_series(after)) == len(flask_series(before)), "new series per method"
    assert len(after) < len(before) + 1024, "only counts grew"
    assert "FLOOD" not in after


# --- answers nginx makes itself ----------------------------------------------------------------

LONG = 5000  # longer than any line nginx takes (4 KiB)
OWN_ERRORS = {
    "no Host header": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "a request body": (
        b"POST / HTTP/1.1\r\nHost: top-coins.test\r\nContent-Length: 5000\r\n\r\n" + b"x" * LONG,
        413,
    ),
    # .html: nginx's type by extension must not turn a problem into text/html.
    "a request line over 4 KiB": (
        b"GET /" + b"a" * LONG + b".html HTTP/1.1\r\nHost: top-coins.test\r\n\r\n",
        414,
    ),
    "a header line over 4 KiB": (
        b"GET / HTTP/1.1\r\nHost: top-coins.test\r\nCookie: " + b"a" * LONG + b"\r\n\r\n",
        431,
    ),
    "TRACE": (b"TRACE / HTTP/1.1\r\nHost: top-coins.test\r\n\r\n", 405),
    "HTTP/2.0 in a request line": (b"GET / HTTP/2.0\r\nHost: top-coins.test\r\n\r\n", 505),
    "an unknown transfer coding": (
        b"POST / HTTP/1.1\r\nHost: top-coins.test\r\nTransfer-Encoding: gzip\r\n\r\n",
        501,
    ),
}


@needs_nginx
@pytest.mark.parametrize("case", sorted(OWN_ERRORS))
def test_nginx_answers_its_own_errors_with_problems(api: Nginx, case: str) -> None:
    request, code = OWN_ERRORS[case]
    answer = exchange(api.port, request)
    assert_problem(answer, code)
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["server"] == "nginx", "no version"
    assert REQUEST_ID.fullmatch(answer.headers["x-request-id"])


@needs_nginx
def test_nginx_logs_the_answers_it_makes_itself_as_json_lines(api: Nginx) -> None:
    refused = exchange(api.port, get("/", b"Cookie: " + b"a" * LONG))
    served = exchange(api.port, get("/healthz", b"X-Request-ID: served-by-the-app"))
    assert (refused.status, served.status) == (431, 200)
    lines = [json.loads(line) for line in api.output().splitlines() if line.startswith("{")]
    (line,) = [entry for entry in lines if entry["request_id"] == refused.headers["x-request-id"]]
    assert line["status"] == 431
    assert (line["level"], line["logger"]) == ("WARNING", "nginx")
    assert line["request"] == "GET / HTTP/1.1"
    assert line["timestamp"]
    # gunicorn logs what it answers; nginx does not log it again.
    assert not [entry for entry in lines if entry["request_id"] == "served-by-the-app"]


@needs_nginx
def test_gunicorn_down_is_a_502_problem(scraped, gunicorn: Gunicorn) -> None:
    with Nginx(f"127.0.0.1:{gunicorn.port}") as nginx:
        assert status(nginx.base + "/healthz") == 200
        gunicorn.stop()
        problem = assert_problem(exchange(nginx.port, get("/healthz")), 502)
        assert "not answering" in problem["detail"]
        # nginx writes its log line after the answer has left.
        log = wait_for(
            lambda: [json.loads(line) for line in nginx.output().splitlines() if line[:1] == "{"]
        )
        assert [(entry["status"], entry["level"]) for entry in log] == [(502, "ERROR")]


@needs_nginx
def test_history_requests_beyond_two_at_once_are_told_to_retry(
    scraped, db: Engine, gunicorn: Gunicorn
) -> None:
    """Two slow history queries take two workers; a third waits for nothing but a 429."""
    with Nginx(f"127.0.0.1:{gunicorn.port}") as nginx:
        url = nginx.base + "/coins/1/history"
        assert status(url) == 200
        with db.connect() as blocker, blocker.begin(), ThreadPoolExecutor(2) as pool:
            blocker.execute(text("LOCK TABLE ranking_entries IN ACCESS EXCLUSIVE MODE"))
            held = [
                pool.submit(requests.get, f"{url}?interval={interval}", timeout=10)
                for interval in ("5m", "1d")
            ]
            waiting = text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND application_name = 'top-coins-api'"
                " AND query LIKE '%date_bin%'"
            )

            def both_wait() -> bool:
                # A connection of its own: a transaction sees pg_stat_activity frozen.
                with db.connect() as watcher:
                    return watcher.scalar(waiting) == 2

            assert wait_for(both_wait, timeout=5)
            answer = exchange(nginx.port, get("/coins/1/history?interval=1h"))
            problem = assert_problem(answer, 429)
            assert answer.headers["retry-after"] == "1"
            assert "retry" in problem["detail"]
            blocker.rollback()
            assert [future.result().status_code for future in held] == [200, 200]
        assert status(url) == 200


@needs_nginx
def test_an_upstream_that_never_answers_is_a_504_problem() -> None:
    with socket.socket() as silent:
        # Connections complete in the kernel's backlog; nothing ever reads or answers them.
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        with Nginx(f"127.0.0.1:{silent.getsockname()[1]}", upstream_timeout="1s") as nginx:
            started = time.monotonic()
            answer = exchange(nginx.port, get("/"), timeout=10)
            waited = time.monotonic() - started
    assert_problem(answer, 504)
    assert 0.9 < waited < 3


# --- what reaches gunicorn --------------------------------------------------------------------

MANY_HEADERS = b"\r\n".join(b"X-Many-%d: yes" % n for n in range(GUNICORN_HEADER_FIELDS + 50))
# Requests gunicorn refuses with an HTML page although nginx reads them fine, each with the
# answer the client gets instead (gunicorn's own answer, or nginx's problem).
GUNICORN_WOULD_REFUSE = {
    "more header lines than gunicorn takes": (get("/healthz", MANY_HEADERS), 200),
    "a control character in a header the API reads": (
        get("/healthz", b"Accept: application/json\x01"),
        400,
    ),
    "a control character in a header the API does not read": (
        get("/healthz", b"X-Other: \x7f"),
        200,
    ),
    "Content-Type twice": (get("/healthz", b"Content-Type: a/b", b"Content-Type: c/d"), 200),
    "a byte outside ASCII in the target": (get("/healthz?q=\xff"), 400),
    "a two-letter method": (get("/", method=b"GE"), 400),
    "a 21-letter method": (get("/", method=b"A" * 21), 400),
    "a 20-letter method": (get("/", method=b"A" * 20), 405),
    "the longest request line": (
        get("/healthz?q=" + "a" * (4096 - len("GET /healthz?q= HTTP/1.1\r\n"))),
        200,
    ),
    "a request line one byte longer": (
        get("/healthz?q=" + "a" * (4097 - len("GET /healthz?q= HTTP/1.1\r\n"))),
        414,
    ),
    "the longest header line": (get("/healthz", b"X-Long: " + b"a" * (4094 - 8)), 200),
    "a header line one byte longer": (get("/healthz", b"X-Long: " + b"a" * (4095 - 8)), 431),
}


@needs_nginx
@pytest.mark.parametrize("case", sorted(GUNICORN_WOULD_REFUSE))
def test_no_request_reaches_gunicorn_that_it_would_refuse_with_html(api: Nginx, case: str) -> None:
    request, code = GUNICORN_WOULD_REFUSE[case]
    answer = exchange(api.port, request)
    assert answer.status == code, answer
    if code >= 400:
        assert_problem(answer, code)
    else:
        assert answer.headers["content-type"] == "application/json"
        assert answer.json() == {"status": "ok"}


@needs_nginx
def test_gunicorn_gets_only_the_headers_the_api_reads_each_once() -> None:
    upstream = EchoUpstream()
    try:
        with Nginx(upstream.address) as nginx:
            answer = exchange(
                nginx.port,
                get(
                    "/healthz",
                    b"Accept: text/csv",
                    b'If-None-Match: W/"abc"',
                    b"User-Agent: probe/1.0",
                    b"X-Request-ID: client-id-1",
                    b"X-Forwarded-For: 203.0.113.7",
                    b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                    b"Cookie: session=1",
                    b"Content-Type: a/b",
                    b"Content-Type: c/d",
                    b"X-Anything: else",
                    b"Accept-Encoding: deflate, GZip;q=0.5, br",
                ),
            )
            bad_id = exchange(
                nginx.port,
                get("/healthz", b"X-Request-ID: has space", b"Accept-Encoding: gzip;q=0, br"),
            )
    finally:
        upstream.stop()
    assert (answer.status, bad_id.status) == (200, 200)
    first, second = upstream.seen
    assert sorted((name.lower(), value) for name, value in first) == [
        ("accept", "text/csv"),
        # Only whether gzip is welcome: the one thing the app's answer depends on.
        ("accept-encoding", "gzip"),
        ("host", "top-coins.test"),
        ("if-none-match", 'W/"abc"'),
        ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ("user-agent", "probe/1.0"),
        ("x-forwarded-for", "203.0.113.7, 127.0.0.1"),
        ("x-request-id", "client-id-1"),
    ]
    # api/request_id.py's rule, applied by nginx too: an unusable id is replaced.
    (replaced,) = [value for name, value in second if name.lower() == "x-request-id"]
    assert REQUEST_ID.fullmatch(replaced)
    # gzip refused by a zero weight: nothing to say.
    assert "accept-encoding" not in {name.lower() for name, _ in second}


def test_every_header_the_api_reads_is_passed_on() -> None:
    """The API's code reads request headers as WSGI ``HTTP_*`` keys or from
    ``request.headers``; each must be one nginx passes (proxy_set_header)."""
    read = set()
    for path in (ROOT / "api").glob("*.py"):
        text = path.read_text()
        read |= {m.replace("_", "-").lower() for m in re.findall(r"\bHTTP_([A-Z0-9_]+)", text)}
        read |= {m.lower() for m in re.findall(r"headers\.get\(\s*\"([^\"]+)\"", text)}
    assert read >= {"x-request-id", "accept"}, "the scan finds what the API reads"
    passed = {
        name.lower()
        for name in re.findall(r"^\s*proxy_set_header\s+(\S+)", frontend.TEMPLATE.read_text(), re.M)
    }
    assert read <= passed, f"not passed to gunicorn: {sorted(read - passed)}"


# --- the public port and the metrics port -----------------------------------------------------


@needs_nginx
def test_metrics_are_served_on_the_metrics_port_only(api: Nginx) -> None:
    for target in ("/metrics", "//metrics", "/%6Detrics", "/./metrics", "/metrics?format=x"):
        for method in (b"GET", b"HEAD", b"POST"):
            answer = exchange(api.port, get(target, method=method))
            assert answer.status == 404, (target, method)
            assert answer.headers["content-type"] == PROBLEM_JSON
            if method != b"HEAD":
                assert_problem(answer, 404)
    scraped = requests.get(api.metrics_base + "/metrics", timeout=10)
    assert scraped.status_code == 200
    assert scraped.headers["Content-Type"].startswith("text/plain")
    assert "flask_http_request_total" in scraped.text
    assert "top_coins_database_up 1.0" in scraped.text
    for target in ("/", "/healthz", "/readyz", "/version", "/metrics/"):
        assert_problem(exchange(api.metrics_port, get(target)), 404)


@needs_nginx
def test_client_connections_are_kept_alive(pod: tuple[Gunicorn, Nginx]) -> None:
    gunicorn, api = pod
    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=5)
    try:
        sockets = []
        for path in ("/healthz", "/readyz", "/?limit=5", "/version"):
            connection.request("GET", path)
            answer = connection.getresponse()
            answer.read()
            assert answer.status == 200, path
            assert answer.getheader("Connection") == "keep-alive"
            sockets.append(connection.sock)
        assert sockets[0] is not None
        assert all(sock is sockets[0] for sock in sockets), "reconnected"
    finally:
        connection.close()
    # What nginx spares the clients: gunicorn's sync workers close after every answer.
    alone = requests.get(gunicorn.base + "/healthz", timeout=5)
    assert alone.headers["Connection"] == "close"


@needs_nginx
def test_conditional_and_compressed_answers_pass_through(api: Nginx) -> None:
    plain = requests.get(api.base + "/?limit=50", headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200
    assert "Content-Encoding" not in plain.headers
    etag = plain.headers["ETag"]
    again = requests.get(
        api.base + "/?limit=50", headers={"If-None-Match": etag, "Accept-Encoding": "identity"}
    )
    assert (again.status_code, again.content) == (304, b"")
    # Compressed by the app, once: a representation of its own, with a strong ETag of its own.
    packed = requests.get(api.base + "/?limit=50", headers={"Accept-Encoding": "gzip"}, stream=True)
    raw = packed.raw.read()
    assert packed.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(raw) == plain.content, "compressed twice"
    # One Vary, the app's: its answer depends on both.
    assert packed.raw.headers.getlist("Vary") == ["Accept, Accept-Encoding"]
    assert plain.raw.headers.getlist("Vary") == ["Accept, Accept-Encoding"]
    packed_etag = packed.headers["ETag"]
    assert packed_etag != etag
    assert not packed_etag.startswith("W/")
    conditional = requests.get(
        api.base + "/?limit=50",
        headers={"If-None-Match": packed_etag, "Accept-Encoding": "gzip"},
    )
    assert conditional.status_code == 304
    # Content negotiation reaches the app.
    csv = requests.get(api.base + "/?limit=3", headers={"Accept": "text/csv"})
    assert csv.headers["Content-Type"].startswith("text/csv")
    assert csv.text.splitlines()[0] == "Rank,Symbol,Price USD"
    # The app's own problems pass untouched, details and all.
    invalid = requests.get(api.base + "/?limit=0")
    assert invalid.status_code == 400
    assert invalid.headers["Content-Type"] == PROBLEM_JSON
    assert invalid.json()["invalid_params"][0]["name"] == "limit"
    assert invalid.headers["X-Content-Type-Options"] == "nosniff", "once, from nginx"


# --- the micro-cache of GET / -----------------------------------------------------------------

CACHE_STATUS = "X-Cache-Status"
COINS = [("BTC", "Bitcoin", 1, "symbol"), ("ETH", "Ethereum", 1027, "symbol")]
QUOTES = [(1, "BTC", "Bitcoin", 1, "96000.5"), (1027, "ETH", "Ethereum", 2, "2600.25")]


def cached_for() -> float:
    """The longest an entry is served: nginx counts its validity in whole seconds, so "1s"
    lasts until the clock's next second but one."""
    code, validity = directive("proxy_cache_valid").split()
    assert code == "200", "only the list is cached"
    return seconds(validity) + 1


def unique(target: str) -> str:
    """``target`` with a parameter the app ignores: a query no other request asked, so the test
    starts from an empty cache entry on the module's shared pod."""
    return f"{target}&unique={uuid.uuid4().hex}"


def ask(url: str, request_id: str, method: str = "GET", **headers: str) -> requests.Response:
    """One request carrying its own id, which gunicorn's access log names if it reaches it."""
    sent = {"Accept-Encoding": "identity", **headers, "X-Request-ID": request_id}
    return requests.request(method, url, headers=sent, timeout=5)


def reached_gunicorn(server: Gunicorn, request_ids: list[str]) -> list[str]:
    """Which of these requests gunicorn answered, from its access log, once a marker request
    sent after them all has been logged there too."""
    marker = f"marker-{uuid.uuid4().hex}"
    assert ask(server.base + "/healthz", marker).status_code == 200

    def logged() -> list[str]:
        lines = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
        return [line["request_id"] for line in lines if line.get("logger") == "gunicorn.access"]

    assert wait_for(lambda: marker in logged(), timeout=5), server.output()
    return [request_id for request_id in logged() if request_id in request_ids]


@pytest.fixture
def empty_pod(
    fresh_database: Callable[[], str],
    provider_server: FakeProviders,
    tmp_path: Path,
) -> Iterator[tuple[Store, Gunicorn, Nginx]]:
    """A pod of its own, on a migrated database without any snapshot, and a writer for them.
    Its workers poll for snapshots every second, should an announcement be missed."""
    url = fresh_database()
    command.upgrade(alembic_config(url), "head")
    engine = make_engine(database_url({"DATABASE_URL": url}), application_name="tests")
    server = Gunicorn(
        {**environment(url, provider_server), "API_REFRESH_SECONDS": "1"}, tmp_path / "gunicorn.log"
    )
    try:
        server.wait_until_up()
        with Nginx(f"127.0.0.1:{server.port}") as nginx:
            yield Store(engine), server, nginx
    finally:
        server.stop()
        engine.dispose()


@needs_nginx
def test_a_repeated_request_is_answered_from_the_cache_without_gunicorn(
    pod: tuple[Gunicorn, Nginx],
) -> None:
    server, api = pod
    url = api.base + unique("/?limit=7")
    first = ask(url, "cache-first")
    second = ask(url, "cache-second")
    head = ask(url, "cache-head", method="HEAD")
    assert [first.status_code, second.status_code, head.status_code] == [200, 200, 200]
    assert [first.headers[CACHE_STATUS], second.headers[CACHE_STATUS]] == ["MISS", "HIT"]
    # HEAD is asked of gunicorn as a GET, so it shares the entry.
    assert head.headers[CACHE_STATUS] == "HIT"
    assert second.content == first.content
    assert len(second.json()["data"]) == 7
    for name in ("ETag", "Last-Modified", "Content-Type", "Vary", "Cache-Control"):
        assert second.headers[name] == first.headers[name], name
    assert head.headers["Content-Length"] == str(len(first.content))
    # Each answer carries its own request's id, never the one of the request that filled it.
    assert [a.headers["X-Request-ID"] for a in (first, second, head)] == [
        "cache-first",
        "cache-second",
        "cache-head",
    ]
    assert reached_gunicorn(server, ["cache-first", "cache-second", "cache-head"]) == [
        "cache-first"
    ]


@needs_nginx
def test_answers_from_the_cache_are_logged_by_nginx_once(pod: tuple[Gunicorn, Nginx]) -> None:
    """Every request is logged once: by gunicorn if it answered, else by nginx."""
    server, api = pod
    url = api.base + unique("/?limit=3")
    ids = ["logged-miss", "logged-hit", "logged-304"]
    filled = ask(url, ids[0])
    assert ask(url, ids[1]).headers[CACHE_STATUS] == "HIT"
    assert ask(url, ids[2], **{"If-None-Match": filled.headers["ETag"]}).status_code == 304
    assert reached_gunicorn(server, ids) == ids[:1]
    lines = [json.loads(line) for line in api.output().splitlines() if line.startswith("{")]
    logged = {line["request_id"]: line for line in lines if line["request_id"] in ids}
    assert sorted(logged) == sorted(ids[1:])
    for request_id, status in ((ids[1], 200), (ids[2], 304)):
        line = logged[request_id]
        assert (line["status"], line["cache"], line["level"]) == (status, "HIT", "INFO")
        assert line["request"].startswith("GET /?limit=3&unique=")


CACHE_KEY_PARTS = {
    "the query": ({"target": "/?limit=5&format=csv"}, {"target": "/?format=csv&limit=5"}),
    "Accept": ({"Accept": "text/csv"}, {"Accept": "application/json"}),
    "Accept-Encoding": ({"Accept-Encoding": "gzip"}, {"Accept-Encoding": "identity"}),
}


@needs_nginx
@pytest.mark.parametrize("part", sorted(CACHE_KEY_PARTS))
def test_each_query_accept_and_encoding_is_an_entry_of_its_own(api: Nginx, part: str) -> None:
    one, other = CACHE_KEY_PARTS[part]
    nonce = uuid.uuid4().hex

    def fetch(variant: dict[str, str]) -> requests.Response:
        headers = {"Accept-Encoding": "identity", **variant}
        target = headers.pop("target", "/?limit=5")
        return requests.get(
            f"{api.base}{target}&unique={nonce}", headers=headers, timeout=5, stream=True
        )

    statuses = [fetch(variant).headers[CACHE_STATUS] for variant in (one, other, one, other)]
    assert statuses == ["MISS", "MISS", "HIT", "HIT"]


@needs_nginx
def test_compressed_and_plain_answers_are_cached_apart_whatever_the_wording(api: Nginx) -> None:
    url = api.base + unique("/?limit=20")

    def fetch(accept_encoding: str) -> tuple[str, bytes, str | None]:
        answer = requests.get(
            url, headers={"Accept-Encoding": accept_encoding}, stream=True, timeout=5
        )
        assert answer.status_code == 200
        assert answer.raw.headers.getlist("Vary") == ["Accept, Accept-Encoding"]
        return (
            answer.headers[CACHE_STATUS],
            answer.raw.read(),
            answer.headers.get("Content-Encoding"),
        )

    plain_status, plain, plain_coding = fetch("identity")
    packed_status, packed, packed_coding = fetch("gzip, deflate")
    assert (plain_status, plain_coding) == ("MISS", None)
    assert (packed_status, packed_coding) == ("MISS", "gzip")
    assert gzip.decompress(packed) == plain, "compressed once, by the app"
    # Another wording of "gzip welcome" is the same entry; a refusal gets the plain one.
    assert fetch("br;q=1.0, GZIP;q=0.8") == ("HIT", packed, "gzip")
    assert fetch("gzip;q=0, deflate") == ("HIT", plain, None)
    assert fetch("") == ("HIT", plain, None)


@needs_nginx
def test_conditional_requests_get_304_from_the_cache(pod: tuple[Gunicorn, Nginx]) -> None:
    server, api = pod
    url = api.base + unique("/?limit=4")
    filled = ask(url, "conditional-fill", **{"If-None-Match": '"an-older-list"'})
    # A conditional request that finds no entry fills one: gunicorn is asked for the whole list.
    assert (filled.status_code, filled.headers[CACHE_STATUS]) == (200, "MISS")
    by_tag = ask(url, "conditional-etag", **{"If-None-Match": filled.headers["ETag"]})
    by_date = ask(url, "conditional-date", **{"If-Modified-Since": filled.headers["Last-Modified"]})
    changed = ask(url, "conditional-other", **{"If-None-Match": '"an-older-list"'})
    for answer in (by_tag, by_date):
        assert (answer.status_code, answer.content) == (304, b"")
        assert answer.headers[CACHE_STATUS] == "HIT"
        assert answer.headers["ETag"] == filled.headers["ETag"]
    assert (changed.status_code, changed.headers[CACHE_STATUS]) == (200, "HIT")
    assert changed.content == filled.content
    ids = ["conditional-fill", "conditional-etag", "conditional-date", "conditional-other"]
    assert reached_gunicorn(server, ids) == ["conditional-fill"]


NEVER_CACHED = {
    "/healthz": ("GET", "/healthz", 200),
    "/readyz": ("GET", "/readyz", 200),
    "/version": ("GET", "/version", 200),
    "OPTIONS /": ("OPTIONS", "/", 204),
    "a bad limit": ("GET", "/?limit=0", 400),
    "an unacceptable Accept": ("GET", "/?limit=5", 406),
}


@needs_nginx
@pytest.mark.parametrize("case", sorted(NEVER_CACHED))
def test_probes_version_and_errors_are_never_cached(pod: tuple[Gunicorn, Nginx], case: str) -> None:
    server, api = pod
    method, target, code = NEVER_CACHED[case]
    accept = "image/png" if code == 406 else "*/*"
    ids = [f"never-{uuid.uuid4().hex}" for _ in range(3)]
    answers = [ask(api.base + target, request_id, method, Accept=accept) for request_id in ids]
    assert [answer.status_code for answer in answers] == [code] * 3
    assert {answer.headers.get(CACHE_STATUS, "none") for answer in answers} <= {"MISS", "none"}
    assert reached_gunicorn(server, ids) == ids


@needs_nginx
def test_metrics_are_never_cached(pod: tuple[Gunicorn, Nginx]) -> None:
    server, api = pod
    ids = [f"metrics-{n}" for n in range(3)]
    answers = [ask(api.metrics_base + "/metrics", request_id) for request_id in ids]
    assert [answer.status_code for answer in answers] == [200] * 3
    assert all(CACHE_STATUS not in answer.headers for answer in answers)
    assert reached_gunicorn(server, ids) == ids


@needs_nginx
def test_no_data_yet_is_not_cached(empty_pod: tuple[Store, Gunicorn, Nginx]) -> None:
    store, server, api = empty_pod
    ids = ["no-data-1", "no-data-2"]
    answers = [ask(api.base + "/?limit=2", request_id) for request_id in ids]
    assert [(a.status_code, a.headers[CACHE_STATUS]) for a in answers] == [(503, "MISS")] * 2
    assert answers[0].headers["Content-Type"] == PROBLEM_JSON
    assert reached_gunicorn(server, ids) == ids
    store.ranking(COINS)
    store.prices(QUOTES)
    # Served as soon as the workers have loaded it: no 503 was kept.
    listed = wait_for(lambda: requests.get(api.base + "/?limit=2", timeout=5).status_code == 200, 5)
    assert listed, server.output()


@needs_nginx
def test_a_new_snapshot_is_served_within_the_cache_time_and_the_swap_time(
    empty_pod: tuple[Store, Gunicorn, Nginx],
) -> None:
    store, server, api = empty_pod
    store.ranking(COINS)
    store.prices(QUOTES)
    url = api.base + "/?limit=2"

    def served() -> tuple[int, str] | None:
        answer = requests.get(url, timeout=5)
        if answer.status_code != 200:
            return None
        return answer.json()["meta"]["ranking"]["run_id"], answer.headers[CACHE_STATUS]

    assert wait_for(served, timeout=10), server.output()
    old_run = served()
    assert old_run is not None
    new_run = store.ranking(list(reversed(COINS)))
    committed = time.monotonic()
    seen = []
    while (answer := served()) is None or answer[0] != new_run:
        seen.append(answer)
        assert time.monotonic() - committed < 10, seen
        time.sleep(0.02)
    took = time.monotonic() - committed
    # The entry made just before the commit was served on: the cache was in the way.
    assert (old_run[0], "HIT") in seen
    # Workers swap within a second, announced by NOTIFY or at their latest by their poll
    # (API_REFRESH_SECONDS in empty_pod), plus their query and rendering.
    swap = 1 + 0.5
    assert took < swap + cached_for(), f"{took:.2f} s"


@needs_nginx
def test_while_gunicorn_is_down_the_last_cached_list_is_served(
    scraped: None, gunicorn: Gunicorn
) -> None:
    with Nginx(f"127.0.0.1:{gunicorn.port}") as nginx:
        assert wait_for(lambda: status(nginx.base + "/readyz") == 200, timeout=10)
        url = nginx.base + "/?limit=3"
        filled = requests.get(url, timeout=5)
        assert (filled.status_code, filled.headers[CACHE_STATUS]) == (200, "MISS")
        gunicorn.stop()
        time.sleep(cached_for())  # expired: nginx asks gunicorn again, and fails
        kept = requests.get(url, timeout=5)
        readiness = exchange(nginx.port, get("/readyz"))
        log = [json.loads(line) for line in nginx.output().splitlines() if line.startswith("{")]
    assert (kept.status_code, kept.headers[CACHE_STATUS]) == (200, "STALE")
    assert kept.content == filled.content
    # The probe is never answered from the cache: the pod leaves the Service.
    assert_problem(readiness, 502)
    stale_line = next(line for line in log if line["status"] == 200)
    assert (stale_line["cache"], stale_line["level"]) == ("STALE", "WARNING")


def test_the_cache_fits_in_the_pods_scratch_volume() -> None:
    """The cache lives under NGINX_TEMP, the pod's emptyDir: past its sizeLimit the kubelet
    evicts the pod. Half of it stays for the temporary files of answers nginx buffers."""
    (cache_path,) = re.findall(
        r"^\s*proxy_cache_path\s+([^;]+);", frontend.TEMPLATE.read_text(), re.M
    )
    assert cache_path.split()[0] == '"${NGINX_TEMP}/cache"'
    max_size = re.search(r"\bmax_size=(\d+)m\b", cache_path)
    assert max_size is not None, cache_path
    deployment = yaml.safe_load((ROOT / "k8s" / "base" / "api-deployment.yaml").read_text())
    pod_spec = deployment["spec"]["template"]["spec"]
    (nginx,) = [c for c in pod_spec["containers"] if c["name"] == "nginx"]
    temp = next(e["value"] for e in nginx["env"] if e["name"] == "NGINX_TEMP")
    (mount,) = [m for m in nginx["volumeMounts"] if m["mountPath"] == temp]
    (volume,) = [v for v in pod_spec["volumes"] if v["name"] == mount["name"]]
    size_limit = volume["emptyDir"]["sizeLimit"]
    assert size_limit.endswith("Mi"), size_limit
    assert int(max_size.group(1)) <= int(size_limit.removesuffix("Mi")) / 2


# --- bin/local --------------------------------------------------------------------------------


def start_bin_local(fresh_database, log: Path, **settings: str) -> subprocess.Popen[bytes]:
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.endswith(("_API_KEY", "_BASE_URL"))
    }
    environment.update(
        DATABASE_URL=fresh_database(),
        WEB_CONCURRENCY="1",
        GUNICORN_ACCESS_LOG="",
        # Nothing to wait for: the fakes answer at once.
        PRICES_INTERVAL_SECONDS="3600",
        RANKS_INTERVAL_SECONDS="3600",
        **settings,
    )
    # Appending, as for tests.frontend.Nginx: nginx's access log reopens /dev/stdout.
    with log.open("ab") as output:
        return subprocess.Popen(
            ["bin/local"],
            cwd=ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_bin_local(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


@needs_nginx
def test_bin_local_serves_through_nginx_like_the_pod(fresh_database, tmp_path: Path) -> None:
    port, metrics_port = free_ports(2)
    log = tmp_path / "local.log"
    process = start_bin_local(fresh_database, log, PORT=str(port), METRICS_PORT=str(metrics_port))
    try:
        up = wait_for(lambda: status(f"http://127.0.0.1:{port}/readyz") == 200, timeout=90)
        assert up, log.read_text()
        top = requests.get(f"http://127.0.0.1:{port}/?limit=5", timeout=5)
        public_metrics = exchange(port, get("/metrics"))
        metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
    finally:
        stop_bin_local(process)
    assert top.status_code == 200
    assert top.headers["Server"] == "nginx"
    assert len(top.json()["data"]) == 5
    assert_problem(public_metrics, 404)
    assert metrics.status_code == 200
    assert "top_coins_database_up 1.0" in metrics.text
    output = log.read_text()
    assert f"http://localhost:{metrics_port}/metrics" in output
    assert "nginx in front of gunicorn" in output


def test_bin_local_without_nginx_says_so_and_serves_with_gunicorn_alone(
    fresh_database, tmp_path: Path
) -> None:
    (port,) = free_ports(1)
    log = tmp_path / "local.log"
    process = start_bin_local(fresh_database, log, PORT=str(port), NGINX="")
    try:
        up = wait_for(lambda: status(f"http://127.0.0.1:{port}/readyz") == 200, timeout=90)
        assert up, log.read_text()
        top = requests.get(f"http://127.0.0.1:{port}/?limit=5", timeout=5)
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    finally:
        stop_bin_local(process)
    assert top.status_code == 200
    assert "nginx" not in top.headers.get("Server", "")
    assert metrics.status_code == 200, "gunicorn alone serves /metrics on its one port"
    assert "nginx or envsubst not found" in log.read_text()
