"""Care gaps in SQL: the latest status of each member's gaps, kept from the gap alerts, for the
ED-visit alert (which carries the member's open gaps), the HTTP API and the reports (worklists and
scorecards count the gaps of the members attributed to an organization or provider now)."""
from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sinks.sql.models import AttributionCurrent, CareGap, json_text
from sinks.sql.upsert import upsert
from streams.models import GapInfo


class GapStore:
    def __init__(self, session: sessionmaker[Session], insert: Callable):
        self._session, self._insert = session, insert

    def record_many(self, gaps: list[tuple[str, GapInfo]]) -> None:
        """Keep each gap's latest status; a redelivered or older revision changes nothing."""
        latest: dict[tuple[str, str], GapInfo] = {}
        for member_id, gap in gaps:  # one row per gap: a statement may not update a row twice
            kept = latest.get((member_id, gap.gap_id))
            if kept is None or kept.revision <= gap.revision:
                latest[(member_id, gap.gap_id)] = gap
        rows = [{"member_id": member_id, "gap_id": gap.gap_id, "measure_id": gap.measure_id, "status": gap.status,
                 "due": gap.due, "revision": gap.revision, "info": json_text(gap.to_record())}
                for (member_id, _), gap in latest.items()]
        if rows:
            with self._session.begin() as s:
                upsert(s, self._insert, CareGap, rows, ["member_id", "gap_id"], unless_newer="revision")

    def for_member(self, member_id: str, status: str | None = None) -> list[GapInfo]:
        query = select(CareGap.info).where(CareGap.member_id == member_id)
        if status:
            query = query.where(CareGap.status == status)
        with self._session() as s:
            return [GapInfo.from_record(json.loads(info)) for info in s.scalars(query.order_by(CareGap.due,
                                                                                               CareGap.gap_id))]

    def of_organization(self, organization_id: str, npi: str | None = None,
                        status: str = "open") -> list[tuple[str, str | None, GapInfo]]:
        """(member, attributed NPI, gap) of the members attributed to the organization now."""
        query = (select(CareGap.member_id, AttributionCurrent.npi, CareGap.info)
                 .join(AttributionCurrent, AttributionCurrent.member_id == CareGap.member_id)
                 .where(AttributionCurrent.organization_id == organization_id, CareGap.status == status))
        if npi:
            query = query.where(AttributionCurrent.npi == npi)
        with self._session() as s:
            return [(m, n, GapInfo.from_record(json.loads(info)))
                    for m, n, info in s.execute(query.order_by(CareGap.due, CareGap.member_id, CareGap.gap_id))]

    def outcomes(self, year: int) -> list[tuple[str, str, str]]:
        """(attributed NPI, measure, status) of every gap due in the year, for scorecards."""
        query = (select(AttributionCurrent.npi, CareGap.measure_id, CareGap.status)
                 .join(AttributionCurrent, AttributionCurrent.member_id == CareGap.member_id)
                 .where(CareGap.due.like(f"{year:04d}-%"), AttributionCurrent.npi.is_not(None)))
        with self._session() as s:
            return [(n, m, st) for n, m, st in s.execute(query)]

    def methods_of(self, npi: str) -> list[str]:
        """The attribution methods that attributed the provider's current members."""
        query = select(AttributionCurrent.method_id).where(AttributionCurrent.npi == npi).distinct()
        with self._session() as s:
            return sorted(m for m in s.scalars(query) if m)
