"""An alert for care managers, raised by visit state or a care-gap transition and routed to an organization."""
from __future__ import annotations

from dataclasses import dataclass, field

from streams.models.adt import Diagnosis, Patient
from streams.models.caregaps import GapInfo
from streams.models.record import Record


@dataclass(slots=True)
class Alert(Record):
    schema = "alert"
    alert_id: str
    alert_type: str
    facility: str
    event_type: str
    received_at_ms: int
    created_at_ms: int
    member_id: str | None = None
    organization_id: str | None = None
    visit_number: str | None = None
    patient_class: str | None = None
    occurred_at: str | None = None
    patient: Patient = field(default_factory=Patient)
    diagnoses: list[Diagnosis] = field(default_factory=list)
    discharge_disposition: str | None = None
    message_control_ids: list[str] = field(default_factory=list)
    gap: GapInfo | None = None
    open_gaps: list[GapInfo] = field(default_factory=list)
    cohorts: list[str] = field(default_factory=list)
    cancels_alert_id: str | None = None  # adt.cancelled: the alert an A11 or A13 withdrew
    cancels_alert_type: str | None = None
