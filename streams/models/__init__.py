"""Messages that travel on topics, as dataclasses. Each names the Avro schema it is encoded with."""
from streams.models.adt import AdtEvent, Diagnosis, Patient, PatientIdentifier, visit_key
from streams.models.alert import Alert
from streams.models.attribution import AttributionChange, AttributionOverride, RosterEntry
from streams.models.caregaps import CohortMembership, Encounter, EncounterKind, GapInfo
from streams.models.claims import ClaimLine, EligibilitySpan, MedicalClaim, PharmacyClaim, Provider
from streams.models.deadletter import DeadLetter
from streams.models.record import Record

__all__ = [
    "AdtEvent", "Alert", "AttributionChange", "AttributionOverride", "ClaimLine", "CohortMembership", "DeadLetter",
    "Diagnosis", "EligibilitySpan", "Encounter", "EncounterKind", "GapInfo", "MedicalClaim", "Patient",
    "PatientIdentifier", "PharmacyClaim", "Provider", "Record", "RosterEntry", "visit_key",
]
