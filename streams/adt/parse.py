"""HL7 v2 ADT message → :class:`AdtEvent`, with python-hl7 doing the parsing.

Only what downstream needs is kept. Anything that makes a message unusable raises
:class:`AdtParseError` with a short reason code; the caller sends it to the dead-letter topic.
"""
from __future__ import annotations

from dataclasses import dataclass

import hl7
from hl7.exceptions import ParseException

from streams.adt.hl7text import decode
from streams.models import AdtEvent, Diagnosis, Patient, PatientIdentifier, visit_key

# NUCC taxonomy "Clinic/Center, Emergency Care", as syndromic-surveillance feeds send it in OBX SS003.
EMERGENCY_FACILITY_TYPES = frozenset({"261QE0002X"})
FACILITY_TYPE_OBSERVATION = "SS003"
# CX-5 identifier type codes that name a health-plan member number (HL7 table 0203).
MEMBER_ID_TYPES = ("MB", "SN", "MA", "MC", "MI")


class AdtParseError(ValueError):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Header:
    """What identifies a message and its visit: enough to accept, reject or route it."""
    control_id: str
    event_type: str
    facility: str
    visit_number: str | None

    @property
    def visit_key(self) -> str:
        return visit_key(self.facility, self.visit_number, self.control_id)


# Segments the header checks read. The MLLP ingress parses only these, so that it can answer a
# sender quickly; the worker parses everything.
HEADER_SEGMENTS = ("MSH", "EVN", "PV1")


def parse_header(raw: bytes) -> Header:
    """The header checks alone, on the MSH, EVN and PV1 segments (python-hl7 parses them)."""
    text = decode(raw)
    header_only = "\r".join(s for s in text.split("\r") if s[:3] in HEADER_SEGMENTS)
    return _header(_parse(header_only or text))


def parse_adt(raw: bytes, received_at_ms: int) -> AdtEvent:
    message = _parse(decode(raw))
    header = _header(message)
    control_id, event_type, facility = header.control_id, header.event_type, header.facility

    message_time = _time(message, "MSH.F7")
    identifiers = _identifiers(message)
    patient_class = _get(message, "PV1.F2")
    facility_type = _facility_type(message)
    return AdtEvent(
        message_control_id=control_id,
        event_type=event_type.upper(),
        hl7_version=_get(message, "MSH.F12.R1.C1"),
        sending_application=_get(message, "MSH.F3.R1.C1"),
        sending_facility=facility,
        message_time=message_time,
        event_time=_time(message, "EVN.F2") or message_time,
        member_id=_member_id(identifiers),
        patient_identifiers=identifiers,
        patient=Patient(
            family_name=_get(message, "PID.F5.R1.C1"),
            given_name=_get(message, "PID.F5.R1.C2"),
            birth_date=_date(message, "PID.F7"),
            sex=_get(message, "PID.F8"),
        ),
        patient_class=patient_class.upper() if patient_class else None,
        visit_number=header.visit_number,
        location=_location(message),
        hospital_service=_get(message, "PV1.F10"),
        admit_time=_time(message, "PV1.F44"),
        discharge_time=_time(message, "PV1.F45"),
        discharge_disposition=_get(message, "PV1.F36"),
        facility_type=facility_type,
        diagnoses=_diagnoses(message),
        emergency=(patient_class or "").upper() == "E" or facility_type in EMERGENCY_FACILITY_TYPES,
        received_at_ms=received_at_ms,
    )


def _parse(text: str) -> hl7.Message:
    try:
        message = hl7.parse(text)
    except (ValueError, ParseException, IndexError) as exc:
        raise AdtParseError("not_hl7", str(exc)) from exc
    if not _has(message, "MSH"):
        raise AdtParseError("not_hl7", "no MSH segment")
    return message


def _header(message: hl7.Message) -> Header:
    message_type = _get(message, "MSH.F9.R1.C1")
    if message_type != "ADT":
        raise AdtParseError("unsupported_message_type", f"MSH-9 is {message_type or 'empty'}, expected ADT")
    control_id = _get(message, "MSH.F10")
    if not control_id:
        raise AdtParseError("missing_control_id", "MSH-10 message control id is empty")
    event_type = _get(message, "MSH.F9.R1.C2") or _get(message, "EVN.F1")
    if not event_type:
        raise AdtParseError("missing_event_type", "neither MSH-9.2 nor EVN-1 names the trigger event")
    facility = _get(message, "MSH.F4.R1.C1") or _get(message, "PV1.F3.R1.C4") or _get(message, "MSH.F3.R1.C1")
    if not facility:
        raise AdtParseError("missing_facility", "no sending facility in MSH-4, PV1-3.4 or MSH-3")
    return Header(control_id, event_type.upper(), facility, _get(message, "PV1.F19.R1.C1"))


def _has(message: hl7.Message, segment: str) -> bool:
    return any(str(s[0]) == segment for s in message)


def _get(message: hl7.Message, accessor: str) -> str | None:
    """The value at ``accessor`` (``SEGn.Fn.Rn.Cn``), or None when absent or empty."""
    try:
        value = message[accessor]
    except (KeyError, IndexError):
        return None
    text = str(value).strip() if value is not None else ""
    return text or None


def _time(message: hl7.Message, accessor: str) -> str | None:
    raw = _get(message, f"{accessor}.R1.C1")
    if not raw:
        return None
    try:
        return hl7.parse_datetime(raw).isoformat()
    except ValueError:
        return None


def _date(message: hl7.Message, accessor: str) -> str | None:
    iso = _time(message, accessor)
    return iso[:10] if iso else None


def _identifiers(message: hl7.Message) -> list[PatientIdentifier]:
    found: list[PatientIdentifier] = []
    for segment, field_no in (("PID", 3), ("IN1", 36), ("IN1", 49)):
        for s in range(1, _count(message, segment) + 1):
            for r in range(1, _repetition_count(message, f"{segment}{s}.F{field_no}") + 1):
                cx = f"{segment}{s}.F{field_no}.R{r}"
                ident = _get(message, f"{cx}.C1")
                if ident:
                    found.append(PatientIdentifier(id=ident, source=f"{segment}-{field_no}",
                                                   authority=_get(message, f"{cx}.C4"),
                                                   type_code=_get(message, f"{cx}.C5")))
    return found


def _repetition_count(message: hl7.Message, field: str) -> int:
    count = 0
    while True:
        try:
            message[f"{field}.R{count + 1}"]
        except (KeyError, IndexError):
            return count
        count += 1
        if count > 20:  # a field with more repetitions than that is not an identifier list
            return count


def _member_id(identifiers: list[PatientIdentifier]) -> str | None:
    """A PID-3 member number if the sender typed one, else the insurance policy or insured id, else
    the first PID-3 identifier: HIE feeds often carry the plan's member id as the MRN of a payer
    facility, and the roster decides whether it is one of ours."""
    for ident in identifiers:
        if ident.source == "PID-3" and ident.type_code in MEMBER_ID_TYPES:
            return ident.id
    for source in ("IN1-36", "IN1-49", "PID-3"):
        for ident in identifiers:
            if ident.source == source:
                return ident.id
    return None


def _location(message: hl7.Message) -> str | None:
    parts = [_get(message, f"PV1.F3.R1.C{i}") or "" for i in (1, 2, 3, 4)]
    return "^".join(parts).rstrip("^") or None


def _count(message: hl7.Message, segment: str) -> int:
    return sum(1 for s in message if str(s[0]) == segment)


def _facility_type(message: hl7.Message) -> str | None:
    for i in range(1, _count(message, "OBX") + 1):
        if _get(message, f"OBX{i}.F3.R1.C1") == FACILITY_TYPE_OBSERVATION:
            return _get(message, f"OBX{i}.F5.R1.C1")
    return None


def _diagnoses(message: hl7.Message) -> list[Diagnosis]:
    found: list[Diagnosis] = []
    for i in range(1, _count(message, "DG1") + 1):
        code = _get(message, f"DG1{i}.F3.R1.C1")
        if code:
            found.append(Diagnosis(code=code, system=_get(message, f"DG1{i}.F3.R1.C3"),
                                   description=_get(message, f"DG1{i}.F3.R1.C2") or _get(message, f"DG1{i}.F4"),
                                   kind=_get(message, f"DG1{i}.F6")))
    code = _get(message, "PV2.F3.R1.C1")
    if code:
        found.append(Diagnosis(code=code, system=_get(message, "PV2.F3.R1.C3"),
                               description=_get(message, "PV2.F3.R1.C2"), kind="admit_reason"))
    return found
