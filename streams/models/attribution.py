"""Attribution results and the dispute decisions that override them."""
from __future__ import annotations

from dataclasses import dataclass

from streams.models.record import Record


@dataclass(slots=True)
class AttributionChange(Record):
    schema = "attribution_change"
    member_id: str
    rule: str
    reason: str
    effective_date: str
    explanation: str
    changed_at_ms: int
    old_organization_id: str | None = None
    new_organization_id: str | None = None
    old_npi: str | None = None
    new_npi: str | None = None
    method_id: str | None = None
    method_version: str | None = None


@dataclass(slots=True)
class AttributionOverride(Record):
    schema = "attribution_override"
    dispute_id: str
    member_id: str
    kind: str  # add | remove
    organization_id: str
    effective_from: str
    decided_at: str
    npi: str | None = None
    expires_on: str | None = None
    revoked: bool = False
    reason: str = ""


@dataclass(slots=True)
class RosterEntry:
    """A row of a plan's roster: the organization (and optionally the provider) a member is assigned to.
    Not a message: loading a roster turns each entry into an accepted dispute and its override."""
    member_id: str
    organization_id: str
    npi: str | None = None
