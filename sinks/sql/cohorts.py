"""Member cohorts in SQL, kept from the cohorts topic, for the alerts routing raises (ED visits)."""
from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sinks.sql.models import MemberCohorts, json_text
from sinks.sql.upsert import upsert
from streams.models import CohortMembership


class CohortStore:
    def __init__(self, session: sessionmaker[Session], insert: Callable):
        self._session, self._insert = session, insert

    def record_many(self, changes: list[CohortMembership]) -> None:
        """The newest change per member wins, whatever order a replay brings them in."""
        latest: dict[str, CohortMembership] = {}
        for change in changes:
            if change.member_id not in latest or change.changed_at_ms >= latest[change.member_id].changed_at_ms:
                latest[change.member_id] = change
        if not latest:
            return
        rows = [{"member_id": c.member_id, "cohorts": json_text(c.cohorts), "as_of": c.as_of,
                 "changed_at_ms": c.changed_at_ms} for c in latest.values()]
        with self._session.begin() as s:
            upsert(s, self._insert, MemberCohorts, rows, ["member_id"], unless_newer="changed_at_ms")

    def of(self, member_id: str) -> list[str]:
        with self._session() as s:
            found = s.scalar(select(MemberCohorts.cohorts).where(MemberCohorts.member_id == member_id))
        return json.loads(found) if found else []
