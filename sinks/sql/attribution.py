"""Attribution in SQL: the current answer per member, its history, disputes and their audit trail,
and published attribution lists."""
from __future__ import annotations

import datetime as dt
import json
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sinks.sql.models import AttributionCurrent, AttributionListVersion, AttributionPeriod, Dispute, DisputeEvent
from streams.models import AttributionChange, AttributionOverride


class DisputeError(ValueError):
    """A dispute request that cannot be carried out (unknown id, wrong state, bad value)."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class AttributionStore:
    def __init__(self, session: sessionmaker[Session]):
        self._session = session

    def record_many(self, changes: list[AttributionChange]) -> None:
        """Apply changes in order, in one transaction; a redelivered change changes nothing."""
        with self._session.begin() as s:
            for change in changes:
                self._apply(s, change)

    @staticmethod
    def _apply(s: Session, change: AttributionChange) -> None:
        current = s.get(AttributionCurrent, change.member_id)
        if current and (current.changed_at_ms, current.organization_id) == (change.changed_at_ms,
                                                                            change.new_organization_id):
            return
        if current is None:
            current = AttributionCurrent(member_id=change.member_id)
            s.add(current)
        current.organization_id, current.npi = change.new_organization_id, change.new_npi
        current.method_id, current.method_version = change.method_id, change.method_version
        current.rule, current.reason = change.rule, change.reason
        current.effective_date, current.explanation = change.effective_date, change.explanation
        current.changed_at_ms = change.changed_at_ms
        for period in s.scalars(select(AttributionPeriod).where(
                AttributionPeriod.member_id == change.member_id, AttributionPeriod.end_date.is_(None))):
            period.end_date = change.effective_date
        if change.new_organization_id:
            s.add(AttributionPeriod(member_id=change.member_id, organization_id=change.new_organization_id,
                                    npi=change.new_npi, method_id=change.method_id, rule=change.rule,
                                    reason=change.reason, start_date=change.effective_date))

    def current(self, member_id: str) -> AttributionCurrent | None:
        with self._session() as s:
            return s.get(AttributionCurrent, member_id)

    def history(self, member_id: str) -> list[AttributionPeriod]:
        with self._session() as s:
            return list(s.scalars(select(AttributionPeriod).where(AttributionPeriod.member_id == member_id)
                                  .order_by(AttributionPeriod.id)))

    def members_of(self, organization_id: str) -> list[AttributionCurrent]:
        with self._session() as s:
            return list(s.scalars(select(AttributionCurrent).where(
                AttributionCurrent.organization_id == organization_id).order_by(AttributionCurrent.member_id)))

    # -- published lists -------------------------------------------------------------------------
    def last_published(self, organization_id: str) -> dict[str, str | None]:
        with self._session() as s:
            row = s.scalars(select(AttributionListVersion).where(
                AttributionListVersion.organization_id == organization_id)
                .order_by(AttributionListVersion.id.desc()).limit(1)).first()
            return json.loads(row.members) if row else {}

    def publish(self, organization_id: str, members: dict[str, str | None]) -> str:
        at = _now()
        with self._session.begin() as s:
            s.add(AttributionListVersion(organization_id=organization_id, published_at=at,
                                         members=json.dumps(members, sort_keys=True)))
        return at

    # -- disputes --------------------------------------------------------------------------------
    def submit(self, member_id: str, organization_id: str, kind: str, reason: str, actor: str,
               npi: str | None = None) -> Dispute:
        if kind not in ("add", "remove"):
            raise DisputeError("kind must be 'add' (my patient) or 'remove' (not my patient)")
        if not reason.strip():
            raise DisputeError("a dispute needs a reason")
        dispute = Dispute(id=f"dsp_{uuid.uuid4().hex[:16]}", member_id=member_id, organization_id=organization_id,
                          kind=kind, npi=npi, reason=reason, status="pending")
        with self._session.begin() as s:
            s.add(dispute)
            s.flush()
            s.add(DisputeEvent(dispute_id=dispute.id, action="submitted", actor=actor, at=_now(), reason=reason))
        return dispute

    def decide(self, dispute_id: str, accept: bool, reviewer: str, reason: str, effective_from: str | None = None,
               expires_on: str | None = None) -> tuple[Dispute, AttributionOverride | None]:
        """A plan reviewer's decision. Accepting returns the override the worker must apply."""
        with self._session.begin() as s:
            dispute = self._pending(s, dispute_id)
            at = _now()
            dispute.status, dispute.decided_at = ("accepted" if accept else "rejected"), at
            s.add(DisputeEvent(dispute_id=dispute_id, action=dispute.status, actor=reviewer, at=at, reason=reason))
            if not accept:
                return dispute, None
            dispute.effective_from = _date(effective_from) or at[:10]
            dispute.expires_on = _date(expires_on)
            if dispute.expires_on and dispute.expires_on <= dispute.effective_from:
                raise DisputeError("expires_on must be after effective_from")
            return dispute, _override(dispute, reason)

    def revoke(self, dispute_id: str, actor: str, reason: str) -> AttributionOverride:
        with self._session.begin() as s:
            dispute = s.get(Dispute, dispute_id)
            if dispute is None or dispute.status != "accepted":
                raise DisputeError(f"dispute {dispute_id} is not an accepted dispute")
            dispute.status = "revoked"
            s.add(DisputeEvent(dispute_id=dispute_id, action="revoked", actor=actor, at=_now(), reason=reason))
            override = _override(dispute, reason)
            override.revoked = True
            return override

    def disputes(self, member_id: str | None = None, organization_id: str | None = None) -> list[Dispute]:
        query = select(Dispute).order_by(Dispute.id)
        if member_id:
            query = query.where(Dispute.member_id == member_id)
        if organization_id:
            query = query.where(Dispute.organization_id == organization_id)
        with self._session() as s:
            return list(s.scalars(query))

    def audit(self, dispute_id: str) -> list[DisputeEvent]:
        with self._session() as s:
            return list(s.scalars(select(DisputeEvent).where(DisputeEvent.dispute_id == dispute_id)
                                  .order_by(DisputeEvent.id)))

    @staticmethod
    def _pending(s: Session, dispute_id: str) -> Dispute:
        dispute = s.get(Dispute, dispute_id)
        if dispute is None:
            raise DisputeError(f"no dispute {dispute_id}")
        if dispute.status != "pending":
            raise DisputeError(f"dispute {dispute_id} is already {dispute.status}")
        return dispute


def _date(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError as exc:
        raise DisputeError(f"{value!r} is not an ISO date") from exc


def _override(dispute: Dispute, reason: str) -> AttributionOverride:
    return AttributionOverride(dispute_id=dispute.id, member_id=dispute.member_id, kind=dispute.kind,
                               organization_id=dispute.organization_id, npi=dispute.npi,
                               effective_from=dispute.effective_from or "", expires_on=dispute.expires_on,
                               reason=reason, decided_at=dispute.decided_at or _now())
