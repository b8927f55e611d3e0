"""The worker's operational pages: Prometheus metrics and health. They carry counts only, never
member data, so they need no token; everything about members is in streams/api/, behind one."""
from __future__ import annotations

import asyncio
from collections import Counter

import faust
from faust.web import Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from streams.metrics import STATE_KEYS, exposition
from streams.pipeline import Pipeline


def register(p: Pipeline) -> None:
    app = p.app
    store = p.store.attribution

    @app.page("/metrics")
    async def metrics(web: faust.web.Web, request: Request) -> Response:
        # aiohttp refuses a charset inside content_type, and Prometheus' content type carries one.
        children = await asyncio.to_thread(lambda: {**p.attribution.metrics(), **p.sinks.metrics()})
        STATE_KEYS.labels(consumer="worker").set(len(p.tables["visits"]))
        # Lag and SQL gauges ask the broker and the database: off the event loop.
        measured = await asyncio.to_thread(lambda: [f for c in p.collectors for f in c.collect()])
        return web.bytes(exposition(children, measured), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/health")
    async def health(web: faust.web.Web, request: Request) -> Response:
        assigned = app.consumer.assignment() if app.consumer else set()
        visits = p.tables["visits"]
        return web.json({
            "assigned_partitions": len(assigned),
            "visits": dict(Counter(v["status"] for v in visits.values() if v)),
            **await asyncio.to_thread(p.attribution.counts),
            "attributed": await asyncio.to_thread(store.attributed_count),  # stored, as routing reads it
        })
