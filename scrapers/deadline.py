"""One deadline per run, for its provider calls and its database waits alike.

``SCRAPE_DEADLINE_SECONDS`` is what a run may take; a run that fails then gets a short
grace period of its own (``SCRAPE_GRACE_SECONDS``) to record why.  A run therefore lasts
at most the sum of both, which is also how long its lock may stay held.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .errors import ScrapeError


class DeadlineReached(ScrapeError):
    """A database wait outlived the run's deadline; the message is the one-line reason."""


@dataclass(frozen=True)
class Deadline:
    """A ``time.monotonic()`` instant, with the length and name it is reported by."""

    at: float
    seconds: float
    grace_seconds: float
    name: str = "the run deadline"

    @classmethod
    def after(cls, seconds: float, *, grace_seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds, seconds, grace_seconds)

    @property
    def longest_run(self) -> float:
        """How long a run may last, its failure record included."""
        return self.seconds + self.grace_seconds

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def leaving(self, share: float) -> float:
        """The instant that leaves ``share`` of the deadline to what must follow it."""
        return self.at - self.seconds * share

    def grace(self) -> Deadline:
        """The grace period that starts now, for recording a failed run."""
        return Deadline(
            time.monotonic() + self.grace_seconds,
            self.grace_seconds,
            self.grace_seconds,
            name="the grace period",
        )

    def ran_out(self, how: str) -> str:
        return f"{self.name} ({self.seconds:g} s) ran out {how}"
