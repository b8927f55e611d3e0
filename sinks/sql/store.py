"""Reads and writes of alerts, subscriptions and deliveries.

Writes are idempotent: storing an alert or its deliveries a second time (a redelivered Kafka
message, a restarted worker) changes nothing, which is what makes at-least-once processing safe.
Calls are synchronous; async callers run them in a thread.
"""
from __future__ import annotations

import fnmatch
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, event, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from sinks.sql.attribution import AttributionStore
from sinks.sql.cohorts import CohortStore
from sinks.sql.directory import DirectoryStore
from sinks.sql.gaps import GapStore
from sinks.sql.models import AlertRow, Delivery, DeliveryAttempt, Subscription
from streams.models import Alert

# Renders the webhook body of an alert for one delivery (given its webhook id).
BodyFn = Callable[[Alert, str], str]
_WEBHOOK_NAMESPACE = uuid.UUID("0f9c3a51-2b7e-4d8a-9a57-0c8a2f61d3b4")


def wants(event_types: str, alert_type: str) -> bool:
    """Whether a subscription's comma-separated patterns take this alert type."""
    return any(fnmatch.fnmatchcase(alert_type, p.strip()) for p in event_types.split(",") if p.strip())


def webhook_id(alert_id: str, subscription_id: str) -> str:
    """Stable per alert and subscription, so a receiver de-duplicates redeliveries by it."""
    return f"msg_{uuid.uuid5(_WEBHOOK_NAMESPACE, f'{alert_id}|{subscription_id}').hex}"


@dataclass(frozen=True)
class DeliveryJob:
    webhook_id: str
    url: str
    secret: str
    body: str
    attempts: int
    received_at_ms: int


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn, _record):  # WAL lets the CLI and a worker use one file at once
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA foreign_keys=ON")
        return engine
    return create_engine(url, pool_pre_ping=True)


class Store:
    def __init__(self, url: str, migrate: bool = True):
        self.engine = make_engine(url)
        if migrate:
            from sinks.sql.migrate import upgrade
            upgrade(self.engine)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self.attribution = AttributionStore(self._session)
        self.gaps = GapStore(self._session, self._insert())
        self.directory = DirectoryStore(self._session, self._insert())
        self.cohorts = CohortStore(self._session, self._insert())

    def _insert(self):
        return postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert

    # -- subscriptions ---------------------------------------------------------------------------
    def add_subscription(self, organization_id: str, url: str, secret: str, event_types: str = "*") -> str:
        sub_id = f"sub_{uuid.uuid4().hex[:16]}"
        with self._session.begin() as s:
            s.add(Subscription(id=sub_id, organization_id=organization_id, url=url, secret=secret,
                               active=True, created_at=time.time(), event_types=event_types))
        return sub_id

    def subscriptions_for(self, organization_id: str) -> list[Subscription]:
        with self._session() as s:
            return list(s.scalars(select(Subscription).where(
                Subscription.organization_id == organization_id, Subscription.active.is_(True))))

    # -- alerts and their deliveries -------------------------------------------------------------
    def save_alert(self, alert: Alert, body_for: BodyFn) -> list[str]:
        """Store the alert and one pending delivery per active subscription of its organization.
        Returns the webhook ids that are pending (new or not yet delivered)."""
        insert = self._insert()
        payload = json.dumps(alert.to_record(), sort_keys=True)
        with self._session.begin() as s:
            s.execute(insert(AlertRow).values(
                alert_id=alert.alert_id, alert_type=alert.alert_type, member_id=alert.member_id,
                organization_id=alert.organization_id, facility=alert.facility,
                visit_number=alert.visit_number, event_type=alert.event_type, occurred_at=alert.occurred_at,
                received_at_ms=alert.received_at_ms, created_at_ms=alert.created_at_ms, payload=payload,
            ).on_conflict_do_nothing(index_elements=["alert_id"]))
            if not alert.organization_id:
                return []
            subs = s.scalars(select(Subscription).where(
                Subscription.organization_id == alert.organization_id, Subscription.active.is_(True))).all()
            ids = []
            for sub in subs:
                if not wants(sub.event_types, alert.alert_type):
                    continue
                wid = webhook_id(alert.alert_id, sub.id)
                s.execute(insert(Delivery).values(
                    webhook_id=wid, alert_id=alert.alert_id, subscription_id=sub.id, event_type=alert.alert_type,
                    body=body_for(alert, wid), received_at_ms=alert.received_at_ms, status="pending",
                    attempts=0, next_attempt_at=time.time(),
                ).on_conflict_do_nothing(index_elements=["webhook_id"]))
                ids.append(wid)
            return ids

    def claim_due(self, now: float, lease_s: float, limit: int = 100) -> list[DeliveryJob]:
        """Pending deliveries whose time has come, leased for ``lease_s`` so no other dispatcher
        (or this one on its next poll) sends them at the same time."""
        with self._session.begin() as s:
            rows = s.execute(
                select(Delivery, Subscription.url, Subscription.secret)
                .join(Subscription, Subscription.id == Delivery.subscription_id)
                .where(Delivery.status == "pending", Delivery.next_attempt_at <= now)
                .order_by(Delivery.next_attempt_at).limit(limit)
            ).all()
            jobs = []
            for delivery, url, secret in rows:
                claimed = s.execute(
                    update(Delivery)
                    .where(Delivery.webhook_id == delivery.webhook_id,
                           Delivery.next_attempt_at == delivery.next_attempt_at)
                    .values(next_attempt_at=now + lease_s)
                ).rowcount
                if claimed:
                    jobs.append(DeliveryJob(delivery.webhook_id, url, secret, delivery.body,
                                            delivery.attempts, delivery.received_at_ms))
            return jobs

    def record_attempt(self, job: DeliveryJob, outcome: str, status_code: int | None, duration_ms: float,
                       error: str | None, next_attempt_at: float | None) -> None:
        """Record one attempt. ``next_attempt_at`` None means no retry: delivered, or given up."""
        now = time.time()
        attempt = job.attempts + 1
        if outcome == "success":
            status, values = "delivered", {"delivered_at": now}
        elif next_attempt_at is None:
            status, values = "failed", {}
        else:
            status, values = "pending", {"next_attempt_at": next_attempt_at}
        with self._session.begin() as s:
            s.add(DeliveryAttempt(webhook_id=job.webhook_id, attempt=attempt, at=now, outcome=outcome,
                                  status_code=status_code, duration_ms=duration_ms, error=error))
            s.execute(update(Delivery).where(Delivery.webhook_id == job.webhook_id).values(
                status=status, attempts=attempt, last_error=error, **values))

    # -- reading back ----------------------------------------------------------------------------
    def alerts(self) -> list[AlertRow]:
        with self._session() as s:
            return list(s.scalars(select(AlertRow).order_by(AlertRow.created_at_ms)))

    def deliveries(self) -> list[Delivery]:
        with self._session() as s:
            return list(s.scalars(select(Delivery)))

    def attempts(self, webhook_id: str) -> list[DeliveryAttempt]:
        with self._session() as s:
            return list(s.scalars(select(DeliveryAttempt).where(DeliveryAttempt.webhook_id == webhook_id)
                                  .order_by(DeliveryAttempt.attempt)))
