"""The delivery outbox: who receives an alert, the queued deliveries the dispatcher works from, the
results of its attempts, recovery, and the accounting of disclosures.

Fan-out happens once, when an alert is stored, in the same transaction: an alert accepted from the
stream has all its deliveries (or the record of why one was withheld) before its offset moves on.
Storing an alert again changes nothing, and a delivery keeps its ``webhook-id`` and body for good,
which is what makes at-least-once processing safe for receivers.
"""
from __future__ import annotations

import fnmatch
import functools
import json
import logging
import time
import uuid
from collections import Counter, namedtuple
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

from sqlalchemy import Select, and_, bindparam, func, insert, or_, select, true, update
from sqlalchemy.orm import Session, sessionmaker

from sinks.sql.email_notices import EmailNotices
from sinks.sql.models import (
    AlertRow,
    Consent,
    Delivery,
    DeliveryAttempt,
    Organization,
    Subscription,
    WithheldDelivery,
    json_text,
)
from sinks.sql.sealing import Sealer, SealError
from sinks.webhooks.disclosure import Part2Rule
from sinks.webhooks.payloads import JSON, envelope, render, utc_iso
from sinks.webhooks.retries import Decision, Result, outcome_label
from streams.metrics import (
    ALERTS_ROUTED,
    DELIVERIES_WITHHELD,
    ENDPOINTS_DISABLED,
    WEBHOOKS_EXHAUSTED,
    WEBHOOKS_UNSIGNABLE,
)
from streams.models import Alert, AttributionChange

log = logging.getLogger(__name__)
# Renders a delivery's body and content type for a subscription, given its event number (None when
# not counted).
BodyFn = Callable[[Any, int | None], tuple[str, str]]
_WEBHOOK_NAMESPACE = uuid.UUID("0f9c3a51-2b7e-4d8a-9a57-0c8a2f61d3b4")
ERROR_CHARS = 500
_IN_CHUNK = 5000  # ids per IN list: below every database's limit on bound parameters


def wants(event_types: str, alert_type: str) -> bool:
    """Whether a subscription's comma-separated patterns take this event type."""
    return any(fnmatch.fnmatchcase(alert_type, p.strip()) for p in event_types.split(",") if p.strip())


def passes(filters: dict[str, list[str]], alert: Alert) -> bool:
    """A subscription's optional filters: an empty or absent list lets everything through."""
    measures, facilities = filters.get("measures"), filters.get("facilities")
    if measures and (alert.gap is None or alert.gap.measure_id not in measures):
        return False
    return not (facilities and alert.facility not in facilities)


ATTRIBUTION_CHANGED = "attribution.changed"
DELIVERY_EXHAUSTED, ENDPOINT_DISABLED = "delivery.exhausted", "endpoint.disabled"  # notices about delivery itself


class _Recipients:
    """Who of the subscriptions locked for a batch of alerts takes each alert: subscriptions of the
    organization the member is attributed to, and plan-level ones, that want the event type and
    whose filters pass it. Indexed once per batch, filters parsed once."""

    def __init__(self, subscriptions: list[Any], told: dict[str, set[str]]):
        self._told, self._by_id = told, {sub.id: sub for sub in subscriptions}
        routable = [sub for sub in subscriptions if sub.routable]
        self._plan = [sub for sub in routable if sub.scope == "plan"]
        self._by_org: dict[str, list[Any]] = {}
        for sub in routable:
            if sub.scope != "plan":
                self._by_org.setdefault(sub.organization_id, []).append(sub)
        self._filters = {sub.id: json.loads(sub.filters or "{}") for sub in subscriptions}
        self._candidates: dict[str | None, list[Any]] = {}  # by organization, merged with the plan's, sorted once

    def of(self, alert: Alert) -> list[Any]:
        """In id order, the order the subscriptions were locked in. A cancellation goes to exactly
        the subscriptions that were sent the alert it withdraws, whatever their event types now."""
        if alert.cancels_alert_id is not None:
            return [self._by_id[i] for i in sorted(self._told.get(alert.cancels_alert_id, ())) if i in self._by_id]
        org = alert.organization_id
        if (candidates := self._candidates.get(org)) is None:
            candidates = self._candidates[org] = sorted([*self._plan, *self._by_org.get(org, [])],
                                                         key=lambda sub: sub.id)
        return [sub for sub in candidates
                if wants(sub.event_types, alert.alert_type) and passes(self._filters[sub.id], alert)]


def webhook_id(key: str, subscription_id: str) -> str:
    """Stable per event and subscription, so a receiver de-duplicates redeliveries by it."""
    return f"msg_{uuid.uuid5(_WEBHOOK_NAMESPACE, f'{key}|{subscription_id}').hex}"


@dataclass(frozen=True)
class Shard:
    """The endpoints one of ``count`` dispatchers sends to: those whose endpoint hashes to ``index``
    (``Subscription.endpoint_hash``). An endpoint belongs to one dispatcher, so its limit of requests
    in flight and the order of its members' events hold as they do with one."""
    index: int = 0
    count: int = 1

    @staticmethod
    def of(endpoint_hash: int, count: int) -> int:
        """The index of the shard an endpoint belongs to; claims select the same in SQL."""
        return endpoint_hash % count


EVERY_ENDPOINT = Shard()  # one dispatcher


@dataclass(frozen=True)
class DeliveryJob:
    webhook_id: str
    subscription_id: str
    organization_id: str
    endpoint: str
    url: str
    secrets: tuple[str, ...]
    body: str
    content_type: str
    attempts: int
    received_at_ms: int
    member_id: str | None
    event_type: str
    alert_id: str | None


# What a job carries of its delivery's row. The claim reads rows into plain tuples: a SQLAlchemy
# row's attribute costs over ten times a tuple's, and a claim reads thousands.
_Leased = namedtuple("_Leased", [f.name for f in fields(DeliveryJob) if f.name in Delivery.__table__.c])


class _Head(NamedTuple):
    """A subscription with one of the deliveries at the head of its queue."""
    id: str
    organization_id: str
    endpoint: str
    url: str
    secret: str
    previous_secret: str | None
    previous_secret_expires_at: float | None
    webhook_id: str
    subscription_id: str
    member_id: str | None
    event_number: int | None


_JOB_COLUMNS = [Delivery.__table__.c[name] for name in _Leased._fields]
_SUBSCRIPTION_COLUMNS = [Subscription.__table__.c[name] for name in _Head._fields[:7]]


@functools.cache
def _queue_heads(dialect: str, per_subscription: int) -> Select:
    """The first ``per_subscription`` due deliveries (``now``) of each active subscription of the
    ``shard`` (of ``shards``), not ``resting``, whose endpoint is not ``full``, oldest first, with
    what sending needs of the subscription. PostgreSQL reads each head with a lateral join; SQLite
    has none, but runs a correlated ``IN`` subquery once per subscription, through the same index.
    Built once, with the lists as expanding parameters: building and keying the statement anew cost
    a millisecond a claim."""
    d = Delivery.__table__.alias("head")
    head = (select(d.c.webhook_id, d.c.subscription_id, d.c.member_id, d.c.next_attempt_at, d.c.event_number)
            .where(d.c.subscription_id == Subscription.id, d.c.status == "pending",
                   d.c.next_attempt_at <= bindparam("now"))
            .order_by(d.c.next_attempt_at, d.c.event_number).limit(per_subscription))
    subscriptions = select(*_SUBSCRIPTION_COLUMNS).select_from(Subscription).where(
        Subscription.status == "active", Subscription.endpoint_hash % bindparam("shards") == bindparam("shard"),
        Subscription.endpoint.not_in(bindparam("full", expanding=True)),
        Subscription.id.not_in(bindparam("resting", expanding=True)))
    if dialect == "postgresql":
        rows = head.lateral()
        return subscriptions.join(rows, true()).add_columns(
            rows.c.webhook_id, rows.c.subscription_id, rows.c.member_id, rows.c.event_number,
        ).order_by(rows.c.next_attempt_at, rows.c.event_number)
    ids = head.with_only_columns(d.c.webhook_id).correlate(Subscription).scalar_subquery()
    return subscriptions.join(Delivery, Delivery.webhook_id.in_(ids)).add_columns(
        Delivery.webhook_id, Delivery.subscription_id, Delivery.member_id, Delivery.event_number,
    ).order_by(Delivery.next_attempt_at, Delivery.event_number)


_deliveries = Delivery.__table__
# Due at the time of the update, or another dispatcher leased it in between.
_LEASE = update(_deliveries).where(
    _deliveries.c.webhook_id.in_(bindparam("ids", expanding=True)), _deliveries.c.status == "pending",
    _deliveries.c.next_attempt_at <= bindparam("now")).values(next_attempt_at=bindparam("until")).returning(
    *_JOB_COLUMNS)


_subs = Subscription.__table__
# The statements below run for every alert stored and every batch of results: built once, so that
# SQLAlchemy neither builds nor keys them again each time (profiled: a third of a result write).
_ALREADY_QUEUED = select(_deliveries.c.webhook_id).where(_deliveries.c.webhook_id.in_(bindparam("ids", expanding=True)))
_COUNT_EVENTS = update(_subs).where(_subs.c.id == bindparam("sid")).values(
    events_since_start=_subs.c.events_since_start + bindparam("n"), last_sent_at=bindparam("now"))
_EVENT_COUNTS = select(_subs.c.id, _subs.c.events_since_start).where(
    _subs.c.id.in_(bindparam("ids", expanding=True)))
_QUEUE = insert(_deliveries)
_ROUTABLE = or_(  # only these take new alerts; those only named (sent an alert now withdrawn) take its cancellation
    and_(_subs.c.scope == "plan", _subs.c.organization_id.in_(
        select(Organization.id).where(Organization.plan_level.is_(True)))),
    and_(_subs.c.scope == "attributed", _subs.c.organization_id.in_(bindparam("organizations", expanding=True))))
# Paused and disabled subscriptions keep queueing: resuming sends what they missed.
_RECIPIENTS = select(_subs.c.id, _subs.c.organization_id, _subs.c.endpoint_hash, _subs.c.scope, _subs.c.event_types,
                     _subs.c.filters, _subs.c.payload_format, _ROUTABLE.label("routable")).where(
    or_(_ROUTABLE, _subs.c.id.in_(bindparam("ids", expanding=True))), _subs.c.status != "deleted").order_by(
    _subs.c.id).with_for_update()
_ATTEMPT = insert(DeliveryAttempt.__table__)
_DELIVERED = update(_deliveries).where(_deliveries.c.webhook_id == bindparam("wid")).values(
    status="delivered", delivered_at=bindparam("at"), attempts=bindparam("n"), last_error=None)
_RECOVERED = update(_subs).where(_subs.c.id.in_(bindparam("ids", expanding=True)),
                                 _subs.c.failing_since.is_not(None)).values(failing_since=None)
_FAILING_FROM = update(_subs).where(_subs.c.id == bindparam("sid"), _subs.c.failing_since.is_(None)).values(
    failing_since=bindparam("at"))
_FAILING_SINCE = select(_subs.c.id, _subs.c.failing_since).where(_subs.c.id.in_(bindparam("ids", expanding=True)))
_FAILED = update(_deliveries).where(_deliveries.c.webhook_id == bindparam("wid")).values(
    attempts=bindparam("n"), last_error=bindparam("error"), status=bindparam("st"), next_attempt_at=bindparam("next"))


def _secrets(sub: Any, now: float, sealer: Sealer) -> tuple[str, ...]:
    secrets = (sealer.open(sub.secret),)
    if sub.previous_secret and (sub.previous_secret_expires_at or 0) > now:
        secrets += (sealer.open(sub.previous_secret),)
    return secrets


def _job(d: _Leased, sub: _Head, secrets: tuple[str, ...]) -> DeliveryJob:
    return DeliveryJob(**d._asdict(), endpoint=sub.endpoint, url=sub.url, secrets=secrets)

@dataclass(frozen=True)
class Claim:
    """Deliveries leased to one dispatcher, and the (subscription, member) pairs that had a due
    delivery held back behind an earlier one of the same member: the end of that earlier delivery is
    what makes the next one claimable."""
    jobs: list[DeliveryJob]
    held: frozenset[tuple[str, str | None]] = frozenset()


@dataclass(frozen=True)
class _Event:
    """Something to queue for subscriptions: an alert, a notice, a ping or a heartbeat."""
    key: str  # with the subscription, makes the webhook id
    event_type: str
    body_for: BodyFn
    alert_id: str | None = None
    member_id: str | None = None
    received_at_ms: int | None = None


@dataclass(frozen=True)
class AttemptResult:
    job: DeliveryJob
    result: Result
    decision: Decision
    duration_ms: float
    at: float


class Outbox:
    def __init__(self, session: sessionmaker[Session], insert: Callable, part2: Part2Rule, sealer: Sealer,
                 disable_after_s: float = 5 * 24 * 3600.0):
        self._session, self._insert, self._part2, self._sealer = session, insert, part2, sealer
        # Built once, the rows going as its parameters, so SQLAlchemy compiles it once; and Core:
        # through the ORM, a bulk insert spent more in the ORM than in the database (profiled).
        alerts = AlertRow.__table__
        self._insert_alerts = insert(alerts).on_conflict_do_nothing(index_elements=["alert_id"]).returning(
            alerts.c.alert_id)
        self.disable_after_s = disable_after_s
        # Told, once they are committed, the endpoint hashes that alerts and attribution changes
        # queued deliveries for: the sink process rings those endpoints' dispatchers (Shard).
        self.on_queued: Callable[[set[int]], None] = lambda endpoint_hashes: None
        self._unsignable_logged: dict[str, float] = {}  # subscription -> when its unreadable secret was logged

    # -- queueing ---------------------------------------------------------------------------------
    def _queue(self, s: Session, subs: list[Any], key: str, event_type: str, body_for: BodyFn, numbered: bool,
               alert_id: str | None = None, member_id: str | None = None,
               received_at_ms: int | None = None) -> list[str]:
        """One event to each of ``subs``; see :meth:`_queue_many`."""
        event = _Event(key, event_type, body_for, alert_id, member_id, received_at_ms)
        return self._queue_many(s, [(sub, event) for sub in subs], numbered)

    def _queue_many(self, s: Session, pairs: list[tuple[Any, _Event]], numbered: bool) -> list[str]:
        """A delivery per (subscription, event) pair (subscriptions are rows with ``id`` and
        ``organization_id``), except where it exists already; returns the webhook ids queued now.
        A subscription's events are numbered in the order of ``pairs``. Called once the transaction
        holds the subscriptions' row locks (PostgreSQL), or on SQLite mostly after its first write
        took the file's lock (``save_alerts``), so two workers fanning out the same event see each
        other's rows: none is queued twice and no number is skipped. ``notify_attribution`` reads
        before it writes: on SQLite, a second worker queueing the same change fails on the
        delivery's key and rolls back, its numbers with it. A few statements for the whole batch,
        whatever its size: at one set per alert, storing alerts cost the sink milliseconds each."""
        ids = [webhook_id(event.key, sub.id) for sub, event in pairs]
        if not ids:
            return []
        conn = s.connection()
        existing: set[str] = set()
        for start in range(0, len(ids), _IN_CHUNK):
            existing.update(conn.execute(_ALREADY_QUEUED, {"ids": ids[start:start + _IN_CHUNK]}).scalars())
        new = []
        for wid, (sub, event) in zip(ids, pairs, strict=True):
            if wid not in existing:
                existing.add(wid)  # a pair twice in a batch is queued once
                new.append((wid, sub, event))
        if not new:
            return []
        now = time.time()
        first: dict[str, int] = {}  # subscription -> its first event number in this batch
        if numbered:
            counts = Counter(sub.id for _, sub, _ in new)
            conn.execute(_COUNT_EVENTS, [{"sid": sub_id, "n": n, "now": now} for sub_id, n in counts.items()])
            last = dict(conn.execute(_EVENT_COUNTS, {"ids": list(counts)}).all())
            first = {sub_id: last[sub_id] - n + 1 for sub_id, n in counts.items()}
        rows = []
        for wid, sub, event in new:
            number = None
            if numbered:
                number, first[sub.id] = first[sub.id], first[sub.id] + 1
            body, content_type = event.body_for(sub, number)
            rows.append({"webhook_id": wid, "alert_id": event.alert_id, "subscription_id": sub.id,
                         "organization_id": sub.organization_id, "member_id": event.member_id,
                         "event_type": event.event_type, "event_number": number, "body": body,
                         "content_type": content_type, "received_at_ms": event.received_at_ms or int(now * 1000),
                         "created_at": now, "status": "pending", "attempts": 0, "next_attempt_at": now})
        conn.execute(_QUEUE, rows)
        return [r["webhook_id"] for r in rows]

    def _told(self, s: Session, alert_ids: set[str]) -> dict[str, set[str]]:
        """The subscriptions each alert was queued for."""
        told: dict[str, set[str]] = {}
        if alert_ids:
            for alert_id, sub_id in s.execute(select(Delivery.alert_id, Delivery.subscription_id)
                                               .where(Delivery.alert_id.in_(alert_ids))):
                told.setdefault(alert_id, set()).add(sub_id)
        return told

    def _subscriptions(self, s: Session, organizations: set[str | None], ids: set[str] = frozenset()) -> list[Any]:
        """Subscriptions of the organizations the members are attributed to, plan-level ones, and
        those named, locked (PostgreSQL) in one statement in id order until the fan-out commits, so
        that two transactions fanning out to the same organizations cannot deadlock."""
        return s.connection().execute(_RECIPIENTS, {"organizations": [o for o in organizations if o],
                                                    "ids": list(ids)}).all()

    @staticmethod
    def _lock(s: Session, *wanted: Any) -> None:
        """Row locks (PostgreSQL) on the subscriptions a transaction is about to write, those any of
        the conditions selects, in one statement, in id order. Every writer of event counters and
        subscription status takes its locks this way, as :meth:`_subscriptions` does, so two sinks
        writing the same subscriptions at once wait for each other instead of deadlocking."""
        # SQLite has no row locks: its transaction holds the whole file from the first write.
        if wanted and s.get_bind().dialect.name == "postgresql":
            s.execute(select(_subs.c.id).where(or_(*wanted)).order_by(_subs.c.id).with_for_update()).all()

    def _consenting(self, s: Session, member_id: str) -> set[str]:
        return set(s.scalars(select(Consent.organization_id).where(
            Consent.member_id == member_id, Consent.kind == "part2", Consent.revoked_at.is_(None))))

    def save_alerts(self, alerts: list[Alert]) -> int:
        """Store the alerts and queue each, in order, for every subscription that may and wants to
        receive it, in one transaction. Returns how many deliveries were queued now (none for an alert
        stored before)."""
        rows: dict[str, dict[str, Any]] = {}
        for a in alerts:  # a batch may hold a replay of its own alert: the first one is kept
            rows.setdefault(a.alert_id, dict(
                alert_id=a.alert_id, alert_type=a.alert_type, member_id=a.member_id,
                organization_id=a.organization_id, facility=a.facility, visit_number=a.visit_number,
                event_type=a.event_type, occurred_at=a.occurred_at, received_at_ms=a.received_at_ms,
                created_at_ms=a.created_at_ms, payload=json_text(a.to_record())))
        if not rows:
            return 0
        routed: list[Alert] = []
        with self._session.begin() as s:
            stored = set(s.connection().execute(self._insert_alerts, list(rows.values())).scalars())
            told = self._told(s, {a.cancels_alert_id for a in alerts if a.alert_id in stored and a.cancels_alert_id})
            recipients = _Recipients(self._subscriptions(s, {a.organization_id for a in alerts if a.alert_id in stored},
                                                         set().union(*told.values())), told)
            pairs: list[tuple[Any, _Event]] = []
            for alert in alerts:
                # Stored before means fanned out then, in the same transaction: a replay decides nothing
                # again, so a subscription created or an attribution changed since does not get it now.
                if alert.alert_id not in stored:
                    continue
                stored.discard(alert.alert_id)
                routed.append(alert)
                if alert.member_id:
                    found = self._fan_out(s, alert, recipients.of(alert))
                    # A cancellation later in the same batch goes to whom this alert goes to.
                    told.setdefault(alert.alert_id, set()).update(sub.id for sub, _ in found)
                    pairs += found
            queued = len(self._queue_many(s, pairs, numbered=True))
        if queued:
            self.on_queued({sub.endpoint_hash for sub, _ in pairs})
        for alert in routed:
            ALERTS_ROUTED.labels(alert_type=alert.alert_type, routed="yes" if alert.organization_id else "no").inc()
        return queued

    def _fan_out(self, s: Session, alert: Alert, recipients: list[Any]) -> list[tuple[Any, _Event]]:
        """The alert for each recipient that may receive it; a Part 2 alert is withheld, on record,
        from a recipient without the member's consent."""
        sensitive = self._part2.reason(alert)
        redacted = self._part2.redacted(alert)
        consenting = self._consenting(s, alert.member_id) if recipients and (
            sensitive or redacted is not alert) else set()
        if sensitive:
            for sub in recipients:
                if sub.organization_id not in consenting:
                    self._withhold(s, alert, sub, sensitive)
            recipients = [sub for sub in recipients if sub.organization_id in consenting]

        def body_for(sub: Any, number: int | None) -> tuple[str, str]:
            shown = alert if sub.organization_id in consenting else redacted
            return render(shown, sub.payload_format, sub.id, number or 0)

        event = _Event(alert.alert_id, alert.alert_type, body_for, alert.alert_id, alert.member_id,
                       alert.received_at_ms)
        return [(sub, event) for sub in recipients]

    def _withhold(self, s: Session, alert: Alert, sub: Subscription, reason: str) -> None:
        inserted = s.execute(self._insert(WithheldDelivery).values(
            alert_id=alert.alert_id, subscription_id=sub.id, organization_id=sub.organization_id,
            member_id=alert.member_id, event_type=alert.alert_type, reason=reason, at=time.time(),
        ).on_conflict_do_nothing().returning(WithheldDelivery.id)).scalar()
        if inserted is not None:
            DELIVERIES_WITHHELD.labels(reason="part2").inc()
            log.info("withheld a %s event from subscription %s: %s", alert.alert_type, sub.id, reason)

    def notify(self, s: Session, event_type: str, about: list[tuple[str, str, str, dict[str, Any]]]) -> int:
        """Events about delivery itself (delivery.exhausted, endpoint.disabled), each to its
        organization's subscriptions that want it, other than the subscription it is about. ``about``
        holds (organization, subscription, key, data) per event; one query and one insert however
        many there are, since a dead endpoint's deliveries run out together."""
        if not about:
            return 0
        wanting = self._wanting(s, {org for org, _, _, _ in about}, event_type)
        at_ms = int(time.time() * 1000)
        pairs: list[tuple[Any, _Event]] = []
        for org, subscription_id, key, data in about:
            event = _Event(key, event_type, _notice(event_type, at_ms, data))
            pairs += [(sub, event) for sub in wanting.get(org, []) if sub.id != subscription_id]
        return len(self._queue_many(s, pairs, numbered=True))

    def _wanting(self, s: Session, organizations: set[str], event_type: str) -> dict[str, list[Subscription]]:
        """The organizations' subscriptions that want ``event_type``, by organization, in id order,
        locked (PostgreSQL) in that order as :meth:`_lock` would: their event counters are written next."""
        wanting: dict[str, list[Subscription]] = {}
        for sub in s.scalars(select(Subscription).where(Subscription.organization_id.in_(organizations),
                                                        Subscription.status != "deleted").order_by(Subscription.id)
                             .with_for_update()):
            if wants(sub.event_types, event_type):
                wanting.setdefault(sub.organization_id, []).append(sub)
        return wanting

    def notify_attribution(self, changes: list[AttributionChange]) -> int:
        """``attribution.changed`` to the organization a member is now attributed to (also when only the
        provider changed within it), and to the one the member left, which is not told where to."""
        orgs = {o for c in changes for o in (c.old_organization_id, c.new_organization_id) if o}
        if not orgs:
            return 0
        with self._session.begin() as s:
            wanting = self._wanting(s, orgs, ATTRIBUTION_CHANGED)
            pairs: list[tuple[Any, _Event]] = []
            for c in changes:
                told = {"member_id": c.member_id, "effective_date": c.effective_date}
                moved = c.new_organization_id != c.old_organization_id
                if c.new_organization_id in wanting and (moved or c.new_npi != c.old_npi):
                    event = _Event(f"attribution|{c.member_id}|{c.changed_at_ms}|to", ATTRIBUTION_CHANGED, _notice(
                        ATTRIBUTION_CHANGED, c.changed_at_ms, {**told, "attributed": True, "npi": c.new_npi,
                                                               "method": c.method_id, "reason": c.reason}),
                        member_id=c.member_id)
                    pairs += [(sub, event) for sub in wanting[c.new_organization_id]]
                if c.old_organization_id in wanting and moved:
                    event = _Event(f"attribution|{c.member_id}|{c.changed_at_ms}|from", ATTRIBUTION_CHANGED,
                                   _notice(ATTRIBUTION_CHANGED, c.changed_at_ms, {**told, "attributed": False}),
                                   member_id=c.member_id)
                    pairs += [(sub, event) for sub in wanting[c.old_organization_id]]
            queued = len(self._queue_many(s, pairs, numbered=True))
        if queued:
            self.on_queued({sub.endpoint_hash for sub, _ in pairs})
        return queued

    def ping(self, subscription_id: str) -> str:
        """A test event to one subscription, not counted among its events."""
        with self._session.begin() as s:
            sub = s.get_one(Subscription, subscription_id)
            [wid] = self._queue(s, [sub], f"ping|{uuid.uuid4()}", "ping",
                                _notice("ping", int(time.time() * 1000), {"message": "ping from gapstream"}),
                                numbered=False)
            return wid

    def queue_heartbeats(self, now: float) -> int:
        """A heartbeat to every active subscription that asked for one and has been sent nothing for
        its period. Claimed by a conditional update, so two workers do not both send one."""
        queued = 0
        with self._session.begin() as s:
            idle = s.scalars(select(Subscription).where(
                Subscription.status == "active", Subscription.heartbeat_period_s.is_not(None),
                Subscription.last_sent_at + Subscription.heartbeat_period_s <= now)
                .order_by(Subscription.id)).all()  # each claimed in id order, the order locks are taken in
            for sub in idle:
                claimed = s.execute(update(Subscription).where(
                    Subscription.id == sub.id, Subscription.last_sent_at == sub.last_sent_at).values(
                    last_sent_at=now)).rowcount
                if claimed:
                    data = {"events_since_subscription_start": sub.events_since_start}
                    queued += len(self._queue(s, [sub], f"heartbeat|{now}", "heartbeat",
                                              _notice("heartbeat", int(now * 1000), data), numbered=False))
        return queued

    # -- the dispatcher's side --------------------------------------------------------------------
    def claim_due(self, now: float, lease_s: float, per_endpoint: dict[str, int], default_slots: int,
                  busy: Collection[tuple[str, str | None]] = (), resting: Collection[str] = (),
                  shard: Shard = EVERY_ENDPOINT) -> Claim:
        """Due deliveries to the ``shard``'s endpoints, of active subscriptions other than those
        ``resting``, at most ``per_endpoint[endpoint]`` (else ``default_slots``) per endpoint, oldest first, one per
        subscription and member at a time (a member's events reach an endpoint in order), leased for
        ``lease_s`` so no other dispatcher sends them meanwhile.

        Each subscription's head of the queue is read through an index, a few rows each: the cost
        of a claim grows with the number of subscriptions, not with the backlog, so a dead
        endpoint's thousands of waiting deliveries do not slow down claiming for anyone else."""
        full = [e for e, free in per_endpoint.items() if free <= 0]
        with self._session() as s:  # free slots never exceed the default: a subscription's head is that long
            # Through the connection: the session would run each row through the ORM's loading.
            conn = s.connection()
            candidates = [_Head._make(row) for row in conn.execute(
                _queue_heads(conn.dialect.name, default_slots),
                {"now": now, "full": full, "resting": list(resting), "shard": shard.index, "shards": shard.count})]
        # Of a member's due events for a subscription, the lowest-numbered goes first, even when a
        # lease that expired (a crashed sender) made it due later than the next one.
        first: dict[tuple[str, str], _Head] = {}
        for row in candidates:
            key = (row.subscription_id, row.member_id)
            if row.member_id and (key not in first or row.event_number < first[key].event_number):
                first[key] = row
        taken: list[_Head] = []
        held: set[tuple[str, str | None]] = set()
        counts: dict[str, int] = {}
        secrets: dict[str, tuple[str, ...] | None] = {}  # by subscription; None: this worker cannot open it
        for row in candidates:
            key = (row.subscription_id, row.member_id)
            if row.member_id and (first[key] is not row or key in busy):
                held.add(key)
                continue
            if counts.get(row.endpoint, 0) >= per_endpoint.get(row.endpoint, default_slots):
                continue
            if row.id not in secrets:
                secrets[row.id] = self._signing(row, now)
            if secrets[row.id] is None:
                continue
            counts[row.endpoint] = counts.get(row.endpoint, 0) + 1
            taken.append(row)
        if not taken:
            return Claim([], frozenset(held))
        with self._session.begin() as s:
            claimed = s.connection().execute(_LEASE, {"ids": [row.webhook_id for row in taken], "now": now,
                                                      "until": now + lease_s})
            by_id = {row.webhook_id: row for row in map(_Leased._make, claimed)}
        return Claim([_job(by_id[row.webhook_id], row, secrets[row.id]) for row in taken  # type: ignore[arg-type]
                      if row.webhook_id in by_id], frozenset(held))

    def _signing(self, sub: Any, now: float) -> tuple[str, ...] | None:
        """The subscription's secrets, or None when this worker cannot open them. It lacks the key,
        not the delivery a chance: during a rolling key rotation, or with one worker misconfigured,
        another worker can still sign. So its deliveries are neither leased nor attempted here; the
        hold-up is counted, and logged once a minute per subscription, for the operator to mend."""
        try:
            return _secrets(sub, now, self._sealer)
        except SealError as exc:
            WEBHOOKS_UNSIGNABLE.inc()
            if now - self._unsignable_logged.get(sub.id, 0.0) >= 60:
                self._unsignable_logged[sub.id] = now
                log.error("cannot sign for subscription %s: %s", sub.id, exc)
            return None

    def record(self, results: Iterable[AttemptResult]) -> int:
        """Apply a batch of attempt results; returns how many notices (delivery.exhausted,
        endpoint.disabled) were queued by it. Attempts, successes and failures are each written
        with one statement; then each failing subscription is judged once (disabled when gone or
        failing for too long)."""
        results = list(results)
        delivered = [r for r in results if r.decision.outcome == "delivered"]
        failed = [r for r in results if r.decision.outcome != "delivered"]
        notices = 0
        with self._session.begin() as s:
            # A failure may tell the organization's other subscriptions, or disable its own; a success
            # writes only a subscription that was failing, so most successes lock nothing.
            self._lock(s, Subscription.organization_id.in_({r.job.organization_id for r in failed}),
                       and_(Subscription.id.in_({r.job.subscription_id for r in delivered}),
                            Subscription.failing_since.is_not(None)))
            conn = s.connection()  # not the session's bulk paths, which cost more per row
            if results:
                conn.execute(_ATTEMPT, [{
                    "webhook_id": r.job.webhook_id, "attempt": r.job.attempts + 1, "at": r.at,
                    "outcome": outcome_label(r.result), "status_code": r.result.status_code,
                    "duration_ms": r.duration_ms,
                    "error": None if r.decision.outcome == "delivered" else _error(r.result)}
                    for r in results])
            if delivered:
                conn.execute(_DELIVERED, [{"wid": r.job.webhook_id, "at": r.at, "n": r.job.attempts + 1}
                                          for r in delivered])
                conn.execute(_RECOVERED, {"ids": list({r.job.subscription_id for r in delivered})})
            if failed:
                notices += self._failed(s, failed)
        return notices

    def _failed(self, s: Session, failed: list[AttemptResult]) -> int:
        # One statement for the batch: a failing endpoint's results arrive by the hundred.
        s.connection().execute(_FAILED, [{
            "wid": r.job.webhook_id, "n": r.job.attempts + 1, "error": _error(r.result),
            "st": "exhausted" if r.decision.outcome == "exhausted" else "pending",
            # gone: stays queued, and goes out if the organization enables the endpoint again
            "next": r.decision.retry_at if r.decision.outcome == "retry" else r.at} for r in failed])
        exhausted = [r for r in failed if r.decision.outcome == "exhausted"]
        WEBHOOKS_EXHAUSTED.inc(len(exhausted))
        # A notice about delivery that runs out itself is kept and counted, but not told in turn: the
        # organization's other subscriptions, often on the same dead endpoint, would each tell the
        # rest, round after round, until they were disabled.
        told = [r for r in exhausted if r.job.event_type not in (DELIVERY_EXHAUSTED, ENDPOINT_DISABLED)]
        notices = self.notify(s, DELIVERY_EXHAUSTED, [(
            r.job.organization_id, r.job.subscription_id, f"exhausted|{r.job.webhook_id}", {
                "subscription_id": r.job.subscription_id, "webhook_id": r.job.webhook_id,
                "event_type": r.job.event_type, "alert_id": r.job.alert_id, "attempts": r.job.attempts + 1,
                "last_error": _error(r.result)}) for r in told])
        by_subscription: dict[str, list[AttemptResult]] = {}
        for r in failed:
            by_subscription.setdefault(r.job.subscription_id, []).append(r)
        # Each subscription is judged on its columns; only one to disable is loaded as an object.
        conn = s.connection()
        conn.execute(_FAILING_FROM, [{"sid": sid, "at": min(r.at for r in results)}
                                     for sid, results in by_subscription.items()])
        failing_since = dict(conn.execute(_FAILING_SINCE, {"ids": list(by_subscription)}).all())
        for subscription_id, results in by_subscription.items():
            gone = next((r for r in results if r.decision.outcome == "gone"), None)
            last, since = max(r.at for r in results), failing_since[subscription_id]
            if gone:
                notices += self.disable(s, s.get_one(Subscription, subscription_id), "the endpoint answered 410 Gone",
                                        gone.at)
            elif last - since >= self.disable_after_s:
                notices += self.disable(s, s.get_one(Subscription, subscription_id),
                                        f"failing since {utc_iso(since)}", last)
        return notices

    def disable(self, s: Session, sub: Subscription, reason: str, at: float) -> int:
        if sub.status == "disabled":
            return 0
        sub.status, sub.disabled_reason = "disabled", reason
        ENDPOINTS_DISABLED.inc()
        log.warning("disabled subscription %s: %s", sub.id, reason)
        # By e-mail too: the organization's other subscriptions may be on the same dead endpoint.
        EmailNotices.queue(s, sub.organization_id, f"gapstream: webhook subscription {sub.id} is disabled",
                           _disabled_text(sub, reason), at)
        return self.notify(s, ENDPOINT_DISABLED, [(sub.organization_id, sub.id, f"disabled|{sub.id}|{at}",
                                                     {"subscription_id": sub.id, "url": sub.url, "reason": reason})])

    # -- recovery ---------------------------------------------------------------------------------
    def backlog(self) -> tuple[int, float | None]:
        """Deliveries of alerts still to go to active subscriptions, and when the oldest was queued.
        Paused and disabled subscriptions are left out: their backlog waits on purpose."""
        # Through each active subscription's queue (its index): a join would let SQLite scan every
        # delivery ever made, at each scrape of the gauges.
        active = select(Subscription.id).where(Subscription.status == "active")
        with self._session() as s:
            count, oldest = s.execute(select(func.count(), func.min(Delivery.created_at)).where(
                Delivery.subscription_id.in_(active), Delivery.status == "pending",
                Delivery.alert_id.is_not(None))).one()
        return count, oldest

    def status(self, subscription_id: str) -> dict[str, Any]:
        with self._session() as s:
            sub = s.get_one(Subscription, subscription_id)
            counts = dict(s.execute(select(Delivery.status, func.count()).where(
                Delivery.subscription_id == subscription_id).group_by(Delivery.status)).all())
            last = s.execute(select(Delivery.last_error, Delivery.event_number).where(
                Delivery.subscription_id == subscription_id, Delivery.last_error.is_not(None))
                .order_by(Delivery.created_at.desc()).limit(1)).first()
            delivered = s.scalar(select(func.max(Delivery.event_number)).where(
                Delivery.subscription_id == subscription_id, Delivery.status == "delivered"))
        return {"subscription_id": sub.id, "status": sub.status, "disabled_reason": sub.disabled_reason,
                "events_since_subscription_start": sub.events_since_start,
                "last_delivered_event_number": delivered,
                "pending": counts.get("pending", 0), "delivered": counts.get("delivered", 0),
                "exhausted": counts.get("exhausted", 0),
                "failing_since": utc_iso(sub.failing_since) if sub.failing_since else None,
                "last_error": last[0] if last else None}

    def events(self, subscription_id: str, first: int, last: int, limit: int = 1000) -> list[dict[str, Any]]:
        """The subscription's events numbered ``first`` to ``last``, with their bodies as sent."""
        with self._session() as s:
            rows = s.scalars(select(Delivery).where(
                Delivery.subscription_id == subscription_id, Delivery.event_number >= first,
                Delivery.event_number <= last).order_by(Delivery.event_number).limit(limit)).all()
        return [{"event_number": d.event_number, "webhook_id": d.webhook_id, "event_type": d.event_type,
                 "status": d.status, "attempts": d.attempts, "created_at": utc_iso(d.created_at),
                 "content_type": d.content_type, "body": d.body} for d in rows]

    def message(self, subscription_id: str, wid: str) -> tuple[Delivery, list[DeliveryAttempt]] | None:
        with self._session() as s:
            d = s.get(Delivery, wid)
        if d is None or d.subscription_id != subscription_id:
            return None
        return d, self.attempts(wid)

    def attempts(self, wid: str) -> list[DeliveryAttempt]:
        with self._session() as s:
            return list(s.scalars(select(DeliveryAttempt).where(DeliveryAttempt.webhook_id == wid)
                                  .order_by(DeliveryAttempt.attempt)))

    def resend(self, subscription_id: str, wid: str | None = None, since: float | None = None) -> int:
        """Queue again, under the same webhook ids and with a fresh retry schedule, one message or
        every event since a time. Returns how many."""
        where = [Delivery.subscription_id == subscription_id]
        where.append(Delivery.webhook_id == wid if wid is not None else Delivery.created_at >= (since or 0))
        with self._session.begin() as s:
            return s.execute(update(Delivery).where(*where).values(
                status="pending", attempts=0, next_attempt_at=time.time(), delivered_at=None)).rowcount

    def alert_for(self, organization_id: str, alert_id: str) -> dict[str, Any] | None:
        """The alert as the organization may see it: only if it was queued for one of its
        subscriptions, and without Part 2 content unless the member consented."""
        with self._session() as s:
            row = s.get(AlertRow, alert_id)
            sent = s.scalar(select(func.count()).select_from(Delivery).where(
                Delivery.alert_id == alert_id, Delivery.organization_id == organization_id))
            if row is None or not sent:
                return None
            alert = Alert.from_record(json.loads(row.payload))
            consented = organization_id in self._consenting(s, alert.member_id) if alert.member_id else False
        return (alert if consented else self._part2.redacted(alert)).to_record()

    # -- accounting of disclosures ----------------------------------------------------------------
    def disclosures(self, member_id: str) -> list[dict[str, Any]]:
        """Every event about the member queued for an organization (with what became of it), and
        every one withheld, oldest first."""
        with self._session() as s:
            sent = s.execute(select(Delivery, Subscription.endpoint).join(
                Subscription, Subscription.id == Delivery.subscription_id).where(Delivery.member_id == member_id)).all()
            withheld = s.execute(select(WithheldDelivery, Subscription.endpoint).join(
                Subscription, Subscription.id == WithheldDelivery.subscription_id)
                .where(WithheldDelivery.member_id == member_id)).all()
        rows = [{"at": d.created_at, "organization_id": d.organization_id, "subscription_id": d.subscription_id,
                 "endpoint": endpoint, "event_type": d.event_type, "alert_id": d.alert_id,
                 "webhook_id": d.webhook_id, "outcome": d.status,
                 "delivered_at": utc_iso(d.delivered_at) if d.delivered_at else None, "reason": None}
                for d, endpoint in sent]
        rows += [{"at": w.at, "organization_id": w.organization_id, "subscription_id": w.subscription_id,
                  "endpoint": endpoint, "event_type": w.event_type, "alert_id": w.alert_id, "webhook_id": None,
                  "outcome": "withheld", "delivered_at": None, "reason": w.reason} for w, endpoint in withheld]
        rows.sort(key=lambda r: r["at"])
        return [{**r, "at": utc_iso(r["at"])} for r in rows]


def _notice(event_type: str, at_ms: int, data: dict[str, Any]) -> BodyFn:
    """The body of an event gapstream raises itself (ping, heartbeat, delivery notices)."""
    return lambda sub, number: (envelope(event_type, at_ms, sub.id, number, data), JSON)


def _disabled_text(sub: Subscription, reason: str) -> str:
    return (f"gapstream stopped sending to {sub.url} for subscription {sub.id} of {sub.organization_id}: "
            f"{reason}.\n\nIts events keep queuing and none is lost. When the endpoint works again, resume the "
            f"subscription (POST /subscriptions/{sub.id}/resume with the organization's API token): everything "
            f"queued since is sent, oldest first, under the same webhook-ids.\n")


def _error(result: Result) -> str:
    if result.status_code is not None:
        text = f"HTTP {result.status_code}"
    else:
        text = f"{result.error or 'no answer'}: {result.detail}" if result.detail else (result.error or "no answer")
    return text[:ERROR_CHARS]
