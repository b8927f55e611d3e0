"""Visit state: the ADT events of one encounter folded into one record, and the alerts it raises
(an ED visit, an inpatient admission, a discharge).

Pure functions, so every rule is tested without a broker. HIE feeds resend messages, send A08
update storms and cancel events; the rules here make sure one encounter raises one alert of a kind.
"""
from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from streams.models import AdtEvent, Alert, Diagnosis, Encounter, EncounterKind

ED_VISIT = "adt.ed_visit"
# The encounter notifications CMS's conditions of participation ask hospitals for, besides the ED
# registration: an inpatient admission, and a discharge from the ED or from inpatient care.
ADMIT = "adt.admit"
DISCHARGE = "adt.discharge"
# The hospital withdrew an event it had sent (A11 cancels the admit or registration, A13 the
# discharge): whoever was told of the alert it raised is told that it no longer holds.
CANCELLED = "adt.cancelled"
# Enough to recognise resent messages; a visit with more distinct messages than this is a storm,
# and the per-event-type rule below still keeps it from raising alerts twice.
MAX_REMEMBERED_CONTROL_IDS = 64
_ALERT_NAMESPACE = uuid.UUID("6b1f7d43-5c1e-4c59-9a0f-3f5d0c2a7e11")

CANCELS = {"A11": "admit", "A12": "transfer", "A13": "discharge"}
# The alerts each cancel event withdraws.
WITHDRAWS = {"A11": (ED_VISIT, ADMIT), "A13": (DISCHARGE,)}


@dataclass
class VisitState:
    visit_key: str
    facility: str
    visit_number: str | None
    member_id: str | None = None
    status: str = "open"  # open | discharged | cancelled | auto_closed
    emergency: bool = False
    patient_class: str | None = None
    admit_time: str | None = None
    discharge_time: str | None = None
    first_seen_ms: int = 0
    last_seen_ms: int = 0
    control_ids: list[str] = field(default_factory=list)
    event_types: list[str] = field(default_factory=list)
    alerts_raised: list[str] = field(default_factory=list)
    encounters_sent: list[str] = field(default_factory=list)  # kinds told to the member's care gaps
    diagnoses: list[str] = field(default_factory=list)  # ICD-10-CM, principal first, from the first message with any
    cancellations: list[dict[str, Any]] = field(default_factory=list)
    withdrawals: dict[str, int] = field(default_factory=dict)  # alert type -> times a cancel withdrew it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VisitState:
        return cls(**data)


@dataclass
class Outcome:
    state: VisitState
    duplicate: bool = False
    alerts: list[Alert] = field(default_factory=list)
    encounters: list[Encounter] = field(default_factory=list)


def alert_id(alert_type: str, visit_key: str) -> str:
    """Stable across retries and restarts: one visit and alert type always give the same id."""
    return str(uuid.uuid5(_ALERT_NAMESPACE, f"{alert_type}|{visit_key}"))


def is_ed_presentation(event: AdtEvent) -> bool:
    return event.emergency and event.event_type in ("A04", "A01", "A03")


def apply(state: VisitState | None, event: AdtEvent, now_ms: int) -> Outcome:
    """Fold ``event`` into the visit's state; return the new state and the alerts it raises."""
    if state is None:
        state = VisitState(visit_key=event.visit_key, facility=event.sending_facility,
                           visit_number=event.visit_number, first_seen_ms=now_ms)
    if event.message_control_id in state.control_ids:
        return Outcome(state, duplicate=True)
    repeated_event = event.event_type in state.event_types and event.event_type != "A08"

    state.control_ids = (state.control_ids + [event.message_control_id])[-MAX_REMEMBERED_CONTROL_IDS:]
    if event.event_type not in state.event_types:
        state.event_types.append(event.event_type)
    state.last_seen_ms = now_ms
    _merge(state, event)

    withdrawn: list[str] = []
    if event.event_type in CANCELS:
        state.cancellations.append({"event_type": event.event_type, "cancels": CANCELS[event.event_type],
                                    "message_control_id": event.message_control_id, "at_ms": now_ms})
        withdrawn = [t for t in WITHDRAWS.get(event.event_type, ()) if t in state.alerts_raised]
        if event.event_type == "A11":
            state.status = "cancelled"
        elif event.event_type == "A13":
            state.status = "open"
            state.discharge_time = None
    elif event.event_type == "A03":
        state.status = "discharged"
    elif event.event_type in ("A01", "A04") and state.status in ("cancelled", "auto_closed"):
        state.status = "open"

    for original in withdrawn:  # the next genuine event raises it again, under a new id
        state.alerts_raised.remove(original)
        state.withdrawals[original] = state.withdrawals.get(original, 0) + 1
    raised = [alert_type for alert_type, applies in (
        (ED_VISIT, is_ed_presentation(event)),
        (ADMIT, state.patient_class == "I" and event.event_type in ("A01", "A06")),
        (DISCHARGE, event.event_type == "A03" and (state.emergency or state.patient_class == "I")),
    ) if applies and alert_type not in state.alerts_raised]
    state.alerts_raised += raised
    alerts = [_alert(alert_type, state, event, now_ms) for alert_type in raised]
    alerts = [_cancellation(original, state, event, now_ms) for original in withdrawn] + alerts
    return Outcome(state, duplicate=repeated_event, alerts=alerts,
                   encounters=_withdrawn_encounters(state, withdrawn, event) + _encounters(state, event))


# The care-gap view of each alert, and back.
ENCOUNTER_OF = {ED_VISIT: EncounterKind.ED_VISIT, ADMIT: EncounterKind.INPATIENT_ADMISSION,
                DISCHARGE: EncounterKind.INPATIENT_DISCHARGE}
ALERT_OF = {kind: alert_type for alert_type, kind in ENCOUNTER_OF.items()}


def _withdrawn_encounters(state: VisitState, withdrawn: list[str], event: AdtEvent) -> list[Encounter]:
    """A cancelled visit, admission or discharge that care gaps were told of is withdrawn from them
    too: a follow-up gap it opened goes (``gap.excluded``). Told again if the event happens after all."""
    found = []
    for alert_type in withdrawn:
        kind = ENCOUNTER_OF[alert_type]
        if state.member_id and kind in state.encounters_sent:
            state.encounters_sent.remove(kind)
            found.append(Encounter(encounter_id=_key(state, alert_type, state.withdrawals[alert_type] - 1),
                                   member_id=state.member_id, kind=kind,
                                   day=(event.event_time or state.admit_time or "")[:10], facility=state.facility,
                                   received_at_ms=event.received_at_ms, withdrawn=True))
    return found


def _encounters(state: VisitState, event: AdtEvent) -> list[Encounter]:
    """The visit as care gaps see it (an ED visit opens a follow-up gap, an admission excludes one),
    once per kind, and again when its diagnoses become known (registration seldom carries them);
    only for a known member, since gaps are kept per member."""
    if not state.member_id or event.event_type in CANCELS:
        return []
    learned = not state.diagnoses and bool(event.diagnoses)
    if learned:
        state.diagnoses = _icd10_principal_first(event.diagnoses)
    kinds = []
    if ED_VISIT in state.alerts_raised:
        kinds.append(EncounterKind.ED_VISIT)
    if state.patient_class == "I" and event.event_type in ("A01", "A06"):
        kinds.append(EncounterKind.INPATIENT_ADMISSION)
    if state.patient_class == "I" and event.event_type == "A03":
        kinds.append(EncounterKind.INPATIENT_DISCHARGE)
    found = []
    for kind in kinds:
        when = (event.discharge_time or event.event_time) if kind == EncounterKind.INPATIENT_DISCHARGE else (
            state.admit_time or event.event_time)
        if (kind in state.encounters_sent and not learned) or not when:
            continue
        if kind not in state.encounters_sent:
            state.encounters_sent.append(kind)
        # Under the key of the alert that announced it, so an event raised again after a cancel is
        # a new encounter: its follow-up gap opens afresh (its own window) and names that alert.
        alert_type = ALERT_OF[kind]
        found.append(Encounter(
            encounter_id=_key(state, alert_type, state.withdrawals.get(alert_type, 0)), member_id=state.member_id,
            kind=kind, day=when[:10],
            facility=state.facility, received_at_ms=event.received_at_ms, diagnoses=list(state.diagnoses)))
    return found


def _icd10_principal_first(diagnoses: list[Diagnosis]) -> list[str]:
    """The ICD-10-CM codes, principal (first sent) first; none when the principal is ICD-9, since a
    secondary code must not stand in for it. Senders label ICD-9 as I9, I9C, ICD9 or ICD-9-CM."""
    def icd9(d: Diagnosis) -> bool:
        return (d.system or "").upper().replace("-", "").startswith(("I9", "ICD9"))

    if not diagnoses or icd9(diagnoses[0]):
        return []
    return [d.code for d in diagnoses if not icd9(d)]


def expire(state: VisitState, now_ms: int, after_s: float) -> bool:
    """Close an ED visit that never got a discharge. Returns whether the state changed."""
    if state.status == "open" and state.emergency and now_ms - state.last_seen_ms >= after_s * 1000:
        state.status = "auto_closed"
        return True
    return False


def _merge(state: VisitState, event: AdtEvent) -> None:
    # A08 updates and later messages fill in what earlier ones lacked; they never blank a value out.
    state.member_id = event.member_id or state.member_id
    state.patient_class = event.patient_class or state.patient_class
    state.admit_time = event.admit_time or state.admit_time
    state.emergency = state.emergency or event.emergency
    if event.event_type == "A03":
        state.discharge_time = event.discharge_time or event.event_time or state.discharge_time


def _cancellation(original: str, state: VisitState, event: AdtEvent, now_ms: int) -> Alert:
    """Stable per cancel message and alert withdrawn: the same A11 resent is one notice, a second A11
    after a new admission another, and an A11 withdrawing the ED visit and the admission two."""
    cancelled = _alert(CANCELLED, state, event, now_ms,
                       key=f"{state.visit_key}|{event.message_control_id}|{original}")
    withdrawn_key = _key(state, original, state.withdrawals[original] - 1)
    cancelled.cancels_alert_id, cancelled.cancels_alert_type = alert_id(original, withdrawn_key), original
    cancelled.patient_class = state.patient_class or ("E" if original == ED_VISIT else None)
    return cancelled


def _key(state: VisitState, alert_type: str, withdrawals: int) -> str:
    """The visit key an alert's id is made from: the visit's, then numbered after each withdrawal."""
    return state.visit_key if not withdrawals else f"{state.visit_key}|{withdrawals}"


def _alert(alert_type: str, state: VisitState, event: AdtEvent, now_ms: int, key: str | None = None) -> Alert:
    return Alert(
        alert_id=alert_id(alert_type, key or _key(state, alert_type, state.withdrawals.get(alert_type, 0))),
        alert_type=alert_type,
        member_id=state.member_id,
        facility=state.facility,
        visit_number=state.visit_number,
        event_type=event.event_type,
        patient_class=state.patient_class,
        occurred_at=(event.discharge_time if alert_type == DISCHARGE else event.admit_time) or event.event_time,
        received_at_ms=event.received_at_ms,
        created_at_ms=now_ms,
        patient=event.patient,
        diagnoses=event.diagnoses,
        discharge_disposition=event.discharge_disposition,
        message_control_ids=[event.message_control_id],
    )
