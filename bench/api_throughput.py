"""``GET /?limit=200`` throughput of the API against a minimal Flask route, same gunicorn.

Usage: .venv/bin/python -m bench.api_throughput [--rounds 5] [--seconds 5]

Runs alternate baseline/API rounds so drift on a noisy machine hits both alike, and
reports the medians and their ratio (target: API >= 90 % of the baseline).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import requests

from bench.common import filled_database, gunicorn, wrk

PATH = "/?limit=200"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--access-log", action="store_true", help="keep gunicorn's JSON access log on (both apps)"
    )
    args = parser.parse_args()

    with filled_database() as url, tempfile.NamedTemporaryFile(suffix=".json") as body_file:
        env = {"DATABASE_URL": url}
        with gunicorn("api:create_app()", env) as served_by:
            body = requests.get(served_by + PATH, timeout=5).content
        body_file.write(body)
        body_file.flush()
        baseline_env = {**env, "BENCH_BODY_FILE": body_file.name}
        results: dict[str, list[float]] = {"baseline": [], "api": []}
        for round_ in range(1, args.rounds + 1):
            for name, app, app_env in (
                ("baseline", "bench.minimal_app:app", baseline_env),
                ("api", "api:create_app()", env),
            ):
                with gunicorn(app, app_env, access_log=args.access_log) as base:
                    served = requests.get(base + PATH, timeout=5).content
                    assert served == body, f"{name} served different bytes"
                    wrk(base + PATH, 1, args.connections)  # warm-up
                    rate = wrk(base + PATH, args.seconds, args.connections)
                results[name].append(rate)
                print(f"round {round_} {name:8s} {rate:9.0f} req/s")
    baseline = statistics.median(results["baseline"])
    api = statistics.median(results["api"])
    print(f"body: {len(body)} bytes")
    print(f"median baseline: {baseline:.0f} req/s  runs: {[round(r) for r in results['baseline']]}")
    print(f"median api:      {api:.0f} req/s  runs: {[round(r) for r in results['api']]}")
    print(f"api / baseline:  {api / baseline:.1%}  (target >= 90 %)")


if __name__ == "__main__":
    main()
