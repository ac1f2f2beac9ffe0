"""Configuration, read once from the environment into frozen dataclasses.

Each process builds only the settings it needs (the API needs no provider key, the
provider CLIs need no database), so a missing variable is reported by the command
that needs it and by nobody else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from topcoins.buildinfo import git_commit
from topcoins.models import Source

DEFAULT_COINDESK_BASE_URL = "https://data-api.coindesk.com"
DEFAULT_COINMARKETCAP_BASE_URL = "https://pro-api.coinmarketcap.com"
DEFAULT_CRYPTOCOMPARE_BASE_URL = "https://min-api.cryptocompare.com"
# Credits of the month a run never spends below: room for checking a key by hand
# (``python -m scrapers cmc ...``) and for the daily id map, on any plan.
DEFAULT_CREDIT_FLOOR = 500


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names it and never holds its value."""


def _text(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    value = env.get(name, "").strip()
    return value or default


def _required(env: Mapping[str, str], name: str) -> str:
    value = _text(env, name)
    if value is None:
        raise ConfigError(f"{name} is not set")
    return value


def _number(
    env: Mapping[str, str], name: str, default: float, *, minimum: float, maximum: float
) -> float:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum:g} and {maximum:g}, got {raw!r}")
    return value


def _integer(env: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int) -> int:
    raw = _text(env, name)
    if raw is None:
        return default
    if not re.fullmatch(r"[0-9]+", raw):
        raise ConfigError(f"{name} must be a whole number, got {raw!r}")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {raw!r}")
    return value


def _base_url(env: Mapping[str, str], name: str, default: str) -> str:
    """Never echoed back: a URL may carry a password, whatever its scheme."""
    value = _text(env, name, default)
    if not value:
        return ""
    try:
        parts = urlsplit(value)
        # Reading ``port`` raises on one that is not a number from 0 to 65535.
        port = parts.port
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and port != 0
    except ValueError:
        valid = False
    if not valid:
        raise ConfigError(f"{name} must be an http(s) URL with a host and a numeric port, if any")
    if parts.query or parts.username or parts.password:
        raise ConfigError(f"{name} must not carry a query string or credentials")
    return value.rstrip("/")


def _api_key(env: Mapping[str, str], name: str) -> str | None:
    value = _text(env, name)
    if value is not None and not re.fullmatch(r"[\x21-\x7e]+", value):
        raise ConfigError(f"{name} must be printable ASCII without spaces")
    return value


def _required_api_key(env: Mapping[str, str], name: str) -> str:
    value = _api_key(env, name)
    if value is None:
        raise ConfigError(f"{name} is not set")
    return value


def _choice(env: Mapping[str, str], name: str, default: Source) -> Source:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        return Source(raw.lower())
    except ValueError:
        allowed = ", ".join(s.value for s in Source)
        raise ConfigError(f"{name} must be one of {allowed}, got {raw!r}") from None


def _directory(env: Mapping[str, str], name: str) -> Path | None:
    raw = _text(env, name)
    if raw is None:
        return None
    if not raw.startswith("/"):
        raise ConfigError(f"{name} must be an absolute path")
    return Path(raw)


def exports_traces(env: Mapping[str, str]) -> bool:
    """Whether the standard OTEL_* variables ask for spans to be exported (OTLP)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(
        env.get(name, "").strip()
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def database_url(env: Mapping[str, str]) -> str:
    """DATABASE_URL in the form psql accepts, turned into SQLAlchemy's psycopg 3 form.

    Parsed here, so that a malformed one is a configuration error rather than a traceback
    from the engine; never echoed back, since it holds the password.
    """
    raw = _required(env, "DATABASE_URL")
    scheme, sep, rest = raw.partition("://")
    if not sep or scheme not in ("postgres", "postgresql", "postgresql+psycopg"):
        raise ConfigError("DATABASE_URL must start with postgresql://")
    url = f"postgresql+psycopg://{rest}"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ConfigError(
            "DATABASE_URL is malformed: check that its port is a number "
            "and that an IPv6 host is in [brackets]"
        ) from None
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise ConfigError("DATABASE_URL has a port outside 1-65535")
    if parsed.host is not None and not re.fullmatch(r"[^\s\[\]/@?#]+", parsed.host):
        raise ConfigError("DATABASE_URL has a malformed host")
    return url


@dataclass(frozen=True)
class HttpSettings:
    """How hard the scrapers try a provider before the run gives up."""

    timeout_seconds: float = 10.0
    retries: int = 3
    backoff_seconds: float = 1.0
    deadline_seconds: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> HttpSettings:
        return cls(
            timeout_seconds=_number(
                env, "HTTP_TIMEOUT_SECONDS", cls.timeout_seconds, minimum=0.1, maximum=300
            ),
            retries=_integer(env, "HTTP_RETRIES", cls.retries, minimum=0, maximum=10),
            backoff_seconds=_number(
                env, "HTTP_BACKOFF_SECONDS", cls.backoff_seconds, minimum=0, maximum=60
            ),
            deadline_seconds=_number(
                env, "SCRAPE_DEADLINE_SECONDS", cls.deadline_seconds, minimum=1, maximum=3600
            ),
        )


@dataclass(frozen=True)
class CoinDeskSettings:
    """CoinDesk Data, CryptoCompare's current API: a key is required since 2026-05-21."""

    api_key: str = field(repr=False)
    base_url: str = DEFAULT_COINDESK_BASE_URL

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CoinDeskSettings:
        return cls(
            api_key=_required_api_key(env, "COINDESK_API_KEY"),
            base_url=_base_url(env, "COINDESK_BASE_URL", DEFAULT_COINDESK_BASE_URL),
        )


@dataclass(frozen=True)
class CryptoCompareSettings:
    """The legacy min-api: still served, but only with a key since 2026-05-21."""

    api_key: str = field(repr=False)
    base_url: str = DEFAULT_CRYPTOCOMPARE_BASE_URL

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CryptoCompareSettings:
        return cls(
            api_key=_required_api_key(env, "CRYPTOCOMPARE_API_KEY"),
            base_url=_base_url(env, "CRYPTOCOMPARE_BASE_URL", DEFAULT_CRYPTOCOMPARE_BASE_URL),
        )


@dataclass(frozen=True)
class CoinMarketCapSettings:
    api_key: str = field(repr=False)
    base_url: str = DEFAULT_COINMARKETCAP_BASE_URL
    credit_floor: int = DEFAULT_CREDIT_FLOOR

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CoinMarketCapSettings:
        return cls(
            api_key=_required_api_key(env, "COINMARKETCAP_API_KEY"),
            base_url=_base_url(env, "COINMARKETCAP_BASE_URL", DEFAULT_COINMARKETCAP_BASE_URL),
            credit_floor=_integer(
                env,
                "COINMARKETCAP_CREDIT_FLOOR",
                cls.credit_floor,
                minimum=0,
                maximum=100_000_000,
            ),
        )

    @classmethod
    def optional(cls, env: Mapping[str, str]) -> CoinMarketCapSettings | None:
        """For the ranking scrape, which only needs CoinMarketCap to refresh the id map."""
        if _api_key(env, "COINMARKETCAP_API_KEY") is None:
            return None
        return cls.from_env(env)


@dataclass(frozen=True)
class ScraperSettings:
    """Everything one scrape run needs; built once by the scraper entry point."""

    database_url: str = field(repr=False)
    ranking_size: int
    retention_days: float
    http: HttpSettings
    ranking_provider: Source = Source.COINDESK
    pushgateway_url: str | None = None
    # A failed run's own time to record why, after SCRAPE_DEADLINE_SECONDS: a run lasts at
    # most both, and a lock held longer belongs to a stuck run.
    grace_seconds: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ScraperSettings:
        return cls(
            database_url=database_url(env),
            ranking_provider=_choice(env, "RANKING_PROVIDER", cls.ranking_provider),
            ranking_size=_integer(env, "RANKING_SIZE", 200, minimum=10, maximum=5000),
            retention_days=_number(env, "RETENTION_DAYS", 7.0, minimum=0.01, maximum=3650),
            http=HttpSettings.from_env(env),
            pushgateway_url=_base_url(env, "PUSHGATEWAY_URL", "") or None,
            grace_seconds=_number(
                env, "SCRAPE_GRACE_SECONDS", cls.grace_seconds, minimum=1, maximum=300
            ),
        )


@dataclass(frozen=True)
class ApiSettings:
    database_url: str = field(repr=False)
    stale_after_seconds: float = 900.0
    # A safety net only: snapshots are announced by NOTIFY and served at once.
    refresh_interval_seconds: float = 5.0
    max_limit: int = 5000
    metrics_multiprocess: bool = False
    tracing: bool = False
    # Where each worker saves the list it serves, for a worker started while the database is
    # away; gunicorn.conf.py gives every server a fresh one (an emptyDir in Kubernetes).
    state_dir: Path | None = None
    # A coin's history is the one answer read from the database per request: each query
    # gets this long, and a window at most this many points.
    history_budget_seconds: float = 2.0
    history_max_points: int = 10_000
    log_level: str = "INFO"
    # The commit /version names: GIT_COMMIT as stamped into images, else the checkout's.
    commit: str = "unknown"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ApiSettings:
        return cls(
            database_url=database_url(env),
            stale_after_seconds=_number(
                env, "STALE_AFTER_SECONDS", cls.stale_after_seconds, minimum=1, maximum=30 * 86400
            ),
            refresh_interval_seconds=_number(
                env, "API_REFRESH_SECONDS", cls.refresh_interval_seconds, minimum=0.05, maximum=60
            ),
            max_limit=_integer(env, "API_MAX_LIMIT", cls.max_limit, minimum=1, maximum=100_000),
            metrics_multiprocess=bool(_text(env, "PROMETHEUS_MULTIPROC_DIR")),
            tracing=exports_traces(env),
            state_dir=_directory(env, "API_STATE_DIR"),
            history_budget_seconds=_number(
                env, "HISTORY_BUDGET_SECONDS", cls.history_budget_seconds, minimum=0.1, maximum=4
            ),
            history_max_points=_integer(
                env, "HISTORY_MAX_POINTS", cls.history_max_points, minimum=10, maximum=100_000
            ),
            log_level=env.get("LOG_LEVEL", cls.log_level),
            commit=git_commit(env),
        )
