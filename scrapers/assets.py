"""The ``assets`` rows a ranking points to: found by description, made when new.

Only the ranking scrape writes assets, one run at a time (its lock), so a description
missing when looked up is still missing when inserted; the unique index would stop a
duplicate all the same.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Text, any_, bindparam, func, insert, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from topcoins.models import Asset, Source


@dataclass(frozen=True)
class Description:
    """How a provider described a coin, and what it resolved to: one ``assets`` row."""

    symbol: str
    name: str
    provider_asset_id: int | None = None
    slug: str | None = None
    cmc_id: int | None = None
    resolved_by: str | None = None

    @property
    def key(self) -> tuple[object, ...]:
        """What ``uq_assets_description`` compares: absent values as 0 and ''."""
        return (
            self.symbol,
            self.name,
            self.provider_asset_id or 0,
            self.slug or "",
            self.cmc_id or 0,
            self.resolved_by or "",
        )


_COLUMNS = (
    Asset.id,
    Asset.symbol,
    Asset.name,
    func.coalesce(Asset.provider_asset_id, 0),
    func.coalesce(Asset.slug, ""),
    func.coalesce(Asset.cmc_id, 0),
    func.coalesce(Asset.resolved_by, ""),
)


def asset_ids(
    session: Session, source: Source, descriptions: Iterable[Description]
) -> dict[Description, int]:
    """Each description's asset id, inserting those seen for the first time."""
    wanted = {d.key: d for d in descriptions}
    ids = _known(session, source, wanted)
    new = [d for key, d in wanted.items() if key not in ids]
    if new:
        session.execute(
            insert(Asset),
            [
                {
                    "source": source,
                    "symbol": d.symbol,
                    "name": d.name,
                    "provider_asset_id": d.provider_asset_id,
                    "slug": d.slug,
                    "cmc_id": d.cmc_id,
                    "resolved_by": d.resolved_by,
                }
                for d in new
            ],
        )
        ids = _known(session, source, wanted)
    return {d: ids[key] for key, d in wanted.items()}


def _known(
    session: Session, source: Source, wanted: dict[tuple[object, ...], Description]
) -> dict[tuple[object, ...], int]:
    symbols = sorted({d.symbol for d in wanted.values()})
    rows = session.execute(
        select(*_COLUMNS).where(
            Asset.source == source,
            Asset.symbol == any_(bindparam("symbols", symbols, type_=ARRAY(Text))),
        )
    )
    return {tuple(row[1:]): row[0] for row in rows if tuple(row[1:]) in wanted}
