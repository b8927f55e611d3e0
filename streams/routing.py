"""Routing: attribution changes keep a member → organization table; alerts are
sent to the organization the member is attributed to at the time of the alert."""
from __future__ import annotations

import asyncio

import faust

from sinks.webhooks.payloads import alert_body
from streams import topics
from streams.metrics import ALERTS_ROUTED
from streams.models import Alert, AttributionChange
from streams.pipeline import Pipeline


def register(p: Pipeline) -> None:
    # Co-partitioned with alerts (both keyed by member), so the lookup below is local.
    attributed = p.table("attributed")

    async def record_change(event: faust.EventT) -> None:
        # SQL history is written by sinks/sql/changes_sink.py, in batches; this keeps routing current.
        change = p.codec.decode(event.value, AttributionChange)
        if change.new_organization_id:
            attributed[change.member_id] = change.new_organization_id
        else:
            attributed.pop(change.member_id, None)

    async def route_alert(event: faust.EventT) -> None:
        alert = p.codec.decode(event.value, Alert)
        alert.organization_id = attributed.get(alert.member_id) if alert.member_id else None
        ALERTS_ROUTED.labels(routed="yes" if alert.organization_id else "no").inc()
        # Stored (alert and its pending deliveries) before the offset moves on: at-least-once.
        if await asyncio.to_thread(p.store.save_alert, alert, alert_body):
            p.dispatcher.wake()

    p.agent(p.topic(topics.ATTRIBUTION_CHANGES), record_change)
    p.agent(p.topic(topics.ALERTS), route_alert)
