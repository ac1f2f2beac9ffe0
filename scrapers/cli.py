"""Command line: the two scrape jobs, and small provider clients for checking by hand.

A CronJob starts a fresh interpreter for every run, so modules that only some commands use
are imported where those commands need them.

Exit codes: 0 done (or skipped because another run holds the lock), 1 the run or
call failed, 2 bad usage or configuration.  Failures print one line, no traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from decimal import Decimal

from sqlalchemy.exc import SQLAlchemyError

from topcoins.jsonlogs import configure_logging
from topcoins.models import Source
from topcoins.settings import (
    CoinDeskSettings,
    CoinMarketCapSettings,
    ConfigError,
    CryptoCompareSettings,
    HttpSettings,
    ScraperSettings,
    exports_traces,
)
from topcoins.tracing import configure_tracing
from topcoins.tracing import flush as flush_traces

from .budget import CreditBudget
from .coindesk import CoinDeskClient
from .coinmarketcap import MAX_LISTINGS_LIMIT, CoinMarketCapClient, CoinMarketCapRanking
from .database import database_reason, scraper_engine
from .deadline import Deadline
from .errors import ScrapeError
from .lock import lock_application_name
from .ranking import RankingClient
from .ranks import RanksJob
from .run import Job, Outcome, run_scrape

log = logging.getLogger("scrapers")
# The share of the run's deadline kept for storing a ranking when the id map is slow.
STORE_SHARE = 0.25


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = os.environ if environ is None else environ
    try:
        return int(args.command(args, env))
    except ConfigError as exc:
        print(f"scrapers: configuration error: {exc}", file=sys.stderr)
        return 2
    except ScrapeError as exc:
        print(f"scrapers: {exc}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        log.error("database error: %s", database_reason(exc), extra={"outcome": "failed"})
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception:
        # A bug, not a provider failure: keep the traceback, inside one JSON log line.
        log.exception("unexpected error", extra={"outcome": "failed"})
        return 1


MakeJob = Callable[[ScraperSettings, Mapping[str, str], Deadline], Job]


def _scrape(make_job: MakeJob) -> Callable[..., int]:
    def command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
        configure_logging(env.get("LOG_LEVEL", "INFO"))
        settings = ScraperSettings.from_env(env)
        # One deadline for the whole run: every provider call and every database wait.
        deadline = Deadline.after(
            settings.http.deadline_seconds, grace_seconds=settings.grace_seconds
        )
        job = make_job(settings, env, deadline)
        if exports_traces(env):
            configure_tracing(f"top-coins-scraper-{args.name}", env)
        url = settings.database_url
        engine = scraper_engine(url, application_name=f"scraper-{args.name}", deadline=deadline)
        lock_engine = scraper_engine(
            url, application_name=lock_application_name(job.kind), deadline=deadline
        )
        try:
            report = run_scrape(
                engine,
                lock_engine,
                job,
                retention=timedelta(days=settings.retention_days),
                deadline=deadline,
            )
            if settings.pushgateway_url:
                from .pushgateway import push_run

                push_run(settings.pushgateway_url, report, timeout=settings.http.timeout_seconds)
        finally:
            job.close()
            engine.dispose()
            lock_engine.dispose()
            flush_traces()
        return 1 if report.outcome is Outcome.FAILED else 0

    return command


def _ranks_job(settings: ScraperSettings, env: Mapping[str, str], run: Deadline) -> Job:
    """The chosen provider's key is checked first: its absence is the error to report."""
    deadline = run.at  # one instant for every provider the run talks to
    provider, size = settings.ranking_provider, settings.ranking_size
    if provider is Source.COINMARKETCAP:
        # Its listing names every coin's id: the id map is not needed.
        ranking_settings = CoinMarketCapSettings.from_env(env)
        cmc = CoinMarketCapClient(ranking_settings, settings.http, deadline=deadline)
        budget = CreditBudget(cmc, ranking_settings.credit_floor)
        return RanksJob(CoinMarketCapRanking(cmc), size, budget=budget)
    client: RankingClient
    if provider is Source.COINDESK:
        client = CoinDeskClient(CoinDeskSettings.from_env(env), settings.http, deadline=deadline)
    else:
        from .cryptocompare import CryptoCompareClient

        cc = CryptoCompareSettings.from_env(env)
        client = CryptoCompareClient(cc, settings.http, deadline=deadline)
    cmc_settings = CoinMarketCapSettings.optional(env)
    if cmc_settings is None:
        return RanksJob(client, size)
    # The ranking does without the id map: a slow map must leave time to store the ranking.
    map_deadline = run.leaving(STORE_SHARE)
    cmc = CoinMarketCapClient(cmc_settings, settings.http, deadline=map_deadline)
    budget = CreditBudget(cmc, cmc_settings.credit_floor)
    return RanksJob(client, size, coinmarketcap=cmc, budget=budget)


def _prices_job(settings: ScraperSettings, env: Mapping[str, str], run: Deadline) -> Job:
    from .prices import PricesJob

    cmc_settings = CoinMarketCapSettings.from_env(env)
    client = CoinMarketCapClient(cmc_settings, settings.http, deadline=run.at)
    return PricesJob(client, CreditBudget(client, cmc_settings.credit_floor))


def _cmc_client(env: Mapping[str, str]) -> CoinMarketCapClient:
    configure_logging(env.get("LOG_LEVEL", "WARNING"))
    return CoinMarketCapClient(CoinMarketCapSettings.from_env(env), HttpSettings.from_env(env))


def _cmc_listings(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    client = _cmc_client(env)
    try:
        quotes = client.listings(start=args.start, limit=args.limit, sort=args.sort)
    finally:
        client.close()
    rows = [
        (q.cmc_rank, q.cmc_id, q.symbol, q.name, _plain(q.price_usd), _plain(q.volume_24h))
        for q in quotes.items
    ]
    print(_table(("Rank", "Id", "Symbol", "Name", "Price USD", "Volume 24h USD"), rows))
    print(f"{len(rows)} assets, {quotes.credit_count} credit(s) used")
    return 0


def _cmc_usage(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    client = _cmc_client(env)
    try:
        usage = client.key_info()
    finally:
        client.close()
    reset = usage.reset_at.isoformat() if usage.reset_at else "unknown"
    print(f"credits left this month: {_or_unlimited(usage.credits_left_monthly)}")
    print(f"monthly credit limit:    {_or_unlimited(usage.credit_limit_monthly)}")
    print(f"credits left today:      {_or_unlimited(usage.credits_left_daily)}")
    print(f"month resets at:         {reset}")
    return 0


def _or_unlimited(value: int | None) -> str:
    return "no limit" if value is None else str(value)


def _ranking_top(
    make: Callable[[Mapping[str, str], HttpSettings], RankingClient],
) -> Callable[[argparse.Namespace, Mapping[str, str]], int]:
    def command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
        configure_logging(env.get("LOG_LEVEL", "WARNING"))
        client = make(env, HttpSettings.from_env(env))
        try:
            coins = client.top_by_volume(args.limit).coins
        finally:
            client.close()
        rows = [
            (c.rank, c.symbol, c.name, c.cmc_id, _plain(c.price_usd), _plain(c.volume_24h_usd))
            for c in coins
        ]
        headers = ("Rank", "Symbol", "Name", "CMC id", "Price USD", "Volume 24h USD")
        print(_table(headers, rows))
        return 0

    return command


def _plain(value: Decimal | None) -> str:
    return "" if value is None else format(value, "f")


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers], *[["" if v is None else str(v) for v in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _limit(maximum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.isdigit() or not 1 <= int(text) <= maximum:
            raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {maximum}")
        return int(text)

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scrapers", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    ranks = commands.add_parser(
        "ranks", help="scrape the ranking (RANKING_PROVIDER) into the database"
    )
    ranks.set_defaults(command=_scrape(_ranks_job), name="ranks")
    prices = commands.add_parser("prices", help="scrape CoinMarketCap prices into the database")
    prices.set_defaults(command=_scrape(_prices_job), name="prices")

    cmc = commands.add_parser("cmc", help="ask CoinMarketCap directly")
    cmc_commands = cmc.add_subparsers(required=True, metavar="COMMAND")
    listings = cmc_commands.add_parser("listings", help="/v1/cryptocurrency/listings/latest")
    listings.add_argument("--limit", type=_limit(MAX_LISTINGS_LIMIT), default=10)
    listings.add_argument("--start", type=_limit(1_000_000), default=1)
    listings.add_argument("--sort", choices=("market_cap", "volume_24h"), default="market_cap")
    listings.set_defaults(command=_cmc_listings)
    usage = cmc_commands.add_parser("usage", help="/v1/key/info: credits left (costs none)")
    usage.set_defaults(command=_cmc_usage)

    for name, path, make in (
        ("coindesk", "/asset/v1/top/list", _coindesk),
        ("cryptocompare", "/data/top/totalvolfull", _cryptocompare),
    ):
        provider = commands.add_parser(name, help=f"ask {name} directly")
        provider_commands = provider.add_subparsers(required=True, metavar="COMMAND")
        top = provider_commands.add_parser("top", help=f"{path}, ranked by 24h volume")
        top.add_argument("--limit", type=_limit(5000), default=10)
        top.set_defaults(command=_ranking_top(make))
    return parser


def _coindesk(env: Mapping[str, str], http: HttpSettings) -> RankingClient:
    return CoinDeskClient(CoinDeskSettings.from_env(env), http)


def _cryptocompare(env: Mapping[str, str], http: HttpSettings) -> RankingClient:
    from .cryptocompare import CryptoCompareClient

    return CryptoCompareClient(CryptoCompareSettings.from_env(env), http)
