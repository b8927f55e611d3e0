"""Tables. Changes to them go through an Alembic migration in ``migrations/versions``."""
from __future__ import annotations

import zlib
from typing import Any

import orjson
from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, validates


class Base(DeclarativeBase):
    pass


class Organization(Base):
    """A provider organization (or the plan's care management) that subscribes to events."""
    __tablename__ = "organizations"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    # Sees the events of every plan member, not only of its attributed ones: granted explicitly, audited.
    plan_level: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[float] = mapped_column(Float)
    # Where notices go that cannot go by webhook: the organization's endpoint was disabled.
    notice_email: Mapped[str | None] = mapped_column(Text, default=None)


class ApiToken(Base):
    """An organization's API token, kept as its SHA-256: the token itself is shown once."""
    __tablename__ = "api_tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    label: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float)


class AuditEvent(Base):
    """Who did what to subscriptions, tokens, roles and consents, when and why."""
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(256), index=True)
    detail: Mapped[str] = mapped_column(Text)  # JSON, never secrets or tokens


class Subscription(Base):
    __tablename__ = "subscriptions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(128), index=True)
    url: Mapped[str] = mapped_column(Text)
    # scheme://host:port of the url: deliveries are queued and limited per endpoint.
    endpoint: Mapped[str] = mapped_column(Text, index=True)
    # Which dispatcher sends to the endpoint (sinks/sql/outbox.py, Shard): kept with the row, so that
    # a dispatcher's claim reads only its own endpoints' queues.
    endpoint_hash: Mapped[int] = mapped_column(BigInteger, default=0)
    secret: Mapped[str] = mapped_column(Text)
    # After a rotation the previous secret also signs until it expires, so receivers can switch over.
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | paused | disabled | deleted
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    # Comma-separated alert types it receives; shell-style patterns ("adt.*", "gap.*", "*").
    event_types: Mapped[str] = mapped_column(Text, default="*")
    filters: Mapped[str] = mapped_column(Text, default="{}")  # JSON: {"measures": [...], "facilities": [...]}
    payload_format: Mapped[str] = mapped_column(String(16), default="json-full")  # json-full | json-thin | fhir
    scope: Mapped[str] = mapped_column(String(16), default="attributed")  # attributed | plan
    heartbeat_period_s: Mapped[float | None] = mapped_column(Float)
    events_since_start: Mapped[int] = mapped_column(Integer, default=0)
    last_sent_at: Mapped[float] = mapped_column(Float, default=0.0)  # last event or heartbeat queued
    failing_since: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[float] = mapped_column(Float)

    @validates("endpoint")
    def _hash_endpoint(self, _key: str, endpoint: str) -> str:
        self.endpoint_hash = endpoint_hash(endpoint)
        return endpoint


def endpoint_hash(endpoint: str) -> int:
    """The same on every host and in every process (unlike ``hash``), and never negative."""
    return zlib.crc32(endpoint.encode())


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
    """One event to one subscription: the outbox row the dispatcher works from, and the record of a
    disclosure (who received what about which member, when)."""
    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("alert_id", "subscription_id"),  # NULLs differ: pings and heartbeats repeat
        Index("ix_deliveries_subscription_number", "subscription_id", "event_number"),
        Index("ix_deliveries_subscription_due", "subscription_id", "status", "next_attempt_at", "event_number"),
    )
    webhook_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # None for what is not about an alert: pings, heartbeats, delivery.exhausted, endpoint.disabled.
    alert_id: Mapped[str | None] = mapped_column(ForeignKey("alerts.alert_id"))
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    organization_id: Mapped[str] = mapped_column(String(128))
    member_id: Mapped[str | None] = mapped_column(String(128), index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    # The subscription's count of events when this one was queued (FHIR's events-since-subscription-start);
    # None for pings and heartbeats, which are not counted.
    event_number: Mapped[int | None] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(64), default="application/json")
    received_at_ms: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | exhausted
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
    outcome: Mapped[str] = mapped_column(String(32))  # sinks.webhooks.retries.outcome_label
    status_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)


class WithheldDelivery(Base):
    """An event a subscription would have received but may not: the reason is kept (42 CFR Part 2)."""
    __tablename__ = "withheld_deliveries"
    __table_args__ = (UniqueConstraint("alert_id", "subscription_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.alert_id"))
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    organization_id: Mapped[str] = mapped_column(String(128))
    member_id: Mapped[str] = mapped_column(String(128), index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[float] = mapped_column(Float)


class EmailNotice(Base):
    """A notice to an organization by e-mail, queued in the transaction that decided it, sent by the
    dispatcher. Never holds member data: e-mail is not a channel for it."""
    __tablename__ = "email_notices"
    __table_args__ = (Index("ix_email_notices_due", "status", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    to_address: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    sent_at: Mapped[float | None] = mapped_column(Float, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


class Consent(Base):
    """A member's consent to disclose substance-use treatment records (42 CFR Part 2) to an organization."""
    __tablename__ = "consents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    member_id: Mapped[str] = mapped_column(String(128), index=True)
    organization_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # part2
    recorded_by: Mapped[str] = mapped_column(String(256))
    recorded_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float)


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


def json_text(value: Any) -> str:
    """How a JSON column is written: keys sorted, so that equal values are equal text. orjson: the
    sinks write one for every alert, gap and cohort change they store."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
