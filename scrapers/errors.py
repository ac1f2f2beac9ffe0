"""Typed failures of a provider call.

Messages are written for operators and are safe to log: they never contain an API
key, and they say which provider failed and how, in one line.
"""

from __future__ import annotations


class ScrapeError(Exception):
    """A run cannot produce a snapshot; the message is its one-line reason."""


class ProviderError(ScrapeError):
    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider


class ProviderUnavailable(ProviderError):
    """The provider could not be reached, timed out or kept failing with 5xx/429."""


class ProviderRejected(ProviderError):
    """The provider answered with an error of its own (bad key, plan, parameter, quota)."""


class InvalidPayload(ProviderError):
    """The provider answered, but with something we must not store."""


class NothingToDo(Exception):
    """The run has nothing new to store; it ends as skipped, writes nothing and exits 0."""
