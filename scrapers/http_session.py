"""A ``requests.Session`` per provider with bounded retries and a run deadline.

Retries are urllib3's; the only addition is a deadline, so that a provider that keeps
failing or hanging makes the whole run give up in bounded time instead of
``retries x timeout`` per call.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from types import TracebackType
from typing import Any, Self

import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from topcoins import __version__
from topcoins.settings import HttpSettings

from .errors import InvalidPayload, ProviderUnavailable

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class DeadlineRetry(Retry):
    """urllib3 ``Retry`` that refuses an attempt which could not finish before the deadline."""

    deadline: float | None = None
    attempt_seconds: float = 0.0

    def new(self, **kw: Any) -> Self:
        retry = super().new(**kw)
        retry.deadline = self.deadline
        retry.attempt_seconds = self.attempt_seconds
        return retry

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        if self.deadline is not None:
            wait = retry.get_backoff_time()
            if response is not None and retry.respect_retry_after_header:
                wait = retry.get_retry_after(response) or wait
            if time.monotonic() + wait + self.attempt_seconds > self.deadline:
                reason = error or ResponseError("run deadline reached")
                # urllib3 itself raises it with the pool it has, which may be None.
                raise MaxRetryError(_pool, url, reason) from reason  # type: ignore[arg-type]
        return retry


class ProviderSession:
    """HTTP access to one provider for one run; every call shares the run's deadline."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        settings: HttpSettings,
        headers: dict[str, str],
        *,
        deadline: float | None = None,
    ) -> None:
        """``deadline`` (``time.monotonic()``) is shared when one run talks to two providers."""
        self.provider = provider
        self.base_url = base_url
        self.timeout = settings.timeout_seconds
        self.deadline = deadline or time.monotonic() + settings.deadline_seconds
        retry = DeadlineRetry(
            total=settings.retries,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET"}),
            backoff_factor=settings.backoff_seconds,
            backoff_max=settings.deadline_seconds,
            retry_after_max=int(settings.deadline_seconds),
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        retry.deadline = self.deadline
        retry.attempt_seconds = min(settings.timeout_seconds, settings.deadline_seconds)
        self.session = requests.Session()
        self.session.mount("https://", HTTPAdapter(max_retries=retry))
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.headers.update(
            {
                "Accept": "application/json",
                "Accept-Encoding": "gzip, deflate",
                "User-Agent": f"top-coins/{__version__}",
                **headers,
            }
        )

    def get_json(self, path: str, params: dict[str, str | int]) -> tuple[int, Any]:
        """GET ``path`` and parse its JSON body, numbers with decimals as ``Decimal``."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise ProviderUnavailable(self.provider, "run deadline reached before the call")
        timeout = min(self.timeout, remaining)
        try:
            response = self.session.get(
                self.base_url + path, params=params, timeout=timeout, allow_redirects=False
            )
        except requests.Timeout:
            raise ProviderUnavailable(self.provider, f"timed out calling {path}") from None
        except requests.ConnectionError as exc:
            reason = "timed out" if "timed out" in str(exc).lower() else "connection failed"
            raise ProviderUnavailable(self.provider, f"{reason} calling {path}") from None
        except requests.RequestException as exc:
            raise ProviderUnavailable(
                self.provider, f"{type(exc).__name__} calling {path}"
            ) from None
        try:
            payload = json.loads(response.content, parse_float=Decimal)
        except ValueError:
            if response.status_code >= 500 or response.status_code == 429:
                raise ProviderUnavailable(
                    self.provider, f"HTTP {response.status_code} from {path}"
                ) from None
            raise InvalidPayload(
                self.provider, f"HTTP {response.status_code} from {path} is not valid JSON"
            ) from None
        return response.status_code, payload

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
