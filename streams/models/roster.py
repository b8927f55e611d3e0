"""Interim routing entry: which organization a member's selected PCP belongs to."""
from __future__ import annotations

from dataclasses import dataclass

from streams.models.record import Record


@dataclass
class RosterEntry(Record):
    schema = "roster_entry"
    member_id: str
    organization_id: str | None = None
