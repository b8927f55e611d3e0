"""Attribution in SQL: the current answer per member, its history, disputes and their audit trail,
and published attribution lists."""
from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from dataclasses import dataclass, field

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from sinks.sql.models import (
    AttributionCurrent,
    AttributionListVersion,
    AttributionPeriod,
    Dispute,
    DisputeEvent,
    Organization,
    ProviderRow,
    json_text,
)
from sinks.webhooks.payloads import utc_iso
from streams.models import AttributionChange, AttributionOverride, RosterEntry


class DisputeError(ValueError):
    """A dispute request that cannot be carried out (unknown id, wrong state, bad value)."""


def _now() -> str:
    return utc_iso(time.time())


class AttributionStore:
    def __init__(self, session: sessionmaker[Session]):
        self._session = session

    def record_many(self, changes: list[AttributionChange]) -> None:
        """Apply changes in order, in one transaction, with a few set-based statements per batch
        (the sink writes thousands per second). A redelivered change changes nothing."""
        if not changes:
            return
        with self._session.begin() as s:
            conn = s.connection()
            current_t, history_t = AttributionCurrent.__table__, AttributionPeriod.__table__
            members = sorted({c.member_id for c in changes})
            last = {row.member_id: (row.changed_at_ms, row.organization_id) for row in conn.execute(
                select(current_t.c.member_id, current_t.c.changed_at_ms, current_t.c.organization_id)
                .where(current_t.c.member_id.in_(members)))}
            closes: dict[str, str] = {}  # member -> end date of the period open in the database
            periods: list[dict] = []
            open_here: dict[str, dict] = {}  # member -> period opened earlier in this batch
            final: dict[str, AttributionChange] = {}
            for change in changes:
                if last.get(change.member_id) == (change.changed_at_ms, change.new_organization_id):
                    continue
                opened = open_here.pop(change.member_id, None)
                if opened is not None:
                    opened["end_date"] = change.effective_date
                elif change.member_id not in closes:
                    closes[change.member_id] = change.effective_date
                if change.new_organization_id:
                    open_here[change.member_id] = {
                        "member_id": change.member_id, "organization_id": change.new_organization_id,
                        "npi": change.new_npi, "method_id": change.method_id, "rule": change.rule,
                        "reason": change.reason, "start_date": change.effective_date, "end_date": None}
                    periods.append(open_here[change.member_id])
                last[change.member_id] = (change.changed_at_ms, change.new_organization_id)
                final[change.member_id] = change
            if closes:
                conn.execute(update(history_t).where(history_t.c.member_id == bindparam("m"),
                                                     history_t.c.end_date.is_(None))
                             .values(end_date=bindparam("e")), [{"m": m, "e": e} for m, e in closes.items()])
            if periods:
                conn.execute(insert(history_t), periods)
            if final:
                upsert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(current_t)
                columns = ("organization_id", "npi", "method_id", "method_version", "rule", "reason",
                           "effective_date", "explanation", "changed_at_ms")
                conn.execute(upsert.on_conflict_do_update(index_elements=["member_id"],
                                                          set_={c: upsert.excluded[c] for c in columns}),
                             [{"member_id": c.member_id, "organization_id": c.new_organization_id,
                               "npi": c.new_npi, "method_id": c.method_id, "method_version": c.method_version,
                               "rule": c.rule, "reason": c.reason, "effective_date": c.effective_date,
                               "explanation": c.explanation, "changed_at_ms": c.changed_at_ms}
                              for c in final.values()])

    def current(self, member_id: str) -> AttributionCurrent | None:
        with self._session() as s:
            return s.get(AttributionCurrent, member_id)

    def organizations_of(self, member_ids: set[str]) -> dict[str, str | None]:
        """The organization each member is attributed to now, in one read (routing's, per batch)."""
        if not member_ids:
            return {}
        with self._session() as s:
            return dict(s.execute(select(AttributionCurrent.member_id, AttributionCurrent.organization_id)
                                  .where(AttributionCurrent.member_id.in_(member_ids))).tuples().all())

    def history(self, member_id: str) -> list[AttributionPeriod]:
        with self._session() as s:
            return list(s.scalars(select(AttributionPeriod).where(AttributionPeriod.member_id == member_id)
                                  .order_by(AttributionPeriod.id)))

    def attributed_count(self) -> int:
        with self._session() as s:
            return s.scalar(select(func.count()).select_from(AttributionCurrent).where(
                AttributionCurrent.organization_id.is_not(None))) or 0

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
                                         members=json_text(members)))
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

    def assign(self, entries: list[RosterEntry], actor: str, reason: str, effective_from: str | None = None,
               expires_on: str | None = None) -> Assignment:
        """A plan's roster: each entry becomes an "add" decision the plan both submits and accepts, in one
        transaction, audited and revocable like any dispute. An entry naming an organization neither
        registered nor in the provider directory is refused (a typo would attribute members to no
        one). Loading the same roster again adds nothing: an entry already in force as an accepted
        assignment with the same dates (any start, when none is given) is kept, and its override is
        returned again, so that a load whose publishing failed is completed by running it once more."""
        if not reason.strip():
            raise DisputeError("a roster needs a reason")
        at = _now()
        start, end = _date(effective_from) or at[:10], _date(expires_on)
        if end and end <= start:
            raise DisputeError("expires_on must be after effective_from")
        result = Assignment()
        with self._session.begin() as s:
            known = set(s.scalars(select(Organization.id))) | set(
                s.scalars(select(ProviderRow.organization_id).where(ProviderRow.organization_id.is_not(None))))
            # Without a start date the roster means "from today": one loaded on an earlier day and
            # still in force is the same assignment.
            starts = Dispute.effective_from == start if effective_from else Dispute.effective_from <= start
            held = {(d.member_id, d.organization_id, d.npi): d for d in s.scalars(select(Dispute).where(
                Dispute.status == "accepted", Dispute.kind == "add", starts,
                Dispute.expires_on.is_(None) if end is None else Dispute.expires_on == end))}
            disputes = []
            for e in entries:
                if e.organization_id not in known:
                    result.unknown_organizations[e.organization_id] = (
                        result.unknown_organizations.get(e.organization_id, 0) + 1)
                elif (found := held.get((e.member_id, e.organization_id, e.npi))) is not None:
                    result.overrides.append(_override(found, found.reason))
                    result.already_assigned += 1
                else:
                    held[(e.member_id, e.organization_id, e.npi)] = dispute = Dispute(
                        id=f"dsp_{uuid.uuid4().hex[:16]}", member_id=e.member_id, organization_id=e.organization_id,
                        kind="add", npi=e.npi, reason=reason, status="accepted", effective_from=start,
                        expires_on=end, decided_at=at)
                    disputes.append(dispute)
            s.add_all(disputes)
            s.flush()
            s.add_all([DisputeEvent(dispute_id=d.id, action=action, actor=actor, at=at, reason=reason)
                       for d in disputes for action in ("submitted", "accepted")])
        result.overrides += [_override(d, reason) for d in disputes]
        return result

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

    def dispute(self, dispute_id: str) -> Dispute | None:
        with self._session() as s:
            return s.get(Dispute, dispute_id)

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


@dataclass
class Assignment:
    """What loading a roster did: the overrides the worker must apply (new and already held ones)."""
    overrides: list[AttributionOverride] = field(default_factory=list)
    already_assigned: int = 0
    unknown_organizations: dict[str, int] = field(default_factory=dict)  # refused: organization -> rows


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
