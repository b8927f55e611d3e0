"""What gapstream knows about a member or a provider, over HTTP: the attribution decision and its
explanation, care gaps and the DEQM gaps-in-care report, provider scorecards, and the measure
catalog.

Member data is scoped like webhooks: an organization reads the members attributed to it now, a
token with the plan-level role reads every member. Anyone else gets a 404, so a token cannot even
learn whether a member exists.
"""
from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import asdict
from typing import Any

from sinks.webhooks.payloads import utc_iso
from streams.api.routes import Api, ApiError, Call, run, table_row
from streams.attribution.redaction import explanation_for, scrubber
from streams.caregaps.catalog import catalog, consolidated
from streams.caregaps.deqm import gaps_bundle
from streams.caregaps.reports import DISPUTE_ROUTE, scorecard
from streams.pipeline import Pipeline


def add_routes(api: Api, p: Pipeline) -> None:
    store = p.store

    async def member(call: Call) -> str:
        """The member in the path, when attributed to the caller now or the caller has the plan-level role."""
        member_id, org = call.params["member_id"], call.organization
        if not org.plan_level:  # type: ignore[union-attr]
            organization = (await run(store.attribution.organizations_of, {member_id})).get(member_id)
            if organization != org.id:  # type: ignore[union-attr]
                raise ApiError(404, f"no member {member_id} attributed to this organization")
        return member_id

    @api.route("get", "/attribution/{member_id}", "The stored attribution decision with its explanation and "
               "history, and the decision evaluated now from the member's state (which also explains why nobody "
               "has the member)")
    async def attribution(call: Call) -> tuple[int, Any]:
        member_id, org = call.params["member_id"], call.organization
        # Scope checked on the row shown: read twice, the member could move to another organization
        # in between and its decision be shown unredacted.
        current = await run(store.attribution.current, member_id)
        if not org.plan_level and (current is None or current.organization_id != org.id):  # type: ignore[union-attr]
            raise ApiError(404, f"no member {member_id} attributed to this organization")
        live = await run(p.attribution.explain, member_id)
        if current is None and live is None:
            raise ApiError(404, f"nothing known about member {member_id}")
        row = None
        if current is not None:
            row = table_row(current)
            row["explanation"] = json.loads(row["explanation"])
        history = [table_row(h) for h in await run(store.attribution.history, member_id)]
        if not org.plan_level:  # type: ignore[union-attr]
            # Its own periods, and the decisions without the member's other providers named.
            # Named in the decisions' texts too: organizations the member had, and those a dispute
            # about the member names (removed by one, say).
            disputed = {d.organization_id for d in await run(store.attribution.disputes, member_id)}
            others = ({h["organization_id"] for h in history} | disputed) - {org.id}  # type: ignore[union-attr]
            history = [{**h, "reason": scrubber({h["npi"]}, others)(h["reason"])} for h in history
                       if h["organization_id"] == org.id]  # type: ignore[union-attr]
            if row is not None:
                row["explanation"] = explanation_for(row["explanation"], org.id, others)  # type: ignore
                row["reason"] = row["explanation"]["reason"]
            if live is not None:
                live = explanation_for(live, org.id, others)  # type: ignore[union-attr]
        return 200, {"current": row, "history": history, "live": live}

    @api.route("get", "/gaps/{member_id}", "The member's care gaps in their latest status (status=open for the "
               "open ones) and the cohorts the member is in", query=("status",))
    async def gaps(call: Call) -> tuple[int, Any]:
        member_id = await member(call)
        found = await run(store.gaps.for_member, member_id, call.query.get("status"))
        cohorts = await run(store.cohorts.of, member_id)
        return 200, {"member_id": member_id, "cohorts": cohorts, "gaps": [g.to_record() for g in found]}

    @api.route("get", "/gaps/{member_id}/report", "The member's gaps in care as a FHIR R4 document Bundle "
               "(Da Vinci DEQM shape)")
    async def gaps_report(call: Call) -> tuple[int, Any]:
        member_id = await member(call)
        found = await run(store.gaps.for_member, member_id)
        return 200, gaps_bundle(member_id, found, utc_iso(time.time()))

    @api.route("get", "/providers/{npi}/scorecard", "The provider's rate per measure next to the median and "
               "percentile of providers of the same specialty (year=, default this year); for the provider's "
               "own organization or the plan", query=("year",))
    async def provider_scorecard(call: Call) -> tuple[int, Any]:
        npi, org = call.params["npi"], call.organization
        year = call.query.get("year", str(dt.datetime.now(dt.UTC).year))
        if not year.isdigit():
            raise ApiError(400, f"year must be a number, not {year!r}")
        directory = await run(store.directory.all)
        me = directory.get(npi)
        if not org.plan_level and (me is None or me.organization_id != org.id):  # type: ignore[union-attr]
            raise ApiError(404, f"no provider {npi} in this organization")
        outcomes = await run(store.gaps.outcomes, int(year))
        methods = await run(store.gaps.methods_of, npi)
        groups = {n: row.taxonomy or row.role for n, row in directory.items()}
        return 200, {
            "npi": npi, "name": me.name if me else None, "peer_group": groups.get(npi), "year": int(year),
            "attribution_methods": methods, "dispute_route": DISPUTE_ROUTE,
            "measures": [asdict(score) for score in scorecard(npi, outcomes, groups)]}

    @api.route("get", "/catalog", "Every program with its measures and weights, or with programs=A,B the one "
               "de-duplicated list an organization contracted with those programs is measured on",
               role=None, query=("programs",))
    async def measure_catalog(call: Call) -> tuple[int, Any]:
        wanted = [name for name in call.query.get("programs", "").split(",") if name]
        if not wanted:
            return 200, {pid: {"title": program.title, "product_lines": list(program.product_lines),
                               "source": program.source, "weights": program.weights}
                         for pid, program in catalog().items()}
        try:
            listed = consolidated(wanted)
        except KeyError as exc:
            raise ApiError(404, f"unknown program {exc.args[0]}") from exc
        return 200, [{"measure_id": m.measure_id, "title": m.title, "total_weight": m.total_weight,
                      "programs": [{"program": name, "weight": w} for name, w in m.programs]} for m in listed]
