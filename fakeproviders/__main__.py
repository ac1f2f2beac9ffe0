"""``python -m fakeproviders``: the three fake providers for ``bin/local`` when no real key is set.

The three ``*_BASE_URL=`` lines on stdout are the interface for scripts; logs go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from fakeproviders.server import FakeProviders

DEFAULT_KEY = "fake-key"


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0..65535: {port}")
    return port


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fakeproviders",
        description="Serve fake CoinDesk Data, CryptoCompare and CoinMarketCap APIs on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--coindesk-port", type=_port, default=9103, help="0 picks a free one")
    parser.add_argument("--cryptocompare-port", type=_port, default=9101, help="0 picks a free one")
    parser.add_argument("--coinmarketcap-port", type=_port, default=9102, help="0 picks a free one")
    parser.add_argument(
        "--coindesk-key",
        default=DEFAULT_KEY,
        help=f"value required in 'Authorization: Apikey <key>' (default {DEFAULT_KEY!r})",
    )
    parser.add_argument(
        "--cryptocompare-key",
        default=DEFAULT_KEY,
        help=f"value required in 'Authorization: Apikey <key>' (default {DEFAULT_KEY!r})",
    )
    parser.add_argument(
        "--coinmarketcap-key",
        default=DEFAULT_KEY,
        help=f"value required in X-CMC_PRO_API_KEY (default {DEFAULT_KEY!r})",
    )
    parser.add_argument(
        "--no-drift", action="store_true", help="keep prices and ranking still between requests"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for price and ranking drift")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr, force=True
    )
    # The stop signals are waited for, not handled: a handler setting an Event deadlocks when
    # a second signal (a process group's TERM, then its parent's) lands inside the first one's
    # Event.set.  Blocked before any thread starts, so every thread inherits the mask.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    providers = FakeProviders(
        coindesk_key=args.coindesk_key,
        cryptocompare_key=args.cryptocompare_key,
        coinmarketcap_key=args.coinmarketcap_key,
        host=args.host,
        coindesk_port=args.coindesk_port,
        cryptocompare_port=args.cryptocompare_port,
        coinmarketcap_port=args.coinmarketcap_port,
        drift=not args.no_drift,
        seed=args.seed,
    )
    try:
        providers.start()
    except OSError as exc:
        parser.exit(1, f"fakeproviders: {exc}\n")
    try:
        sys.stdout.write(f"COINDESK_BASE_URL={providers.coindesk_url}\n")
        sys.stdout.write(f"CRYPTOCOMPARE_BASE_URL={providers.cryptocompare_url}\n")
        sys.stdout.write(f"COINMARKETCAP_BASE_URL={providers.coinmarketcap_url}\n")
        sys.stdout.flush()
        signal.sigwait(stop_signals)
    finally:
        providers.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
