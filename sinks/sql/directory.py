"""The provider directory in SQL, kept from the providers topic for reports."""
from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sinks.sql.models import ProviderRow
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
        stmt = self._insert(ProviderRow).values(rows)
        stmt = stmt.on_conflict_do_update(index_elements=["npi"], set_={
            k: stmt.excluded[k] for k in ("name", "role", "taxonomy", "organization_id")})
        with self._session.begin() as s:
            s.execute(stmt)

    def all(self) -> dict[str, ProviderRow]:
        with self._session() as s:
            return {p.npi: p for p in s.scalars(select(ProviderRow))}
