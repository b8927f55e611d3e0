"""An ADT alert as a Da Vinci Unsolicited Notification (HL7 FHIR R4 IG davinci-alerts): a message
Bundle whose MessageHeader names the event and points at the Encounter, followed by the Patient,
the Encounter, the facility's Organization and a Condition per diagnosis.

Built as plain JSON; the tests validate it with fhir.resources.
"""
from __future__ import annotations

import uuid
from typing import Any

from streams.models import Alert

ALERTS_IG = "http://hl7.org/fhir/us/davinci-alerts"
EVENT_SYSTEM = f"{ALERTS_IG}/CodeSystem/notification-event"
# Which notification an alert type is. An ED visit is an admission to the emergency department.
EVENTS = {"adt.ed_visit": ("notification-admit", "admit"), "adt.admit": ("notification-admit", "admit"),
          "adt.discharge": ("notification-discharge", "discharge"),
          "adt.transfer": ("notification-transfer", "transfer")}
CANCELLED = "adt.cancelled"  # the notification of the event withdrawn, its Encounter entered in error
# HL7 v2 patient class (PV1-2) to the FHIR v3 ActCode encounter class.
ENCOUNTER_CLASS = {"E": ("EMER", "emergency"), "I": ("IMP", "inpatient encounter"),
                   "O": ("AMB", "ambulatory"), "B": ("OBSENC", "observation encounter")}
EVENT_NUMBER_EXTENSION = "https://gapstream.dev/fhir/StructureDefinition/events-since-subscription-start"
_NAMESPACE = uuid.UUID("2d8f6a0e-7c41-4b3a-9e55-1a6c0f3b8d27")
_GENDER = {"F": "female", "M": "male", "O": "other", "U": "unknown"}


def supports(alert_type: str) -> bool:
    return alert_type in EVENTS or alert_type == CANCELLED


def _urn(alert: Alert, *parts: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, '|'.join((alert.alert_id, *parts)))}"


def notification_bundle(alert: Alert, subscription_id: str, event_number: int, timestamp: str) -> dict[str, Any]:
    withdrawn = alert.alert_type == CANCELLED
    code, kind = EVENTS[alert.cancels_alert_type if withdrawn else alert.alert_type]  # type: ignore[index]
    header, patient, encounter, facility = (_urn(alert, p) for p in ("header", "patient", "encounter", "facility"))
    class_code, class_name = ENCOUNTER_CLASS.get(alert.patient_class or ("E" if alert.alert_type == "adt.ed_visit"
                                                                          else ""), ("ACUTE", "inpatient acute"))
    conditions = [(_urn(alert, "condition", str(i)), d) for i, d in enumerate(alert.diagnoses)]
    period: dict[str, str] = {}
    if alert.occurred_at:
        period["end" if kind == "discharge" else "start"] = alert.occurred_at
    name = {k: v for k, v in (("family", alert.patient.family_name),
                              ("given", [alert.patient.given_name] if alert.patient.given_name else None)) if v}
    resources: list[tuple[str, dict[str, Any]]] = [
        (header, {
            "resourceType": "MessageHeader",
            "meta": {"profile": [f"{ALERTS_IG}/StructureDefinition/{kind}-notification-messageheader"]},
            "extension": [{"url": EVENT_NUMBER_EXTENSION, "valueInteger": event_number}],
            "eventCoding": {"system": EVENT_SYSTEM, "code": code},
            "source": {"name": "gapstream", "endpoint": f"urn:gapstream:subscription:{subscription_id}"},
            "sender": {"reference": facility},
            "focus": [{"reference": encounter}],
        }),
        (patient, {
            "resourceType": "Patient",
            "identifier": [{"system": "urn:gapstream:member-id", "value": alert.member_id}],
            **({"name": [name]} if name else {}),
            **({"gender": _GENDER[alert.patient.sex]} if alert.patient.sex in _GENDER else {}),
            **({"birthDate": alert.patient.birth_date} if alert.patient.birth_date else {}),
        }),
        (encounter, {
            "resourceType": "Encounter",
            "status": "entered-in-error" if withdrawn else "finished" if kind == "discharge" else "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": class_code,
                      "display": class_name},
            "identifier": ([{"system": f"urn:gapstream:visit-number:{alert.facility}", "value": alert.visit_number}]
                           if alert.visit_number else []),
            "subject": {"reference": patient},
            "serviceProvider": {"reference": facility},
            **({"period": period} if period else {}),
            **({"diagnosis": [{"condition": {"reference": urn}} for urn, _ in conditions]} if conditions else {}),
            **({"hospitalization": {"dischargeDisposition": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v2-0112", "code": alert.discharge_disposition}]}}}
               if alert.discharge_disposition else {}),
        }),
        (facility, {"resourceType": "Organization", "name": alert.facility,
                    "identifier": [{"system": "urn:gapstream:sending-facility", "value": alert.facility}]}),
        *((urn, {
            "resourceType": "Condition",
            "subject": {"reference": patient},
            "encounter": {"reference": encounter},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": d.code,
                                 **({"display": d.description} if d.description else {})}]},
        }) for urn, d in conditions),
    ]
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid5(_NAMESPACE, f"{alert.alert_id}|{subscription_id}")),
        "meta": {"profile": [f"{ALERTS_IG}/StructureDefinition/notifications-bundle"]},
        "type": "message",
        "timestamp": timestamp,
        "entry": [{"fullUrl": urn, "resource": resource} for urn, resource in resources],
    }

