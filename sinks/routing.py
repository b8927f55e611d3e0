"""Routing: an alert goes to the organization its member is attributed to at the time of the alert
(gap alerts arrive addressed by the member processor, which decides attribution and gaps together).

The current attribution is read from SQL, where sinks/sql/batch_sink.py keeps it from the
attribution.changes topic: every worker sees all of it, and the stream of changes (thousands a
second while claims load) is not consumed a second time here.
"""
from __future__ import annotations

import asyncio

import faust

from streams import topics
from streams.adt.visits import ED_VISIT
from streams.metrics import ALERTS_ROUTED
from streams.models import Alert
from streams.pipeline import Pipeline


def register(p: Pipeline) -> None:
    def route_and_store(alert: Alert) -> bool:
        if alert.member_id and alert.gap:
            p.store.gaps.record(alert.member_id, alert.gap)
        elif alert.member_id and alert.alert_type == ED_VISIT:
            # The member's open gaps as of now; the follow-up gap this visit opens follows as its own
            # gap.opened alert, which names this alert (the gaps are decided where the claims are).
            alert.open_gaps = p.store.gaps.for_member(alert.member_id, status="open")
            alert.cohorts = p.store.cohorts.of(alert.member_id)
        if alert.member_id and not alert.organization_id:  # gap alerts come addressed already
            current = p.store.attribution.current(alert.member_id)
            alert.organization_id = current.organization_id if current else None
        ALERTS_ROUTED.labels(alert_type=alert.alert_type, routed="yes" if alert.organization_id else "no").inc()
        return p.store.outbox.save_alert(alert) > 0

    async def route_alert(event: faust.EventT) -> None:
        # Stored (alert and its pending deliveries) before the offset moves on: at-least-once.
        if await asyncio.to_thread(route_and_store, p.codec.decode(event.value, Alert)):
            p.dispatcher.wake()

    p.agent(p.topic(topics.ALERTS), route_alert)
    p.agent(p.topic(topics.GAP_ALERTS), route_alert)
