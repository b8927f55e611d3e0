"""ADT agents: raw HL7 → events → visit state → alerts."""
from __future__ import annotations

import time

import faust

from streams import topics
from streams.adt import visits
from streams.adt.parse import parse_adt
from streams.metrics import ALERTS, DUPLICATES
from streams.models import AdtEvent
from streams.pipeline import Pipeline


def now_ms() -> int:
    return int(time.time() * 1000)


def register(p: Pipeline) -> None:
    events_topic, alerts_topic = p.topic(topics.ADT_EVENTS), p.topic(topics.ALERTS)
    encounters_topic = p.topic(topics.ENCOUNTERS)
    expiry_topic = p.topic(topics.VISIT_EXPIRY)
    visit_table = p.table("visits")
    autoclose_s = p.settings.ed_visit_autoclose_s

    async def parse_raw(event: faust.EventT) -> None:
        # The ingress stamps the Kafka timestamp with the MLLP receipt time.
        received_ms = int((event.message.timestamp or time.time()) * 1000)
        adt = parse_adt(event.value, received_ms)
        await events_topic.send(key=adt.visit_key.encode(), value=p.codec.encode(adt))

    async def track_visit(event: faust.EventT) -> None:
        adt = p.codec.decode(event.value, AdtEvent)
        stored = visit_table.get(adt.visit_key)
        outcome = visits.apply(visits.VisitState.from_dict(stored) if stored else None, adt, now_ms())
        if outcome.duplicate:
            DUPLICATES.inc()
        # Alerts are confirmed by the broker before the state that says "raised" is written:
        # a crash in between re-raises the alert (same id) instead of losing it.
        for alert in outcome.alerts:
            sent = await alerts_topic.send(key=(alert.member_id or adt.visit_key).encode(), value=p.codec.encode(alert))
            await sent
            ALERTS.labels(alert_type=alert.alert_type).inc()
        for encounter in outcome.encounters:  # to the member's care gaps, keyed by member
            await (await encounters_topic.send(key=encounter.member_id.encode(), value=p.codec.encode(encounter)))
        state = outcome.state.to_dict()
        if state != stored:
            visit_table[adt.visit_key] = state

    async def expire_visit(event: faust.EventT) -> None:
        key = event.value.decode()
        stored = visit_table.get(key)
        if stored:
            state = visits.VisitState.from_dict(stored)
            if visits.expire(state, now_ms(), autoclose_s):
                visit_table[key] = state.to_dict()

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
