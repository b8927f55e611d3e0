"""A member's gaps in care as a FHIR R4 document Bundle in the Da Vinci DEQM "gaps in care" shape:
a Composition with one section per measure, each section's MeasureReport (how many of the member's
gaps of that measure are closed) and a DetectedIssue per gap carrying its status.

Built as plain JSON; the tests validate it with fhir.resources. Excluded (not applicable) gaps are
left out: the report lists what is, or was, a gap in care.
"""
from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from streams.caregaps.measures import measures
from streams.models import GapInfo

DEQM = "http://hl7.org/fhir/us/davinci-deqm"
_NAMESPACE = uuid.UUID("6a3e1c52-94b1-4f0e-8d6b-2f7d4c8e9b10")
# gapstream's statuses as DEQM gap statuses: a missed gap is still a gap in care, never closed.
GAP_STATUS = {"open": "open-gap", "missed": "open-gap", "closed": "closed-gap"}


def _urn(*parts: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, '|'.join(parts))}"


def _ref(url: str) -> dict[str, str]:
    return {"reference": url}


def gaps_bundle(member_id: str, gaps: Iterable[GapInfo], now: str, report_id: str | None = None) -> dict[str, Any]:
    """``now`` is an ISO timestamp with time zone; ``report_id`` names this document (a new one per call)."""
    report_id = report_id or str(uuid.uuid4())
    patient, author = _urn(member_id, "patient"), _urn("gapstream")
    by_measure: dict[str, list[GapInfo]] = defaultdict(list)
    for gap in gaps:
        if gap.status in GAP_STATUS:
            by_measure[gap.measure_id].append(gap)
    catalog = measures()
    entries: list[dict[str, Any]] = [
        {"fullUrl": patient, "resource": {"resourceType": "Patient",
                                          "identifier": [{"system": "urn:gapstream:member-id", "value": member_id}]}},
        {"fullUrl": author, "resource": {"resourceType": "Organization", "name": "gapstream care-gap engine"}},
    ]
    sections = []
    for measure_id, found in sorted(by_measure.items()):
        measure = catalog.get(measure_id)
        report = _urn(member_id, measure_id, "report", now)
        closed = sum(g.status == "closed" for g in found)
        entries.append({"fullUrl": report, "resource": {
            "resourceType": "MeasureReport",
            "meta": {"profile": [f"{DEQM}/StructureDefinition/indv-measurereport-deqm"]},
            "status": "complete", "type": "individual",
            "measure": f"urn:gapstream:measure:{measure_id}" + (f"|{measure.version}" if measure else ""),
            "subject": _ref(patient), "date": now, "reporter": _ref(author),
            "period": {"start": min(g.window_start for g in found), "end": max(g.due for g in found)},
            "improvementNotation": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/measure-improvement-notation", "code": "increase"}]},
            "group": [{"population": [_population("initial-population", len(found)),
                                      _population("denominator", len(found)),
                                      _population("numerator", closed)]}]}})
        issues = []
        for gap in found:
            issue = _urn(member_id, gap.gap_id, str(gap.revision))
            issues.append(_ref(issue))
            entries.append({"fullUrl": issue, "resource": {
                "resourceType": "DetectedIssue",
                "meta": {"profile": [f"{DEQM}/StructureDefinition/gaps-detectedissue-deqm"]},
                "modifierExtension": [{"url": f"{DEQM}/StructureDefinition/extension-gapStatus",
                                       "valueCodeableConcept": {"coding": [{
                                           "system": f"{DEQM}/CodeSystem/gaps-status",
                                           "code": GAP_STATUS[gap.status]}]}}],
                "identifier": [{"system": "urn:gapstream:gap-id", "value": gap.gap_id}],
                "status": "final",
                "code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                     "code": "CAREGAP", "display": "Care Gaps"}]},
                "patient": _ref(patient),
                "detail": _detail(gap),
                "evidence": [{"detail": [_ref(report)]}]}})
        sections.append({"title": measure.title if measure else measure_id, "focus": _ref(report), "entry": issues})
    composition = _urn(member_id, "composition", report_id)
    entries.insert(0, {"fullUrl": composition, "resource": {
        "resourceType": "Composition",
        "meta": {"profile": [f"{DEQM}/StructureDefinition/gaps-composition-deqm"]},
        "status": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": "96315-7", "display": "Gaps in care report"}]},
        "subject": _ref(patient), "date": now, "author": [_ref(author)], "title": "Gaps in care report",
        "section": sections}})
    return {"resourceType": "Bundle",
            "meta": {"profile": [f"{DEQM}/StructureDefinition/gaps-bundle-deqm"]},
            "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{report_id}"},
            "type": "document", "timestamp": now, "entry": entries}


def _population(code: str, count: int) -> dict[str, Any]:
    return {"code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-population",
                                 "code": code}]}, "count": count}


def _detail(gap: GapInfo) -> str:
    state = {"open": f"open, due {gap.due}", "missed": f"missed: not closed by {gap.due}",
             "closed": "closed" + (" late" if gap.closed_late else "")}[gap.status]
    evidence = f"; evidence {', '.join(gap.evidence_ids)}" if gap.evidence_ids else ""
    return f"{gap.measure_title}: {state}{evidence}"
