"""Organizations, their API tokens, their webhook subscriptions and the consents and roles that
widen what they may receive. Every change is written to the audit log in the same transaction.

Every read and change of a subscription names the organization asking: a subscription of another
organization is reported as not found, never as forbidden, so its existence does not leak.
"""
from __future__ import annotations

import hashlib
import json
import secrets as random_source
import time
import uuid
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from sinks.sql.models import ApiToken, AuditEvent, Consent, Organization, Subscription, json_text
from sinks.sql.outbox import wants
from sinks.sql.sealing import Sealer
from sinks.webhooks.egress import Egress, EgressRefused
from sinks.webhooks.notification import supports as fhir_supports
from sinks.webhooks.payloads import FORMATS
from sinks.webhooks.signing import new_secret

# The events a subscription can ask for; patterns must match at least one.
EVENT_TYPES = ("adt.ed_visit", "adt.admit", "adt.discharge", "adt.cancelled", "gap.opened", "gap.due_soon",
               "gap.closed", "gap.missed", "gap.excluded", "gap.refill_overdue", "attribution.changed",
               "delivery.exhausted", "endpoint.disabled")
HEARTBEAT_BOUNDS_S = (1.0, 24 * 3600.0)
DEFAULT_ROTATION_OVERLAP_S = 24 * 3600.0


class SubscriptionError(ValueError):
    """A request that cannot be carried out as asked; the message says why."""


class NotFound(SubscriptionError):
    pass


def token_hash(token: str) -> str:
    # Tokens are 256 random bits, so a plain SHA-256 is as good as a slow hash and lets a lookup use the key.
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Spec:
    """What an organization asks for when it creates or changes a subscription."""
    url: str
    event_types: tuple[str, ...] = ("*",)
    filters: dict[str, list[str]] = field(default_factory=dict)
    payload_format: str = "json-full"
    scope: str = "attributed"
    heartbeat_period_s: float | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any], base: Spec | None = None) -> Spec:
        unknown = set(data) - {"url", "event_types", "filters", "payload_format", "scope", "heartbeat_period_s"}
        if unknown:
            raise SubscriptionError(f"unknown field(s): {', '.join(sorted(unknown))}")
        merged = {**(base.__dict__ if base else {}), **data}
        if not isinstance(merged.get("url"), str):
            raise SubscriptionError("url is required")
        types = merged.get("event_types", ["*"])
        if not isinstance(types, list | tuple) or not types or not all(isinstance(t, str) for t in types):
            raise SubscriptionError("event_types must be a non-empty list of event types or patterns")
        filters = merged.get("filters") or {}
        if not isinstance(filters, dict) or set(filters) - {"measures", "facilities"} or not all(
                isinstance(v, list) and all(isinstance(x, str) for x in v) for v in filters.values()):
            raise SubscriptionError("filters may hold 'measures' and 'facilities', each a list of strings")
        period = merged.get("heartbeat_period_s")
        if period is not None and (not isinstance(period, int | float) or isinstance(period, bool)):
            raise SubscriptionError("heartbeat_period_s must be a number of seconds")
        return cls(url=merged["url"], event_types=tuple(types), filters=filters,
                   payload_format=merged.get("payload_format", "json-full"),
                   scope=merged.get("scope", "attributed"), heartbeat_period_s=period)

    def check(self, egress: Egress, organization: Organization) -> str:
        """Refuses what cannot work or is not allowed; returns the endpoint of the URL."""
        for pattern in self.event_types:
            if not any(wants(pattern, t) for t in EVENT_TYPES):
                raise SubscriptionError(f"no event type matches {pattern!r}; known: {', '.join(EVENT_TYPES)}")
        if self.payload_format not in FORMATS:
            raise SubscriptionError(f"payload_format must be one of {', '.join(FORMATS)}")
        if self.payload_format == "fhir" and not all(
                fhir_supports(t) for t in EVENT_TYPES if wants(",".join(self.event_types), t)):
            raise SubscriptionError("the fhir payload format carries ADT events only: ask for adt.* event types")
        if self.scope not in ("attributed", "plan"):
            raise SubscriptionError("scope must be 'attributed' or 'plan'")
        if self.scope == "plan" and not organization.plan_level:
            raise SubscriptionError("a plan-level subscription needs the plan-level role, granted by the plan")
        lo, hi = HEARTBEAT_BOUNDS_S
        if self.heartbeat_period_s is not None and not lo <= self.heartbeat_period_s <= hi:
            raise SubscriptionError(f"heartbeat_period_s must be between {lo:g} and {hi:g}")
        try:
            return egress.check(self.url)
        except EgressRefused as exc:
            raise SubscriptionError(f"url refused: {exc}") from exc


def describe(sub: Subscription) -> dict[str, Any]:
    """A subscription as its organization sees it: never its secrets."""
    return {"id": sub.id, "organization_id": sub.organization_id, "url": sub.url, "status": sub.status,
            "disabled_reason": sub.disabled_reason, "event_types": sub.event_types.split(","),
            "filters": json.loads(sub.filters or "{}"), "payload_format": sub.payload_format, "scope": sub.scope,
            "heartbeat_period_s": sub.heartbeat_period_s, "events_since_subscription_start": sub.events_since_start,
            "previous_secret_expires_at": sub.previous_secret_expires_at if sub.previous_secret else None}


class SubscriptionStore:
    def __init__(self, session: sessionmaker[Session], egress: Egress, sealer: Sealer):
        self._session, self.egress, self._sealer = session, egress, sealer

    def seal_secrets(self) -> None:
        """Seal every secret under the first key: what earlier versions stored in clear, and what an
        older key sealed. Every secret is opened on the way, so a wrong key stops the worker at its
        start instead of failing deliveries later. Rows already sealed under the first key are not
        written, so a start does not overwrite a rotation made meanwhile by another process."""
        t = Subscription.__table__.c
        with self._session.begin() as s:
            # In id order, as every writer of subscription rows locks them (see Outbox._lock).
            for row in s.execute(select(t.id, t.secret, t.previous_secret).order_by(t.id)).all():
                for column in ("secret", "previous_secret"):
                    if (value := getattr(row, column)) and (resealed := self._sealer.resealed(value)):
                        # Only if still as read: a rotation committed meanwhile is kept.
                        s.execute(update(Subscription.__table__).where(t.id == row.id, t[column] == value)
                                  .values({column: resealed}))

    @staticmethod
    def _audit(s: Session, actor: str, action: str, target: str, **detail: Any) -> None:
        s.add(AuditEvent(at=time.time(), actor=actor, action=action, target=target,
                         detail=json_text(detail)))

    # -- organizations and tokens -----------------------------------------------------------------
    def add_organization(self, organization_id: str, name: str, actor: str) -> None:
        with self._session.begin() as s:
            if s.get(Organization, organization_id):
                raise SubscriptionError(f"organization {organization_id} exists already")
            s.add(Organization(id=organization_id, name=name, plan_level=False, created_at=time.time()))
            self._audit(s, actor, "organization.added", organization_id, name=name)

    def organization(self, organization_id: str) -> Organization:
        with self._session() as s:
            found = s.get(Organization, organization_id)
        if found is None:
            raise NotFound(f"no organization {organization_id}")
        return found

    def set_plan_level(self, organization_id: str, granted: bool, actor: str, reason: str) -> None:
        """The role that sees every plan member's events: explicit, with who granted it and why."""
        if not reason.strip():
            raise SubscriptionError("a reason is required to grant or revoke the plan-level role")
        with self._session.begin() as s:
            org = s.get(Organization, organization_id)
            if org is None:
                raise NotFound(f"no organization {organization_id}")
            org.plan_level = granted
            self._audit(s, actor, "plan_level.granted" if granted else "plan_level.revoked", organization_id,
                        reason=reason)
            if not granted:  # its plan-wide subscriptions stop receiving at once
                s.execute(update(Subscription).where(Subscription.organization_id == organization_id,
                                                     Subscription.scope == "plan").values(
                    status="disabled", disabled_reason="the plan-level role was revoked"))

    def set_notice_email(self, organization_id: str, address: str | None, actor: str) -> None:
        """Where notices go by e-mail (an endpoint disabled), or nowhere (``None``); audited."""
        if address is not None:
            _, parsed = parseaddr(address)
            if parsed != address.strip() or "@" not in parsed or " " in parsed:
                raise SubscriptionError(f"not an e-mail address: {address!r}")
            address = parsed
        with self._session.begin() as s:
            org = s.get(Organization, organization_id)
            if org is None:
                raise NotFound(f"no organization {organization_id}")
            org.notice_email = address
            self._audit(s, actor, "notice_email.set" if address else "notice_email.cleared", organization_id)

    def issue_token(self, organization_id: str, label: str, actor: str) -> str:
        """A new API token; only its hash is kept, so this is the one time it is seen."""
        token = f"gst_{random_source.token_urlsafe(32)}"
        with self._session.begin() as s:
            if s.get(Organization, organization_id) is None:
                raise NotFound(f"no organization {organization_id}")
            s.add(ApiToken(token_hash=token_hash(token), organization_id=organization_id, label=label,
                           created_at=time.time()))
            self._audit(s, actor, "token.issued", organization_id, label=label)
        return token

    def revoke_tokens(self, organization_id: str, actor: str) -> int:
        with self._session.begin() as s:
            n = s.execute(update(ApiToken).where(ApiToken.organization_id == organization_id,
                                                 ApiToken.revoked_at.is_(None)).values(revoked_at=time.time())).rowcount
            self._audit(s, actor, "tokens.revoked", organization_id, count=n)
        return n

    def authenticate(self, token: str) -> Organization | None:
        with self._session() as s:
            return s.scalar(select(Organization).join(ApiToken, ApiToken.organization_id == Organization.id).where(
                ApiToken.token_hash == token_hash(token), ApiToken.revoked_at.is_(None)))

    # -- subscriptions ----------------------------------------------------------------------------
    def create(self, organization_id: str, spec: Spec, actor: str, secret: str | None = None) -> tuple[dict, str]:
        """The new subscription and its signing secret (shown once)."""
        org = self.organization(organization_id)
        endpoint = spec.check(self.egress, org)
        secret = secret or new_secret()
        sub = Subscription(id=f"sub_{uuid.uuid4().hex[:16]}", organization_id=organization_id, url=spec.url,
                           endpoint=endpoint, secret=self._sealer.seal(secret), status="active",
                           event_types=",".join(spec.event_types),
                           filters=json_text(spec.filters), payload_format=spec.payload_format,
                           scope=spec.scope, heartbeat_period_s=spec.heartbeat_period_s, events_since_start=0,
                           last_sent_at=time.time(), created_at=time.time())
        with self._session.begin() as s:
            s.add(sub)
            self._audit(s, actor, "subscription.created", sub.id, organization_id=organization_id,
                        endpoint=endpoint, event_types=list(spec.event_types), scope=spec.scope)
        return describe(sub), secret

    def _own(self, s: Session, organization_id: str, subscription_id: str) -> Subscription:
        sub = s.get(Subscription, subscription_id)
        if sub is None or sub.organization_id != organization_id:
            raise NotFound(f"no subscription {subscription_id}")
        return sub

    def get(self, organization_id: str, subscription_id: str) -> dict[str, Any]:
        with self._session() as s:
            return describe(self._own(s, organization_id, subscription_id))

    def of(self, organization_id: str) -> list[dict[str, Any]]:
        with self._session() as s:
            return [describe(sub) for sub in s.scalars(select(Subscription).where(
                Subscription.organization_id == organization_id).order_by(Subscription.created_at))]

    def change(self, organization_id: str, subscription_id: str, data: dict[str, Any], actor: str) -> dict:
        org = self.organization(organization_id)
        with self._session.begin() as s:
            sub = self._own(s, organization_id, subscription_id)
            current = Spec(url=sub.url, event_types=tuple(sub.event_types.split(",")),
                           filters=json.loads(sub.filters or "{}"), payload_format=sub.payload_format,
                           scope=sub.scope, heartbeat_period_s=sub.heartbeat_period_s)
            spec = Spec.from_json(data, current)
            sub.endpoint = spec.check(self.egress, org)
            sub.url, sub.event_types, sub.filters = spec.url, ",".join(spec.event_types), json_text(spec.filters)
            sub.payload_format, sub.scope, sub.heartbeat_period_s = spec.payload_format, spec.scope, \
                spec.heartbeat_period_s
            self._audit(s, actor, "subscription.changed", sub.id, fields=sorted(data))
            return describe(sub)

    def set_status(self, organization_id: str, subscription_id: str, status: str, actor: str) -> dict:
        """Pause (events queue up, nothing is sent) or resume (sending starts again from the oldest
        queued event, also after the endpoint was disabled)."""
        if status not in ("active", "paused"):
            raise SubscriptionError("status must be 'active' or 'paused'")
        with self._session.begin() as s:
            sub = self._own(s, organization_id, subscription_id)
            if sub.scope == "plan" and status == "active" and not s.get_one(Organization, organization_id).plan_level:
                raise SubscriptionError("a plan-level subscription needs the plan-level role")
            sub.status, sub.disabled_reason, sub.failing_since = status, None, None
            self._audit(s, actor, "subscription.resumed" if status == "active" else "subscription.paused", sub.id)
            return describe(sub)

    def rotate_secret(self, organization_id: str, subscription_id: str, actor: str,
                      overlap_s: float = DEFAULT_ROTATION_OVERLAP_S) -> tuple[str, float]:
        """A new signing secret; the current one keeps signing too (both signatures are sent) for
        ``overlap_s``, so the receiver can switch without rejecting anything."""
        secret, expires = new_secret(), time.time() + overlap_s
        with self._session.begin() as s:
            sub = self._own(s, organization_id, subscription_id)
            sub.previous_secret, sub.previous_secret_expires_at = sub.secret, expires
            sub.secret = self._sealer.seal(secret)
            self._audit(s, actor, "secret.rotated", sub.id, previous_valid_until=expires)
        return secret, expires

    def delete(self, organization_id: str, subscription_id: str, actor: str) -> None:
        """Deleting stops delivery for good but keeps the row: disclosures refer to it."""
        with self._session.begin() as s:
            sub = self._own(s, organization_id, subscription_id)
            sub.status, sub.disabled_reason = "deleted", "deleted by the organization"
            self._audit(s, actor, "subscription.deleted", sub.id)

    # -- consent (42 CFR Part 2) ------------------------------------------------------------------
    def record_consent(self, member_id: str, organization_id: str, actor: str) -> None:
        with self._session.begin() as s:
            s.add(Consent(member_id=member_id, organization_id=organization_id, kind="part2", recorded_by=actor,
                          recorded_at=time.time()))
            self._audit(s, actor, "consent.recorded", f"consent:{organization_id}", kind="part2")

    def revoke_consent(self, member_id: str, organization_id: str, actor: str) -> int:
        with self._session.begin() as s:
            n = s.execute(update(Consent).where(Consent.member_id == member_id,
                                                Consent.organization_id == organization_id,
                                                Consent.revoked_at.is_(None)).values(revoked_at=time.time())).rowcount
            self._audit(s, actor, "consent.revoked", f"consent:{organization_id}", kind="part2")
        return n

    def audit(self, target: str) -> list[dict[str, Any]]:
        with self._session() as s:
            return [{"at": e.at, "actor": e.actor, "action": e.action, "detail": json.loads(e.detail)}
                    for e in s.scalars(select(AuditEvent).where(AuditEvent.target == target).order_by(AuditEvent.id))]
