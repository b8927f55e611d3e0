"""Care-gap messages: the visits a member's gaps are opened by, and a gap as alerts carry it."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from streams.models.record import Record


class EncounterKind(StrEnum):
    ED_VISIT = "ed_visit"
    INPATIENT_ADMISSION = "inpatient_admission"
    INPATIENT_DISCHARGE = "inpatient_discharge"


@dataclass(slots=True)
class Encounter(Record):
    schema = "encounter"
    encounter_id: str
    member_id: str
    kind: str  # an EncounterKind
    day: str
    facility: str
    received_at_ms: int
    diagnoses: list[str] = field(default_factory=list)
    withdrawn: bool = False  # cancelled by the hospital (A11, A13)


@dataclass(slots=True)
class GapInfo(Record):
    schema = "gap_info"
    gap_id: str
    measure_id: str
    measure_title: str
    trigger_id: str
    status: str
    window_start: str
    due: str
    evidence_ids: list[str] = field(default_factory=list)
    closed_late: bool = False
    revision: int = 0
    detail: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class CohortMembership(Record):
    schema = "cohort_membership"
    member_id: str
    cohorts: list[str]  # id@version of each cohort the member is in
    as_of: str
    changed_at_ms: int
