"""Tables. Changes to them go through an Alembic migration in ``migrations/versions``."""
from __future__ import annotations

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Subscription(Base):
    __tablename__ = "subscriptions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(128), index=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(default=True)
    # Comma-separated alert types it receives; shell-style patterns ("adt.*", "gap.*", "*").
    event_types: Mapped[str] = mapped_column(Text, default="*")
    created_at: Mapped[float] = mapped_column(Float)


class AlertRow(Base):
    __tablename__ = "alerts"
    alert_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    alert_type: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[str | None] = mapped_column(String(128), index=True)
    organization_id: Mapped[str | None] = mapped_column(String(128), index=True)
    facility: Mapped[str] = mapped_column(String(256))
    visit_number: Mapped[str | None] = mapped_column(String(128))
    event_type: Mapped[str] = mapped_column(String(8))
    occurred_at: Mapped[str | None] = mapped_column(String(40))
    received_at_ms: Mapped[int] = mapped_column(BigInteger)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[str] = mapped_column(Text)


class Delivery(Base):
    """One alert to one subscription: the outbox row the dispatcher works from."""
    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("alert_id", "subscription_id"),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
    )
    webhook_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.alert_id"))
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    event_type: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    received_at_ms: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[float | None] = mapped_column(Float)


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    webhook_id: Mapped[str] = mapped_column(ForeignKey("deliveries.webhook_id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[float] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(String(32))  # success | http_error | timeout | connection_error
    status_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)


class AttributionCurrent(Base):
    """Each member's current attribution, with the explanation of the decision that set it."""
    __tablename__ = "attribution_current"
    member_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    organization_id: Mapped[str | None] = mapped_column(String(128), index=True)
    npi: Mapped[str | None] = mapped_column(String(10))
    method_id: Mapped[str | None] = mapped_column(String(64))
    method_version: Mapped[str | None] = mapped_column(String(32))
    rule: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    effective_date: Mapped[str] = mapped_column(String(10))
    explanation: Mapped[str] = mapped_column(Text)
    changed_at_ms: Mapped[int] = mapped_column(BigInteger)


class AttributionPeriod(Base):
    """Attribution history: one row per period a member was attributed to an organization."""
    __tablename__ = "attribution_history"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    member_id: Mapped[str] = mapped_column(String(128), index=True)
    organization_id: Mapped[str] = mapped_column(String(128))
    npi: Mapped[str | None] = mapped_column(String(10))
    method_id: Mapped[str | None] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    start_date: Mapped[str] = mapped_column(String(10))
    end_date: Mapped[str | None] = mapped_column(String(10))


class Dispute(Base):
    """An organization's request to add ("my patient") or remove ("not my patient") a member."""
    __tablename__ = "disputes"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(128), index=True)
    organization_id: Mapped[str] = mapped_column(String(128), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # add | remove
    npi: Mapped[str | None] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # pending | accepted | rejected | revoked
    effective_from: Mapped[str | None] = mapped_column(String(10))
    expires_on: Mapped[str | None] = mapped_column(String(10))
    decided_at: Mapped[str | None] = mapped_column(String(40))


class DisputeEvent(Base):
    """The audit trail of a dispute: who did what, when and why."""
    __tablename__ = "dispute_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dispute_id: Mapped[str] = mapped_column(ForeignKey("disputes.id"), index=True)
    action: Mapped[str] = mapped_column(String(16))  # submitted | accepted | rejected | revoked
    actor: Mapped[str] = mapped_column(String(256))
    at: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(Text)


class AttributionListVersion(Base):
    """A published attribution list of an organization, kept to compare the next one against."""
    __tablename__ = "attribution_list_versions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization_id: Mapped[str] = mapped_column(String(128), index=True)
    published_at: Mapped[str] = mapped_column(String(40))
    members: Mapped[str] = mapped_column(Text)  # JSON: {member_id: npi}


class CareGap(Base):
    """Each member's gaps in their latest status (the highest revision a gap alert reported)."""
    __tablename__ = "care_gaps"
    __table_args__ = (Index("ix_care_gaps_member_status", "member_id", "status"),)
    member_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    gap_id: Mapped[str] = mapped_column(Text, primary_key=True)
    measure_id: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    due: Mapped[str] = mapped_column(String(10))
    revision: Mapped[int] = mapped_column(Integer)
    info: Mapped[str] = mapped_column(Text)  # the GapInfo record as JSON


class ProviderRow(Base):
    """The provider directory as the providers topic last described each NPI: names and peer groups
    for reports."""
    __tablename__ = "providers"
    npi: Mapped[str] = mapped_column(String(10), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(32))
    taxonomy: Mapped[str | None] = mapped_column(String(16))
    organization_id: Mapped[str | None] = mapped_column(String(128))


class MemberCohorts(Base):
    """The cohorts each member is in, as the member processor last published them."""
    __tablename__ = "member_cohorts"
    member_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    cohorts: Mapped[str] = mapped_column(Text)  # JSON list of id@version
    as_of: Mapped[str] = mapped_column(String(10))
    changed_at_ms: Mapped[int] = mapped_column(BigInteger)
