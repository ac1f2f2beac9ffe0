"""Every row of the performance table from one run, so that the figures compare like with like.

Usage: .venv/bin/python -m bench [--quick] [--rounds 5] [--seconds 5] [--runs N] [--coins 200 5000]

Runs bench.serving, bench.snapshot_latency, bench.scraper_startup and bench.history in turn
(history last: filling 50 million rows would disturb the others), each printing what it prints
alone, then one table: each row's figure, its target, and whether it was met. The ratios show
the two medians they come from; history rows show every ranking size measured, and are judged
at 5000 coins, where their targets are set (the poll at every size: "flat" is for the eye).
``--quick`` is a smoke run: fewer rounds and runs, history at 200 coins only (its rows then go
unjudged).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench import history, scraper_startup, serving, snapshot_latency
from bench.common import ROOT
from devtools.postgres import find_server

# The history rows' targets, set for DAYS of history at AT_COINS coins.
AT_COINS = 5000
POLL_MS = 0.2
TOP_COINS_MS = 25.0
PRUNE_MS = 100.0
DISK_BYTES = 3e9
# HISTORY_BUDGET_SECONDS' default: a slower history query is a 503.
HISTORY_BUDGET_MS = 2000.0


@dataclass(frozen=True)
class Row:
    figure: str
    measured: str
    target: str
    met: bool | None  # None: not measured where the target is set


def verdict(met: bool | None) -> str:
    return "not judged" if met is None else "met" if met else "MISSED"


def ms(value: float, digits: int = 0) -> str:
    return f"{value:.{digits}f} ms"


def per_size(figures: Sequence[history.History], show: Callable[[history.History], str]) -> str:
    return "; ".join(f"{h.coins}: {show(h)}" for h in figures)


def at_target(
    figures: Sequence[history.History], judge: Callable[[history.History], bool]
) -> bool | None:
    judged = [judge(h) for h in figures if h.coins == AT_COINS]
    return all(judged) if judged else None


def history_figures(figures: history.History) -> str:
    """The slowest coin at each interval: 1h is 168 points, 1m 10 000."""
    slowest: dict[str, float] = {}
    for label, value in figures.history.items():
        interval = label.split()[0]
        slowest[interval] = max(value, slowest.get(interval, 0.0))
    return ", ".join(f"{k} {ms(v, 1)}" for k, v in slowest.items())


def rows(
    served: serving.Serving,
    latency: snapshot_latency.SnapshotLatency,
    histories: Sequence[history.History],
    startup: scraper_startup.Startup,
) -> list[Row]:
    medians = served.medians
    table = []
    for numerator, denominator, goal in serving.RATIO_TARGETS:
        ratio = served.ratio(numerator, denominator)
        table.append(
            Row(
                f"{serving.ROWS[numerator]} / {serving.ROWS[denominator]}"
                f" (req/s, GET {serving.PATH}, {served.connections} connections)",
                f"{ratio:.1%} = {medians[numerator].rate:.0f} / {medians[denominator].rate:.0f}",
                f">= {goal:.0%}",
                ratio >= goal,
            )
        )
    pod = medians["pod"]
    table.append(
        Row(
            f"{serving.ROWS['pod']} p99 at {served.connections} connections",
            f"{ms(pod.p99 * 1000, 2)} (p50 {ms(pod.p50 * 1000, 2)})",
            f"<= {ms(serving.P99_TARGET * 1000)}",
            pod.p99 <= serving.P99_TARGET,
        )
    )
    median = latency.median * 1000
    table.append(
        Row(
            "commit of a snapshot -> every worker serves it (median)",
            f"{ms(median)} (max {ms(max(latency.latencies) * 1000)})",
            f"<= {snapshot_latency.TARGET_MS} ms",
            median <= snapshot_latency.TARGET_MS,
        )
    )
    table += [
        Row(
            f"refresh poll (latest_runs) at {history.DAYS} days of history, by coins",
            per_size(histories, lambda h: ms(h.poll, 3)),
            f"<= {POLL_MS} ms, flat",
            all(h.poll <= POLL_MS for h in histories),
        ),
        Row(
            f"top_coins view at {history.DAYS} days of history, by coins",
            per_size(histories, lambda h: ms(h.top_coins, 1)),
            f"<= {TOP_COINS_MS:.0f} ms at {AT_COINS}",
            at_target(histories, lambda h: h.top_coins <= TOP_COINS_MS),
        ),
        Row(
            f"a coin's history over {history.DAYS} days, first request of a snapshot, by coins",
            per_size(histories, history_figures),
            f"within the {HISTORY_BUDGET_MS:.0f} ms budget",
            all(max(h.history.values()) <= HISTORY_BUDGET_MS for h in histories),
        ),
        Row(
            "pruning one day of history, by coins",
            per_size(histories, lambda h: f"{ms(h.prune)}, {h.dead_rows} dead"),
            f"<= {PRUNE_MS:.0f} ms, no dead rows, at {AT_COINS}",
            at_target(histories, lambda h: h.prune <= PRUNE_MS and h.dead_rows == 0),
        ),
        Row(
            f"disk for {history.DAYS} days, by coins",
            per_size(histories, lambda h: f"{h.disk / 1e9:.2f} GB"),
            f"<= {DISK_BYTES / 1e9:.0f} GB at {AT_COINS}",
            at_target(histories, lambda h: h.disk <= DISK_BYTES),
        ),
    ]
    ranks = startup.medians["ranks run"]
    table.append(
        Row(
            "python -m scrapers ranks wall time, 200 coins on loopback",
            ms(ranks),
            f"<= {scraper_startup.TARGET_MS} ms",
            ranks <= scraper_startup.TARGET_MS,
        )
    )
    return table


def print_table(table: Sequence[Row]) -> None:
    cells = [("figure", "measured", "target", "")]
    cells += [(r.figure, r.measured, r.target, verdict(r.met)) for r in table]
    widths = [max(len(cell[i]) for cell in cells) for i in range(4)]
    for cell in cells:
        print("  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)).rstrip())


def log(line: str) -> None:
    print(line, flush=True)


def section(title: str) -> None:
    log(f"\n== {title} ==")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer rounds, 200 coins")
    parser.add_argument("--rounds", type=int, help="serving rounds")
    parser.add_argument("--seconds", type=int, help="seconds per wrk run")
    parser.add_argument("--runs", type=int, help="snapshot and scraper start-up runs")
    parser.add_argument("--coins", type=int, nargs="+", help="history ranking sizes")
    args = parser.parse_args()
    quick = args.quick

    section("serving")
    served = serving.run(
        args.rounds or (2 if quick else serving.ROUNDS),
        args.seconds or (2 if quick else serving.SECONDS),
        log=log,
    )
    serving.report(served)
    section("snapshot latency")
    latency = snapshot_latency.run(args.runs or (3 if quick else snapshot_latency.RUNS), log)
    snapshot_latency.report(latency)
    section("scraper start-up")
    startup = scraper_startup.run(args.runs or (3 if quick else scraper_startup.RUNS))
    scraper_startup.report(startup)
    section("history")
    admin = find_server(ROOT)
    histories = [
        history.measure(admin, coins, history.DAYS, 3 if quick else history.REPEAT, log)
        for coins in args.coins or ((200,) if quick else history.COINS)
    ]
    section("the performance table")
    print_table(rows(served, latency, histories, startup))


if __name__ == "__main__":
    main()
