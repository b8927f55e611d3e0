"""The Faust app: topics, tables and thin agents wiring the pure ADT and visit logic to them.

Flow: adt.raw --parse--> adt.events --visit state--> alerts --route + store--> SQL outbox --> webhooks.
Every agent runs with concurrency 1 (faust-streaming can commit past an in-flight message
otherwise) and turns bad input into a dead letter instead of raising.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import faust
import mode
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sinks.sql.store import Store
from sinks.webhooks.dispatcher import Dispatcher
from sinks.webhooks.payloads import alert_body
from streams import topics
from streams.adt import visits
from streams.adt.parse import AdtParseError, parse_adt
from streams.config import Settings
from streams.deadletters import dead_letter
from streams.metrics import ALERTS, ALERTS_ROUTED, DUPLICATES, MESSAGES_IN
from streams.models import AdtEvent, Alert, RosterEntry
from streams.serialization.codec import DecodeError, codec_for

log = logging.getLogger(__name__)


class DispatcherService(mode.Service):
    """Runs the webhook dispatcher for as long as the worker runs."""

    def __init__(self, dispatcher: Dispatcher, **kwargs: Any):
        super().__init__(**kwargs)
        self.dispatcher = dispatcher

    @mode.Service.task
    async def _run(self) -> None:
        await self.dispatcher.run()

    async def on_stop(self) -> None:
        await self.dispatcher.close()


@dataclass
class Pipeline:
    app: faust.App
    services: list[mode.Service]
    store: Store


def now_ms() -> int:
    return int(time.time() * 1000)


def build(settings: Settings, bootstrap: str) -> Pipeline:
    app = faust.App(
        settings.app_id,
        broker=f"gapstream://{bootstrap}",  # streams/kafka/faust_transport.py
        store="memory://",
        datadir=str(settings.data_dir / "faust"),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        # Short group timeouts: the embedded broker holds the first join for the whole rebalance timeout.
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=6.0,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_enabled=True,
    )
    codec = codec_for(settings.schema_registry_url)
    store = Store(settings.sqlalchemy_url)
    dispatcher = Dispatcher(store, settings.webhook_timeout_s, settings.webhook_max_attempts,
                            settings.webhook_backoff_s)

    def topic(name: str) -> faust.TopicT:
        return app.topic(name, key_serializer="raw", value_serializer="raw", partitions=settings.topic_partitions)

    raw_topic, events_topic, alerts_topic = topic(topics.ADT_RAW), topic(topics.ADT_EVENTS), topic(topics.ALERTS)
    roster_topic, expiry_topic, dlq_topic = topic(topics.ROSTER), topic(topics.VISIT_EXPIRY), topic(topics.DLQ)
    visit_table = app.Table("visits", default=None, partitions=settings.topic_partitions)
    roster_table = app.Table("roster", default=None, partitions=settings.topic_partitions)

    async def to_dlq(source: str, reason: str, detail: str, payload: bytes) -> None:
        await dlq_topic.send(value=codec.encode(dead_letter(source, reason, detail, payload)))

    def guarded(source: str, handle: Callable[[faust.EventT], Awaitable[None]]):
        """Run ``handle`` per event; bad input and unexpected errors become dead letters."""
        async def agent(stream: faust.StreamT) -> None:
            async for event in stream.events():
                MESSAGES_IN.labels(topic=source).inc()
                try:
                    await handle(event)
                except (DecodeError, AdtParseError) as exc:
                    await to_dlq(source, exc.reason, exc.detail, event.value)
                except Exception as exc:
                    log.exception("unexpected error processing a message from %s", source)
                    await to_dlq(source, "processing_error", f"{type(exc).__name__}: {exc}", event.value)
        agent.__name__ = f"agent_{source.replace('.', '_')}"
        return agent

    async def parse_raw(event: faust.EventT) -> None:
        received_ms = int((event.message.timestamp or time.time()) * 1000)
        adt = parse_adt(event.value, received_ms)
        await events_topic.send(key=adt.visit_key.encode(), value=codec.encode(adt))

    async def track_visit(event: faust.EventT) -> None:
        adt = codec.decode(event.value, AdtEvent)
        stored = visit_table.get(adt.visit_key)
        outcome = visits.apply(visits.VisitState.from_dict(stored) if stored else None, adt, now_ms())
        if outcome.duplicate:
            DUPLICATES.inc()
        # Alerts are confirmed by the broker before the state that says "raised" is written:
        # a crash in between re-raises the alert (same id) instead of losing it.
        for alert in outcome.alerts:
            sent = await alerts_topic.send(key=(alert.member_id or adt.visit_key).encode(), value=codec.encode(alert))
            await sent
            ALERTS.labels(alert_type=alert.alert_type).inc()
        if stored is None or outcome.state.to_dict() != stored:
            visit_table[adt.visit_key] = outcome.state.to_dict()

    async def expire_visit(event: faust.EventT) -> None:
        key = event.value.decode()
        stored = visit_table.get(key)
        if stored:
            state = visits.VisitState.from_dict(stored)
            if visits.expire(state, now_ms(), settings.ed_visit_autoclose_s):
                visit_table[key] = state.to_dict()

    async def route_alert(event: faust.EventT) -> None:
        alert = codec.decode(event.value, Alert)
        alert.organization_id = roster_table.get(alert.member_id) if alert.member_id else None
        ALERTS_ROUTED.labels(routed="yes" if alert.organization_id else "no").inc()
        # Stored (alert and its pending deliveries) before the offset moves on: at-least-once.
        if await asyncio.to_thread(store.save_alert, alert, alert_body):
            dispatcher.wake()

    async def update_roster(event: faust.EventT) -> None:
        entry = codec.decode(event.value, RosterEntry)
        if entry.organization_id:
            roster_table[entry.member_id] = entry.organization_id
        else:
            roster_table.pop(entry.member_id, None)

    for source, handle in ((raw_topic, parse_raw), (events_topic, track_visit), (expiry_topic, expire_visit),
                           (alerts_topic, route_alert), (roster_topic, update_roster)):
        app.agent(source, concurrency=1, name=f"gapstream.{handle.__name__}")(
            guarded(source.get_topic_name(), handle))

    @app.timer(settings.visit_sweep_interval_s)
    async def sweep_visits() -> None:
        # Tables can only be written from an agent, so the sweep asks the expiry agent to do it.
        deadline = now_ms() - settings.ed_visit_autoclose_s * 1000
        for key, stored in list(visit_table.items()):
            if stored and stored["status"] == "open" and stored["emergency"] and stored["last_seen_ms"] <= deadline:
                await expiry_topic.send(key=key.encode(), value=key.encode())

    @app.page("/metrics")
    async def metrics(web: faust.web.Web, request: faust.web.Request) -> faust.web.Response:
        # aiohttp refuses a charset inside content_type, and Prometheus' content type carries one.
        return web.bytes(generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/health")
    async def health(web: faust.web.Web, request: faust.web.Request) -> faust.web.Response:
        assigned = app.consumer.assignment() if app.consumer else set()
        by_status = Counter(v["status"] for v in visit_table.values() if v)
        return web.json({"assigned_partitions": len(assigned), "roster_size": len(roster_table),
                         "visits": dict(by_status)})

    return Pipeline(app=app, services=[DispatcherService(dispatcher)], store=store)


def run_worker(settings: Settings, bootstrap: str) -> None:
    pipeline = build(settings, bootstrap)
    worker = faust.Worker(pipeline.app, *pipeline.services, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()
