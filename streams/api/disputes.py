"""Attribution disputes over HTTP (Da Vinci ATR shape): an organization says "my patient" or "not my
patient" about a member; a reviewer with the plan-level role accepts or rejects, and may revoke.

The audit trail names the authenticated organization next to the person the body names, so a
token cannot act in another organization's name. An accepted decision is published to the
overrides topic and applied by the attribution processor like any other message.
"""
from __future__ import annotations

from typing import Any

from sinks.sql.models import Dispute, Organization
from streams import topics
from streams.api.routes import Api, ApiError, Call, run, table_row
from streams.pipeline import Pipeline

_TEXT = {"type": "string"}
NEW_DISPUTE = {"type": "object", "required": ["member_id", "organization_id", "kind", "reason", "submitted_by"],
               "properties": {"member_id": _TEXT, "organization_id": _TEXT, "kind": {"enum": ["add", "remove"]},
                              "reason": _TEXT, "submitted_by": _TEXT, "npi": _TEXT}}
DECISION = {"type": "object", "required": ["decision", "reviewer", "reason"],
            "properties": {"decision": {"enum": ["accept", "reject"]}, "reviewer": _TEXT, "reason": _TEXT,
                           "effective_from": {"type": "string", "format": "date"},
                           "expires_on": {"type": "string", "format": "date"}}}
REVOCATION = {"type": "object", "required": ["actor", "reason"], "properties": {"actor": _TEXT, "reason": _TEXT}}


def fields(body: dict[str, Any], *names: str) -> list[str]:
    missing = [n for n in names if not str(body.get(n) or "").strip()]
    if missing:
        raise ApiError(400, f"missing field(s): {', '.join(missing)}")
    return [str(body[n]).strip() for n in names]


def _who(person: str, organization: Organization) -> str:
    return f"{person} (organization:{organization.id})"


def add_routes(api: Api, p: Pipeline) -> None:
    store = p.store.attribution
    overrides = p.topic(topics.ATTRIBUTION_OVERRIDES)

    async def visible(call: Call) -> Dispute:
        """The dispute in the path, when the caller raised it or reviews disputes (404 otherwise)."""
        org: Organization = call.organization  # type: ignore[assignment]
        dispute = await run(store.dispute, call.params["dispute_id"])
        if dispute is None or not (org.plan_level or dispute.organization_id == org.id):
            raise ApiError(404, f"no dispute {call.params['dispute_id']}")
        return dispute

    @api.route("get", "/disputes", "Disputes, by member_id or organization_id; an organization sees its own",
               query=("member_id", "organization_id"))
    async def list_disputes(call: Call) -> tuple[int, Any]:
        org: Organization = call.organization  # type: ignore[assignment]
        wanted = call.query.get("organization_id") if org.plan_level else org.id
        found = await run(store.disputes, call.query.get("member_id"), wanted)
        return 200, [table_row(d) for d in found]

    @api.route("post", "/disputes", "Ask to add a member (kind=add, \"my patient\") or remove one (kind=remove); "
               "for the caller's own organization unless it has the plan-level role", request=NEW_DISPUTE,
               responses={201: "Submitted, pending review"})
    async def submit_dispute(call: Call) -> tuple[int, Any]:
        org: Organization = call.organization  # type: ignore[assignment]
        member_id, organization_id, kind, reason, person = fields(
            call.body, "member_id", "organization_id", "kind", "reason", "submitted_by")
        if organization_id != org.id and not org.plan_level:
            raise ApiError(403, "an organization disputes for itself only")
        dispute = await run(store.submit, member_id, organization_id, kind, reason, _who(person, org),
                                  call.body.get("npi"))
        return 201, table_row(dispute)

    @api.route("post", "/disputes/{dispute_id}/decision", "Accept or reject a pending dispute; an accepted one "
               "overrides the computed attribution from effective_from until expires_on or revocation", role="plan",
               request=DECISION)
    async def decide_dispute(call: Call) -> tuple[int, Any]:
        decision, reviewer, reason = fields(call.body, "decision", "reviewer", "reason")
        if decision not in ("accept", "reject"):
            raise ApiError(400, "decision must be 'accept' or 'reject'")
        dispute, override = await run(
            store.decide, call.params["dispute_id"], decision == "accept", _who(reviewer, call.organization),
            reason, call.body.get("effective_from"), call.body.get("expires_on"))
        if override:
            await overrides.send(key=override.member_id.encode(), value=p.codec.encode(override))
        return 200, table_row(dispute)

    @api.route("post", "/disputes/{dispute_id}/revoke", "Revoke an accepted dispute: the computed attribution "
               "applies again", role="plan", request=REVOCATION)
    async def revoke_dispute(call: Call) -> tuple[int, Any]:
        person, reason = fields(call.body, "actor", "reason")
        override = await run(store.revoke, call.params["dispute_id"], _who(person, call.organization), reason)
        await overrides.send(key=override.member_id.encode(), value=p.codec.encode(override))
        return 200, {"revoked": call.params["dispute_id"]}

    @api.route("get", "/disputes/{dispute_id}/audit", "Every step of a dispute: who, when, why")
    async def dispute_audit(call: Call) -> tuple[int, Any]:
        dispute = await visible(call)
        return 200, [table_row(e) for e in await run(store.audit, dispute.id)]
