"""HL7 v2 ADT message → :class:`AdtEvent`, with python-hl7 doing the parsing.

Only what downstream needs is kept. Anything that makes a message unusable raises
:class:`AdtParseError` with a short reason code; the caller sends it to the dead-letter topic.
"""
from __future__ import annotations

from dataclasses import dataclass

import hl7
from hl7.exceptions import ParseException

from streams.adt.hl7text import decode
from streams.deadletters import BadInput
from streams.models import AdtEvent, Diagnosis, Patient, PatientIdentifier, visit_key

# NUCC taxonomy "Clinic/Center, Emergency Care", as syndromic-surveillance feeds send it in OBX SS003.
EMERGENCY_FACILITY_TYPES = frozenset({"261QE0002X"})
FACILITY_TYPE_OBSERVATION = "SS003"
# CX-5 identifier type codes that name a health-plan member number (HL7 table 0203).
MEMBER_ID_TYPES = ("MB", "SN", "MA", "MC", "MI")


class AdtParseError(BadInput):
    """An HL7 message that cannot become an ADT event."""



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
    return _header(_Fields(_parse(header_only or text)))


def parse_adt(raw: bytes, received_at_ms: int) -> AdtEvent:
    f = _Fields(_parse(decode(raw)))
    header = _header(f)
    message_time = _time(f, "MSH", 7)
    identifiers = _identifiers(f)
    patient_class = (f.get("PV1", 2) or "").upper() or None
    facility_type = _facility_type(f)
    return AdtEvent(
        message_control_id=header.control_id,
        event_type=header.event_type,
        hl7_version=f.get("MSH", 12),
        sending_application=f.get("MSH", 3),
        sending_facility=header.facility,
        message_time=message_time,
        event_time=_time(f, "EVN", 2) or message_time,
        member_id=_member_id(identifiers),
        patient_identifiers=identifiers,
        patient=Patient(
            family_name=f.get("PID", 5),
            given_name=f.get("PID", 5, comp=2),
            birth_date=(_time(f, "PID", 7) or "")[:10] or None,
            sex=f.get("PID", 8),
        ),
        patient_class=patient_class,
        visit_number=header.visit_number,
        location="^".join(f.get("PV1", 3, comp=c) or "" for c in (1, 2, 3, 4)).rstrip("^") or None,
        hospital_service=f.get("PV1", 10),
        admit_time=_time(f, "PV1", 44),
        discharge_time=_time(f, "PV1", 45),
        discharge_disposition=f.get("PV1", 36),
        facility_type=facility_type,
        diagnoses=_diagnoses(f),
        emergency=patient_class == "E" or facility_type in EMERGENCY_FACILITY_TYPES,
        received_at_ms=received_at_ms,
    )


class _Fields:
    """Field access by position. The segments are indexed once per message: python-hl7's accessor
    strings ("PID.F3.R1.C1") rescan every segment on each lookup, which dominated parse time."""

    def __init__(self, message: hl7.Message):
        self._segments: dict[str, list[hl7.Segment]] = {}
        for segment in message:
            self._segments.setdefault(str(segment[0]), []).append(segment)

    def count(self, name: str) -> int:
        return len(self._segments.get(name, ()))

    def get(self, name: str, field: int, rep: int = 1, comp: int = 1, n: int = 1) -> str | None:
        """The value, or None when absent or empty; ``n`` picks the n-th segment of that name."""
        segments = self._segments.get(name)
        if not segments or n > len(segments):
            return None
        try:
            value = segments[n - 1].extract_field(n, field, rep, comp, 1)
        except (KeyError, IndexError):
            return None
        text = str(value).strip() if value is not None else ""
        return text or None

    def repetitions(self, name: str, field: int, n: int = 1) -> int:
        segment = self._segments[name][n - 1]
        if field >= len(segment):
            return 0
        value = segment(field)
        return len(value) if value and isinstance(value[0], hl7.Repetition) else 1


def _parse(text: str) -> hl7.Message:
    try:
        message = hl7.parse(text)
    except (ValueError, ParseException, IndexError) as exc:
        raise AdtParseError("not_hl7", str(exc)) from exc
    if not any(str(s[0]) == "MSH" for s in message):
        raise AdtParseError("not_hl7", "no MSH segment")
    return message


def _header(f: _Fields) -> Header:
    message_type = f.get("MSH", 9)
    if message_type != "ADT":
        raise AdtParseError("unsupported_message_type", f"MSH-9 is {message_type or 'empty'}, expected ADT")
    control_id = f.get("MSH", 10)
    if not control_id:
        raise AdtParseError("missing_control_id", "MSH-10 message control id is empty")
    event_type = f.get("MSH", 9, comp=2) or f.get("EVN", 1)
    if not event_type:
        raise AdtParseError("missing_event_type", "neither MSH-9.2 nor EVN-1 names the trigger event")
    facility = f.get("MSH", 4) or f.get("PV1", 3, comp=4) or f.get("MSH", 3)
    if not facility:
        raise AdtParseError("missing_facility", "no sending facility in MSH-4, PV1-3.4 or MSH-3")
    return Header(control_id, event_type.upper(), facility, f.get("PV1", 19))


def _time(f: _Fields, segment: str, field: int) -> str | None:
    raw = f.get(segment, field)
    if not raw:
        return None
    try:
        return hl7.parse_datetime(raw).isoformat()
    except ValueError:
        return None


def _identifiers(f: _Fields) -> list[PatientIdentifier]:
    found: list[PatientIdentifier] = []
    for segment, field in (("PID", 3), ("IN1", 36), ("IN1", 49)):
        for n in range(1, f.count(segment) + 1):
            for rep in range(1, f.repetitions(segment, field, n) + 1):
                ident = f.get(segment, field, rep, 1, n)
                if ident:
                    found.append(PatientIdentifier(id=ident, source=f"{segment}-{field}",
                                                   authority=f.get(segment, field, rep, 4, n),
                                                   type_code=f.get(segment, field, rep, 5, n)))
    return found


def _member_id(identifiers: list[PatientIdentifier]) -> str | None:
    """A PID-3 member number if the sender typed one, else the insurance policy or insured id, else
    the first PID-3 identifier: HIE feeds often carry the plan's member id as the MRN of a payer
    facility, and attribution decides whether it is one of ours."""
    for ident in identifiers:
        if ident.source == "PID-3" and ident.type_code in MEMBER_ID_TYPES:
            return ident.id
    for source in ("IN1-36", "IN1-49", "PID-3"):
        for ident in identifiers:
            if ident.source == source:
                return ident.id
    return None


def _facility_type(f: _Fields) -> str | None:
    for n in range(1, f.count("OBX") + 1):
        if f.get("OBX", 3, n=n) == FACILITY_TYPE_OBSERVATION:
            return f.get("OBX", 5, n=n)
    return None


def _diagnoses(f: _Fields) -> list[Diagnosis]:
    found = [Diagnosis(code=code, system=f.get("DG1", 3, comp=3, n=n),
                       description=f.get("DG1", 3, comp=2, n=n) or f.get("DG1", 4, n=n), kind=f.get("DG1", 6, n=n))
             for n in range(1, f.count("DG1") + 1) if (code := f.get("DG1", 3, n=n))]
    code = f.get("PV2", 3)
    if code:
        found.append(Diagnosis(code=code, system=f.get("PV2", 3, comp=3), description=f.get("PV2", 3, comp=2),
                               kind="admit_reason"))
    return found
