"""The normalized ADT event: what gapstream keeps of one HL7 v2 ADT message."""
from __future__ import annotations

from dataclasses import dataclass, field

from streams.models.record import Record


@dataclass(slots=True)
class Patient(Record):
    schema = "patient"
    family_name: str | None = None
    given_name: str | None = None
    birth_date: str | None = None
    sex: str | None = None


@dataclass(slots=True)
class PatientIdentifier(Record):
    schema = "patient_identifier"
    id: str
    source: str
    type_code: str | None = None
    authority: str | None = None


@dataclass(slots=True)
class Diagnosis(Record):
    schema = "diagnosis"
    code: str
    system: str | None = None
    description: str | None = None
    kind: str | None = None


@dataclass(slots=True)
class AdtEvent(Record):
    schema = "adt_event"
    message_control_id: str
    event_type: str
    sending_facility: str
    received_at_ms: int
    emergency: bool = False
    hl7_version: str | None = None
    sending_application: str | None = None
    message_time: str | None = None
    event_time: str | None = None
    member_id: str | None = None
    patient_identifiers: list[PatientIdentifier] = field(default_factory=list)
    patient: Patient = field(default_factory=Patient)
    patient_class: str | None = None
    visit_number: str | None = None
    location: str | None = None
    hospital_service: str | None = None
    admit_time: str | None = None
    discharge_time: str | None = None
    discharge_disposition: str | None = None
    facility_type: str | None = None
    diagnoses: list[Diagnosis] = field(default_factory=list)

    @property
    def visit_key(self) -> str:
        return visit_key(self.sending_facility, self.visit_number, self.message_control_id)


def visit_key(facility: str, visit_number: str | None, control_id: str) -> str:
    """Events of one encounter share this key: the facility plus PV1-19, or the message itself
    when the sender gave no visit number (then nothing can be grouped with it)."""
    return f"{facility}|{visit_number or 'msg:' + control_id}"
