"""Wall time of ``python -m scrapers ranks`` at 200 coins on loopback, and what imports cost.

Usage: .venv/bin/python -m bench.scraper_startup [--runs 9]

A CronJob starts a fresh interpreter every minute, so start-up is part of every run. Each
round, in alternating order, times (medians reported):

- ``python -c pass``: the interpreter alone, the floor;
- importing ``scrapers.cli`` as ``python -m scrapers`` does (the garbage collector off, then
  the imported objects frozen): what the imports cost on top of the interpreter;
- ``python -m scrapers ranks``: a whole ranking run against the fake providers (the id
  map already fetched, as in steady state), with its own ``duration_seconds``.

Target: the whole run in <= 300 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

from bench.common import ROOT, migrated_database
from devtools.postgres import drop_database, find_server
from fakeproviders import FakeProviders

RUNS = 9
TARGET_MS = 300  # the median whole run
COMMANDS = {
    "interpreter": ["-c", "pass"],
    "imports": ["-c", "import gc; gc.disable(); import scrapers.cli; gc.freeze(); gc.enable()"],
    "ranks run": ["-m", "scrapers", "ranks"],
}


def timed(args: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    took = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stdout}{done.stderr}")
    return took, done


def run_duration(stdout: str) -> float:
    for line in stdout.splitlines():
        record = json.loads(line)
        if record.get("logger") == "scrapers.run":
            return float(record["duration_seconds"]) * 1000
    raise RuntimeError("the run logged no outcome")


@dataclass(frozen=True)
class Startup:
    """Each command's wall times in ms, and the runs' own ``duration_seconds`` in ms."""

    runs: int
    times: Mapping[str, tuple[float, ...]]
    inside: tuple[float, ...]

    @property
    def medians(self) -> dict[str, float]:
        return {label: statistics.median(values) for label, values in self.times.items()}


def run(runs: int = RUNS) -> Startup:
    admin = find_server(ROOT)
    name = "topcoins_bench_startup"
    url = migrated_database(admin, name)
    times: dict[str, list[float]] = {label: [] for label in COMMANDS}
    inside: list[float] = []
    try:
        with FakeProviders(coindesk_key="bench", coinmarketcap_key="bench") as fake:
            env = {
                "PATH": os.environ.get("PATH", ""),
                "DATABASE_URL": url,
                "COINDESK_API_KEY": "bench",
                "COINDESK_BASE_URL": fake.coindesk_url,
                "COINMARKETCAP_API_KEY": "bench",
                "COINMARKETCAP_BASE_URL": fake.coinmarketcap_url,
                "LOG_LEVEL": "INFO",
            }
            timed(COMMANDS["ranks run"], env)  # the id map, fetched once a day
            labels = list(COMMANDS)
            for round_ in range(runs):
                for label in labels[round_ % 3 :] + labels[: round_ % 3]:
                    took, done = timed(COMMANDS[label], env)
                    times[label].append(took)
                    if label == "ranks run":
                        inside.append(run_duration(done.stdout))
    finally:
        drop_database(admin, name)
    return Startup(runs, {label: tuple(values) for label, values in times.items()}, tuple(inside))


def report(startup: Startup) -> None:
    medians = startup.medians
    print(f"{startup.runs} rounds, medians (ms):")
    for label, median in medians.items():
        print(f"  {label:12s} {median:6.0f}   {[round(v) for v in startup.times[label]]}")
    print(f"  imports on top of the interpreter: {medians['imports'] - medians['interpreter']:.0f}")
    print(f"  the run itself (duration_seconds): {statistics.median(startup.inside):.0f}")
    verdict = "met" if medians["ranks run"] <= TARGET_MS else "not met"
    print(
        f"python -m scrapers ranks: {medians['ranks run']:.0f} ms (target <= {TARGET_MS} ms)"
        f" {verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=RUNS)
    args = parser.parse_args()
    report(run(args.runs))


if __name__ == "__main__":
    main()
