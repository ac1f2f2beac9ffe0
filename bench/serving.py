"""The serving rows of the performance table, in one run: ``GET /?limit=200`` from four servers.

Usage: .venv/bin/python -m bench.serving [--rounds 5] [--seconds 5] [--connections 16]

The four answer the same bytes, each on a filled database where it needs one:

- the API pod: nginx with the project's template (k8s/base/api-nginx.conf.template, micro-cache
  and all) in front of gunicorn, as the pod runs them;
- bare gunicorn: the API alone, request metrics on;
- minimal Flask: the smallest Flask route serving the same bytes, same gunicorn settings
  (bench/minimal_app.py);
- nginx static: nginx serving the same bytes from a file, with the template's worker and
  keep-alive settings.

All four run throughout. Each round measures each in turn with wrk (one thread, keep-alive,
after a 1 s warm-up), starting with a different one every round, so that drift on a noisy
machine hits all alike. Reported are the medians over the rounds (requests per second, wrk's
p50 and p99 latency) and the ratios the targets are set on: bare gunicorn / minimal Flask
(>= 90 %: what the API costs over Flask itself), API pod / nginx static (>= 50 %: what proxying,
cache lookups and logging cost over nginx's cheapest answer), and the pod's p99 (<= 3 ms).
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass

import requests

from bench.common import (
    Measurement,
    filled_database,
    gunicorn,
    measure,
    nginx_in_front,
    nginx_static,
)

PATH = "/?limit=200"
ROUNDS, SECONDS, CONNECTIONS = 5, 5, 16
ROWS = {
    "pod": "API pod (nginx in front)",
    "gunicorn": "bare gunicorn",
    "minimal": "minimal Flask",
    "static": "nginx static",
}
# The ratios the issue sets targets on: (numerator, denominator, lowest acceptable).
RATIO_TARGETS = (("gunicorn", "minimal", 0.90), ("pod", "static", 0.50))
P99_TARGET = 0.003  # seconds, the pod at 16 connections
# GET / answers counted by the app's request metrics, per label set, summed over the workers.
TOP_LIST_COUNT = re.compile(
    r'^flask_http_request_duration_seconds_count\{[^}]*endpoint="top\.top_list"[^}]*\} (\S+)$',
    re.MULTILINE,
)


def answered_by_gunicorn(metrics_url: str) -> float:
    """How many ``GET /`` the gunicorn behind nginx has answered: what the cache let through."""
    text = requests.get(metrics_url, timeout=10).text
    return sum(float(count) for count in TOP_LIST_COUNT.findall(text))


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


@dataclass(frozen=True)
class Serving:
    """Every round's wrk figures per server, and how much of the pod's load reached gunicorn."""

    rounds: int
    seconds: int
    connections: int
    body_size: int
    content_type: str
    runs: Mapping[str, tuple[Measurement, ...]]
    requested: float
    through: float

    @property
    def medians(self) -> dict[str, Measurement]:
        return {
            name: Measurement(
                statistics.median(m.rate for m in runs),
                statistics.median(m.p50 for m in runs),
                statistics.median(m.p99 for m in runs),
            )
            for name, runs in self.runs.items()
        }

    def ratio(self, numerator: str, denominator: str) -> float:
        medians = self.medians
        return medians[numerator].rate / medians[denominator].rate


def run(
    rounds: int = ROUNDS,
    seconds: int = SECONDS,
    connections: int = CONNECTIONS,
    access_log: bool = False,
    log: Callable[[str], None] = print,
) -> Serving:
    with filled_database() as url, ExitStack() as servers:
        env = {"DATABASE_URL": url}

        def start(app: str, app_env: dict[str, str]) -> str:
            return servers.enter_context(gunicorn(app, app_env, access_log=access_log))

        bare = start("api:create_app()", env)
        # wrk asks without Accept-Encoding: the plain body.
        answer = requests.get(bare + PATH, headers={"Accept-Encoding": "identity"}, timeout=5)
        answer.raise_for_status()
        body, content_type = answer.content, answer.headers["Content-Type"]
        body_file = servers.enter_context(tempfile.NamedTemporaryFile(suffix=".json"))
        body_file.write(body)
        body_file.flush()
        minimal = start("bench.minimal_app:app", {**env, "BENCH_BODY_FILE": body_file.name})
        behind_pod = start("api:create_app()", env)
        pod = servers.enter_context(nginx_in_front(behind_pod.removeprefix("http://")))
        static = servers.enter_context(nginx_static(body, content_type))
        bases = {"pod": pod.base, "gunicorn": bare, "minimal": minimal, "static": static}
        for name, base in bases.items():
            served = requests.get(base + PATH, headers={"Accept-Encoding": "identity"}, timeout=5)
            assert served.content == body, f"{name} served different bytes"

        results: dict[str, list[Measurement]] = {name: [] for name in bases}
        requested = through = 0.0
        names = list(bases)
        for round_ in range(rounds):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                target = bases[name] + PATH
                measure(target, 1, connections)  # warm-up (and, for the pod, the cache)
                before = answered_by_gunicorn(pod.metrics_base + "/metrics")
                result = measure(target, seconds, connections)
                if name == "pod":
                    requested += result.rate * seconds
                    through += answered_by_gunicorn(pod.metrics_base + "/metrics") - before
                results[name].append(result)
                log(
                    f"round {round_ + 1} {ROWS[name]:25s} {result.rate:8.0f} req/s"
                    f"  p50 {milliseconds(result.p50)}  p99 {milliseconds(result.p99)}"
                )
    return Serving(
        rounds,
        seconds,
        connections,
        len(body),
        content_type,
        {name: tuple(runs) for name, runs in results.items()},
        requested,
        through,
    )


def report(serving: Serving) -> None:
    medians = serving.medians
    print()
    print(
        f"GET {PATH}: {serving.body_size} bytes of {serving.content_type}, the same from all four;"
        f" wrk -t1 -c{serving.connections}, {serving.rounds} rounds of {serving.seconds} s"
    )
    print(f"{'':25s} {'median req/s':>12s} {'p50':>9s} {'p99':>9s}  req/s by round")
    for name, median in medians.items():
        print(
            f"{ROWS[name]:25s} {median.rate:12.0f} {milliseconds(median.p50):>9s}"
            f" {milliseconds(median.p99):>9s}  {[round(m.rate) for m in serving.runs[name]]}"
        )
    print(
        f"gunicorn behind the pod's nginx answered {serving.through:.0f} of"
        f" ~{serving.requested:.0f} requests; nginx's micro-cache answered the rest"
    )
    for numerator, denominator, goal in RATIO_TARGETS:
        ratio = serving.ratio(numerator, denominator)
        label = f"{ROWS[numerator]} / {ROWS[denominator]}:"
        print(f"{label:50s} {ratio:6.1%}  (target >= {goal:.0%})  {verdict(ratio >= goal)}")
    p99 = medians["pod"].p99
    label = f"{ROWS['pod']} p99 at {serving.connections} connections:"
    print(
        f"{label:50s} {milliseconds(p99)}  (target <= {milliseconds(P99_TARGET)})"
        f"  {verdict(p99 <= P99_TARGET)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--seconds", type=int, default=SECONDS)
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument(
        "--access-log", action="store_true", help="keep gunicorn's JSON access log on (all three)"
    )
    args = parser.parse_args()
    report(run(args.rounds, args.seconds, args.connections, args.access_log))


if __name__ == "__main__":
    main()
