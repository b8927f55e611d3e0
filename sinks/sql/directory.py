"""The provider directory in SQL, kept from the providers topic for reports."""
from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from sinks.sql.models import ProviderRow
from sinks.sql.upsert import upsert
from streams.models import Provider


class DirectoryStore:
    def __init__(self, session: sessionmaker[Session], insert: Callable):
        self._session, self._insert = session, insert

    def record_many(self, providers: list[Provider]) -> None:
        """The latest message about each NPI wins; a replay writes the same rows again."""
        latest = {p.npi: p for p in providers}
        if not latest:
            return
        rows = [{"npi": p.npi, "name": p.name, "role": p.role, "taxonomy": p.taxonomy,
                 "organization_id": p.organization_id} for p in latest.values()]
        with self._session.begin() as s:
            upsert(s, self._insert, ProviderRow, rows, ["npi"])

    def apply_many(self, changes: list[tuple[str, Provider | None]]) -> None:
        """(NPI, provider) pairs from the providers topic in order; no provider (a tombstone)
        removes the NPI. The last message about an NPI wins."""
        latest = dict(changes)
        self.record_many([p for p in latest.values() if p is not None])
        gone = [npi for npi, p in latest.items() if p is None]
        if gone:
            with self._session.begin() as s:
                s.execute(delete(ProviderRow).where(ProviderRow.npi.in_(gone)))

    def all(self) -> dict[str, ProviderRow]:
        with self._session() as s:
            return {p.npi: p for p in s.scalars(select(ProviderRow))}
