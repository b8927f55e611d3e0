"""The subscription API: an organization manages its webhook subscriptions, checks and recovers
delivery, and reads the alerts it was sent; the plan records consents and answers a member's
request for an accounting of disclosures. The OpenAPI document is served at ``/openapi.json``.
"""
from __future__ import annotations

import datetime as dt
import time
from typing import Any

from sinks.sql.subscriptions import Spec
from sinks.webhooks.payloads import FORMATS, utc_iso
from streams.api.routes import Api, ApiError, Call, Text, run
from streams.attribution.lists import csv_text, entries, fhir_group
from streams.caregaps.reports import worklist
from streams.pipeline import Pipeline

_STRINGS = {"type": "array", "items": {"type": "string"}}
SUBSCRIPTION_FIELDS = {
    "url": {"type": "string", "format": "uri", "description": "https, on a public address"},
    "event_types": {**_STRINGS, "description": "Event types or patterns: adt.ed_visit, gap.*, ..."},
    "filters": {"type": "object", "properties": {"measures": _STRINGS, "facilities": _STRINGS}},
    "payload_format": {"type": "string", "enum": list(FORMATS)},
    "scope": {"type": "string", "enum": ["attributed", "plan"],
              "description": "plan: every plan member's events; needs the plan-level role"},
    "heartbeat_period_s": {"type": "number", "description": "A heartbeat after this long without events"},
}
NEW_SUBSCRIPTION = {"type": "object", "required": ["url"], "properties": SUBSCRIPTION_FIELDS}
CHANGE_SUBSCRIPTION = {"type": "object", "properties": SUBSCRIPTION_FIELDS}


def add_routes(api: Api, p: Pipeline) -> None:
    subs, outbox = p.store.subscriptions, p.store.outbox

    async def own(call: Call) -> str:
        """The subscription named in the path, if it is the caller's (404 otherwise)."""
        org = call.organization.id  # type: ignore[union-attr]
        await run(subs.get, org, call.params["subscription_id"])
        return call.params["subscription_id"]

    def actor(call: Call) -> str:
        return f"organization:{call.organization.id}"  # type: ignore[union-attr]

    @api.route("get", "/openapi.json", "This document", role=None)
    async def openapi(call: Call) -> tuple[int, Any]:
        return 200, api.openapi()

    @api.route("get", "/subscriptions", "The organization's subscriptions")
    async def list_subscriptions(call: Call) -> tuple[int, Any]:
        return 200, await run(subs.of, call.organization.id)  # type: ignore[union-attr]

    @api.route("post", "/subscriptions", "Create a subscription; the answer holds its signing secret, shown once",
               request=NEW_SUBSCRIPTION, responses={201: "Created"})
    async def create_subscription(call: Call) -> tuple[int, Any]:
        spec = Spec.from_json(call.body)
        described, secret = await run(subs.create, call.organization.id, spec, actor(call))  # type: ignore[union-attr]
        return 201, {**described, "secret": secret}

    @api.route("get", "/subscriptions/{subscription_id}", "One subscription")
    async def get_subscription(call: Call) -> tuple[int, Any]:
        return 200, await run(subs.get, call.organization.id, call.params["subscription_id"])  # type: ignore

    @api.route("patch", "/subscriptions/{subscription_id}", "Change the url, event types, filters, format, "
               "scope or heartbeat period", request=CHANGE_SUBSCRIPTION)
    async def change_subscription(call: Call) -> tuple[int, Any]:
        return 200, await run(subs.change, call.organization.id, call.params["subscription_id"],  # type: ignore
                              call.body, actor(call))

    @api.route("delete", "/subscriptions/{subscription_id}", "Stop delivery for good")
    async def delete_subscription(call: Call) -> tuple[int, Any]:
        await run(subs.delete, call.organization.id, call.params["subscription_id"], actor(call))  # type: ignore
        return 200, {"deleted": call.params["subscription_id"]}

    for verb, status in (("pause", "paused"), ("resume", "active")):
        async def set_status(call: Call, status: str = status) -> tuple[int, Any]:
            return 200, await run(subs.set_status, call.organization.id,  # type: ignore[union-attr]
                                  call.params["subscription_id"], status, actor(call))
        set_status.__name__ = f"{verb}_subscription"
        api.route("post", f"/subscriptions/{{subscription_id}}/{verb}",
                  "Pause: events queue up and nothing is sent" if verb == "pause"
                  else "Resume: the queued events go out, oldest first (also after the endpoint was disabled)")(
            set_status)

    @api.route("post", "/subscriptions/{subscription_id}/rotate-secret",
               "A new signing secret, shown once; the previous one keeps signing too for overlap_s "
               "(default a day)", request={"type": "object", "properties": {"overlap_s": {"type": "number"}}})
    async def rotate_secret(call: Call) -> tuple[int, Any]:
        overlap = call.body.get("overlap_s", 24 * 3600.0)
        if not isinstance(overlap, int | float) or not 0 <= overlap <= 30 * 24 * 3600:
            raise ApiError(400, "overlap_s must be a number of seconds up to 30 days")
        secret, until = await run(subs.rotate_secret, call.organization.id,  # type: ignore[union-attr]
                                  call.params["subscription_id"], actor(call), float(overlap))
        return 200, {"secret": secret, "previous_secret_valid_until": utc_iso(until)}

    @api.route("post", "/subscriptions/{subscription_id}/ping", "Send a test event now", responses={202: "Queued"})
    async def ping(call: Call) -> tuple[int, Any]:
        wid = await run(outbox.ping, await own(call))
        await run(p.sinks.wake)
        return 202, {"webhook_id": wid}

    @api.route("get", "/subscriptions/{subscription_id}/$status",
               "Delivery status: events so far, the last one delivered, queued and exhausted counts, last error")
    async def status(call: Call) -> tuple[int, Any]:
        return 200, await run(outbox.status, await own(call))

    @api.route("get", "/subscriptions/{subscription_id}/$events", "The events numbered from..to, as sent",
               query=("from", "to"))
    async def events(call: Call) -> tuple[int, Any]:
        try:
            first, last = int(call.query.get("from", "1")), int(call.query.get("to", str(2**31)))
        except ValueError as exc:
            raise ApiError(400, "from and to must be event numbers") from exc
        return 200, await run(outbox.events, await own(call), first, last)

    @api.route("get", "/subscriptions/{subscription_id}/messages/{webhook_id}", "One message and its attempts")
    async def message(call: Call) -> tuple[int, Any]:
        found = await run(outbox.message, await own(call), call.params["webhook_id"])
        if found is None:
            raise ApiError(404, f"no message {call.params['webhook_id']}")
        d, attempts = found
        return 200, {"webhook_id": d.webhook_id, "event_type": d.event_type, "event_number": d.event_number,
                     "status": d.status, "last_error": d.last_error, "body": d.body,
                     "attempts": [{"attempt": a.attempt, "at": utc_iso(a.at), "outcome": a.outcome,
                                   "status_code": a.status_code, "duration_ms": round(a.duration_ms, 1),
                                   "error": a.error} for a in attempts]}

    @api.route("post", "/subscriptions/{subscription_id}/messages/{webhook_id}/resend",
               "Send one message again, under the same webhook-id", responses={202: "Queued"})
    async def resend(call: Call) -> tuple[int, Any]:
        n = await run(outbox.resend, await own(call), call.params["webhook_id"])
        if not n:
            raise ApiError(404, f"no message {call.params['webhook_id']}")
        await run(p.sinks.wake)
        return 202, {"queued": n}

    @api.route("post", "/subscriptions/{subscription_id}/redeliver",
               "Send again every event queued since a time (ISO 8601), under the same webhook-ids",
               request={"type": "object", "required": ["since"], "properties": {"since": {"type": "string"}}},
               responses={202: "Queued"})
    async def redeliver(call: Call) -> tuple[int, Any]:
        since = _parse_time(call.body.get("since"))
        n = await run(outbox.resend, await own(call), None, since)
        await run(p.sinks.wake)
        return 202, {"queued": n}

    @api.route("get", "/alerts/{alert_id}", "An alert the organization was sent (what json-thin payloads point to)")
    async def alert(call: Call) -> tuple[int, Any]:
        found = await run(outbox.alert_for, call.organization.id, call.params["alert_id"])  # type: ignore
        if found is None:
            raise ApiError(404, f"no alert {call.params['alert_id']}")
        return 200, found

    def own_organization(call: Call) -> str:
        """The organization in the path, when it is the caller's (or the caller has the plan-level role)."""
        org = call.params["organization_id"]
        if call.organization.id != org and not call.organization.plan_level:  # type: ignore[union-attr]
            raise ApiError(404, f"no organization {org} for this token")
        return org

    @api.route("get", "/organizations/{organization_id}/attribution-list",
               "The organization's attributed members as a FHIR Group (format=fhir) or CSV (format=csv), each marked "
               "new, changed or unchanged since the list last published (publish=true publishes this one)",
               query=("format", "publish"))
    async def attribution_list(call: Call) -> tuple[int, Any]:
        org, store = own_organization(call), p.store.attribution
        current = await run(store.members_of, org)
        previous = await run(store.last_published, org)
        listed = entries([(c.member_id, c.npi, c.effective_date) for c in current], previous)
        as_of = utc_iso(time.time())
        if call.query.get("publish") == "true":
            as_of = await run(store.publish, org, {e.member_id: e.npi for e in listed if e.change != "dropped"})
        if call.query.get("format") == "csv":
            return 200, Text(csv_text(listed), "text/csv")
        return 200, fhir_group(org, listed, as_of)

    @api.route("get", "/organizations/{organization_id}/worklist", "The open gaps of the organization's attributed "
               "members, soonest due first; npi= for one provider's panel", query=("npi",))
    async def organization_worklist(call: Call) -> tuple[int, Any]:
        org, npi = own_organization(call), call.query.get("npi")
        rows = await run(p.store.gaps.of_organization, org, npi)
        return 200, {"organization_id": org, "npi": npi, "gaps": worklist(rows, dt.datetime.now(dt.UTC).date())}

    @api.route("get", "/members/{member_id}/disclosures", "Accounting of disclosures: every event about the member "
               "sent, queued or withheld, to whom and when", role="plan")
    async def disclosures(call: Call) -> tuple[int, Any]:
        return 200, await run(outbox.disclosures, call.params["member_id"])

    @api.route("post", "/members/{member_id}/consents", "Record the member's consent to disclose substance use "
               "treatment records (42 CFR Part 2) to an organization", role="plan",
               request={"type": "object", "required": ["organization_id"],
                        "properties": {"organization_id": {"type": "string"}}}, responses={201: "Recorded"})
    async def consent(call: Call) -> tuple[int, Any]:
        org = call.body.get("organization_id")
        if not isinstance(org, str) or not org:
            raise ApiError(400, "organization_id is required")
        await run(subs.record_consent, call.params["member_id"], org, actor(call))
        return 201, {"member_id": call.params["member_id"], "organization_id": org, "kind": "part2"}

    @api.route("delete", "/members/{member_id}/consents/{organization_id}", "Revoke the member's Part 2 consent",
               role="plan")
    async def revoke_consent(call: Call) -> tuple[int, Any]:
        n = await run(subs.revoke_consent, call.params["member_id"], call.params["organization_id"], actor(call))
        return 200, {"revoked": n}


def _parse_time(value: Any) -> float:
    try:
        when = dt.datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise ApiError(400, "since must be an ISO 8601 time, such as 2026-11-22T08:00:00Z") from exc
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()
