"""What this build is: its git commit and the schema revision its code expects."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

ROOT = Path(__file__).resolve().parent.parent


@cache
def _scripts() -> ScriptDirectory:
    """Imported when asked: the settings read ``git_commit`` here, and a scraper's start-up
    must not pay some 100 ms for alembic, which only the API's readiness needs."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(ROOT / "migrations"))


@cache
def schema_head() -> str:
    """The newest migration shipped with this code; ``/readyz`` compares the database to it."""
    head = _scripts().get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head


@cache
def schema_revisions() -> frozenset[str]:
    """Every migration this code knows: a database at one of them, not the head, is behind."""
    return frozenset(script.revision for script in _scripts().walk_revisions())


def schema_is_behind(found: str | None) -> bool:
    """Older than this code expects; a revision this code does not know is a newer one."""
    return found is None or (found != schema_head() and found in schema_revisions())


def git_commit(env: Mapping[str, str]) -> str:
    """``GIT_COMMIT`` as stamped into images, else the checkout's HEAD, else "unknown"."""
    stamped = env.get("GIT_COMMIT", "").strip()
    if stamped:
        return stamped
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"
