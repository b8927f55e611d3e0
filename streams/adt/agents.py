"""ADT agents: raw HL7 → events → visit state → alerts."""
from __future__ import annotations

import time

import faust

from streams import topics
from streams.adt import visits
from streams.adt.parse import parse_adt
from streams.metrics import ALERTS, DUPLICATES
from streams.models import AdtEvent
from streams.pipeline import Batch, Pipeline


def now_ms() -> int:
    return int(time.time() * 1000)


def register(p: Pipeline) -> None:
    events_topic, alerts_topic = p.topic(topics.ADT_EVENTS), p.topic(topics.ALERTS)
    encounters_topic = p.topic(topics.ENCOUNTERS)
    expiry_topic = p.topic(topics.VISIT_EXPIRY)
    visit_table = p.table("visits")
    autoclose_s = p.settings.ed_visit_autoclose_s

    async def parse_raw(event: faust.EventT, _batch: Batch) -> None:
        # The ingress stamps the Kafka timestamp with the MLLP receipt time.
        received_ms = int((event.message.timestamp or time.time()) * 1000)
        adt = parse_adt(event.value, received_ms)
        # Handed to the producer, not confirmed here: Faust flushes its producer before it commits
        # an offset, and no state here depends on the event having arrived.
        await events_topic.send(key=adt.visit_key.encode(), value=p.codec.encode(adt))

    async def track_visit(event: faust.EventT, batch: Batch) -> None:
        adt = p.codec.decode(event.value, AdtEvent)
        stored = batch.get(visit_table, adt.visit_key)
        outcome = visits.apply(visits.VisitState.from_dict(stored) if stored else None, adt, now_ms())
        if outcome.duplicate:
            DUPLICATES.inc()
        for alert in outcome.alerts:
            await batch.send(alerts_topic, (alert.member_id or adt.visit_key).encode(), p.codec.encode(alert))
            batch.on_confirmed(ALERTS.labels(alert_type=alert.alert_type).inc)
        for encounter in outcome.encounters:  # to the member's care gaps, keyed by member
            await batch.send(encounters_topic, encounter.member_id.encode(), p.codec.encode(encounter))
        state = outcome.state.to_dict()
        if state != stored:
            batch.set(visit_table, adt.visit_key, state)

    async def expire_visit(event: faust.EventT, batch: Batch) -> None:
        key = event.value.decode()
        stored = batch.get(visit_table, key)
        if stored:
            state = visits.VisitState.from_dict(stored)
            if visits.expire(state, now_ms(), autoclose_s):
                batch.set(visit_table, key, state.to_dict())

    p.agent(p.topic(topics.ADT_RAW), parse_raw)
    p.agent(events_topic, track_visit)
    p.agent(expiry_topic, expire_visit)

    @p.app.timer(p.settings.visit_sweep_interval_s)
    async def sweep_visits() -> None:
        # Tables can only be written from an agent, so the sweep asks the expiry agent to do it.
        deadline = now_ms() - autoclose_s * 1000
        for key, stored in list(visit_table.items()):
            if stored and stored["status"] == "open" and stored["emergency"] and stored["last_seen_ms"] <= deadline:
                await expiry_topic.send(key=key.encode(), value=key.encode())
