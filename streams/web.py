"""The worker's HTTP API: metrics, health, attribution explanations, disputes and attribution lists,
care gaps and their reports (the DEQM gaps-in-care bundle, worklists, scorecards).

Answers come from SQL (any worker can serve any member); changes a reviewer makes are published
to the overrides topic and applied by the attribution agent like any other message.
What an organization reads about its own members (attribution list, worklist) is in
streams/api/, behind its API token; the rest here is for the plan's internal network (reviewers,
care management), which the operator keeps it on.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections import Counter
from dataclasses import asdict
from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST

from sinks.sql.attribution import DisputeError
from sinks.webhooks.payloads import utc_iso
from streams import topics
from streams.caregaps.catalog import catalog, consolidated
from streams.caregaps.deqm import gaps_bundle
from streams.caregaps.reports import DISPUTE_ROUTE, scorecard
from streams.metrics import STATE_KEYS, exposition
from streams.pipeline import Pipeline


def _row(obj: Any) -> dict[str, Any]:
    return {c.key: getattr(obj, c.key) for c in obj.__table__.columns}


def register(p: Pipeline) -> None:
    app, store = p.app, p.store.attribution
    overrides_topic = p.topic(topics.ATTRIBUTION_OVERRIDES)

    async def body(request: Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except ValueError as exc:
            raise DisputeError("the request body must be JSON") from exc
        if not isinstance(data, dict):
            raise DisputeError("the request body must be a JSON object")
        return data

    def fields(data: dict[str, Any], *names: str) -> list[str]:
        missing = [n for n in names if not str(data.get(n) or "").strip()]
        if missing:
            raise DisputeError(f"missing field(s): {', '.join(missing)}")
        return [str(data[n]).strip() for n in names]

    @app.page("/metrics")
    async def metrics(web: faust.web.Web, request: Request) -> Response:
        # aiohttp refuses a charset inside content_type, and Prometheus' content type carries one.
        children = await asyncio.to_thread(lambda: {**p.attribution.metrics(), p.sinks.name: p.sinks.call("metrics")})
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

    @app.page("/attribution/{member_id}")
    class Attribution(View):
        async def get(self, request: Request, member_id: str) -> Response:
            """The stored decision and history (any worker), and the decision evaluated now from the
            member's state when this worker holds it, which also explains why nobody has the member."""
            current = await asyncio.to_thread(store.current, member_id)
            live = await asyncio.to_thread(p.attribution.explain, member_id)
            if current is None and live is None:
                return self.json({"error": f"nothing known about member {member_id}"}, status=404)
            row = None
            if current is not None:
                row = _row(current)
                row["explanation"] = json.loads(row["explanation"])
            history = await asyncio.to_thread(store.history, member_id)
            return self.json({"current": row, "history": [_row(h) for h in history], "live": live})

    @app.page("/gaps/{member_id}")
    class Gaps(View):
        async def get(self, request: Request, member_id: str) -> Response:
            """The member's care gaps in their latest status (``?status=open`` for the open ones), and
            the cohorts the member is in."""
            found = await asyncio.to_thread(p.store.gaps.for_member, member_id, request.query.get("status"))
            cohorts = await asyncio.to_thread(p.store.cohorts.of, member_id)
            return self.json({"member_id": member_id, "cohorts": cohorts, "gaps": [g.to_record() for g in found]})

    @app.page("/gaps/{member_id}/report")
    class GapsReport(View):
        async def get(self, request: Request, member_id: str) -> Response:
            """The member's gaps in care as a FHIR R4 document Bundle (Da Vinci DEQM shape)."""
            found = await asyncio.to_thread(p.store.gaps.for_member, member_id)
            return self.json(gaps_bundle(member_id, found, utc_iso(time.time())))

    @app.page("/providers/{npi}/scorecard")
    class Scorecard(View):
        async def get(self, request: Request, npi: str) -> Response:
            """Each measure's rate for the provider's attributed members, with the median and percentile
            of the providers of the same specialty; ``?year=`` (default: this year)."""
            year = request.query.get("year", str(dt.datetime.now(dt.UTC).year))
            if not year.isdigit():
                return self.json({"error": f"year must be a number, not {year!r}"}, status=400)
            directory = await asyncio.to_thread(p.store.directory.all)
            outcomes = await asyncio.to_thread(p.store.gaps.outcomes, int(year))
            methods = await asyncio.to_thread(p.store.gaps.methods_of, npi)
            groups = {n: row.taxonomy or row.role for n, row in directory.items()}
            me = directory.get(npi)
            return self.json({
                "npi": npi, "name": me.name if me else None, "peer_group": groups.get(npi), "year": int(year),
                "attribution_methods": methods, "dispute_route": DISPUTE_ROUTE,
                "measures": [asdict(score) for score in scorecard(npi, outcomes, groups)]})

    @app.page("/catalog")
    class Catalog(View):
        async def get(self, request: Request) -> Response:
            """Every program, or with ``?programs=A,B`` the one list an organization contracted with
            those programs is measured on."""
            wanted = [p for p in request.query.get("programs", "").split(",") if p]
            if not wanted:
                return self.json({pid: {"title": p.title, "product_lines": list(p.product_lines), "source": p.source,
                                        "weights": p.weights} for pid, p in catalog().items()})
            try:
                listed = consolidated(wanted)
            except KeyError as exc:
                return self.json({"error": f"unknown program {exc.args[0]}"}, status=404)
            return self.json([{"measure_id": m.measure_id, "title": m.title, "total_weight": m.total_weight,
                               "programs": [{"program": p, "weight": w} for p, w in m.programs]} for m in listed])

    @app.page("/disputes")
    class Disputes(View):
        async def get(self, request: Request) -> Response:
            found = await asyncio.to_thread(store.disputes, request.query.get("member_id"),
                                            request.query.get("organization_id"))
            return self.json([_row(d) for d in found])

        async def post(self, request: Request) -> Response:
            try:
                data = await body(request)
                member_id, organization_id, kind, reason, actor = fields(
                    data, "member_id", "organization_id", "kind", "reason", "submitted_by")
                dispute = await asyncio.to_thread(store.submit, member_id, organization_id, kind, reason, actor,
                                                  data.get("npi"))
            except DisputeError as exc:
                return self.json({"error": str(exc)}, status=400)
            return self.json(_row(dispute), status=201)

    @app.page("/disputes/{dispute_id}/decision")
    class Decision(View):
        async def post(self, request: Request, dispute_id: str) -> Response:
            try:
                data = await body(request)
                decision, reviewer, reason = fields(data, "decision", "reviewer", "reason")
                if decision not in ("accept", "reject"):
                    raise DisputeError("decision must be 'accept' or 'reject'")
                dispute, override = await asyncio.to_thread(
                    store.decide, dispute_id, decision == "accept", reviewer, reason, data.get("effective_from"),
                    data.get("expires_on"))
            except DisputeError as exc:
                return self.json({"error": str(exc)}, status=400)
            if override:
                await overrides_topic.send(key=override.member_id.encode(), value=p.codec.encode(override))
            return self.json(_row(dispute))

    @app.page("/disputes/{dispute_id}/revoke")
    class Revoke(View):
        async def post(self, request: Request, dispute_id: str) -> Response:
            try:
                actor, reason = fields(await body(request), "actor", "reason")
                override = await asyncio.to_thread(store.revoke, dispute_id, actor, reason)
            except DisputeError as exc:
                return self.json({"error": str(exc)}, status=400)
            await overrides_topic.send(key=override.member_id.encode(), value=p.codec.encode(override))
            return self.json({"revoked": dispute_id})

    @app.page("/disputes/{dispute_id}/audit")
    class Audit(View):
        async def get(self, request: Request, dispute_id: str) -> Response:
            return self.json([_row(e) for e in await asyncio.to_thread(store.audit, dispute_id)])
