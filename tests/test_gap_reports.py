"""Gap reports a care manager and a medical director read: the DEQM gaps-in-care bundle (valid
FHIR R4), worklists soonest due first, and scorecards whose peer figures are hand-computed."""
import datetime as dt

import pytest
from fhir.resources.R4B.bundle import Bundle

from streams.caregaps.deqm import gaps_bundle
from streams.caregaps.reports import scorecard, worklist
from streams.models import GapInfo


def gap(measure, trigger, status, due, evidence=(), late=False, start="2026-01-01"):
    return GapInfo(gap_id=f"{measure}|{trigger}", measure_id=measure, measure_title=f"{measure} title",
                   trigger_id=trigger, status=status, window_start=start, due=due, evidence_ids=list(evidence),
                   closed_late=late, revision=1)


GAPS = [gap("FMC", "H|V1", "closed", "2026-03-08", ["c9"], late=True, start="2026-03-01"),
        gap("FMC", "H|V2", "open", "2026-06-08", start="2026-06-01"),
        gap("COL-E", "2026", "open", "2026-12-31", start="2017-01-01"),
        gap("BCS-E", "2026", "not_applicable", "2026-12-31")]


def test_the_gaps_in_care_bundle_is_a_valid_fhir_document_with_a_section_per_measure():
    bundle = gaps_bundle("M-1", GAPS, "2026-06-02T10:00:00+00:00", report_id="7d3c1f2e-0000-4000-8000-000000000001")
    Bundle.model_validate(bundle)  # raises on anything FHIR R4 does not allow
    resources = [e["resource"] for e in bundle["entry"]]
    composition = resources[0]
    assert (bundle["type"], composition["resourceType"]) == ("document", "Composition")
    assert [s["title"] for s in composition["section"]] == ["Colorectal cancer screening",
                                                            "Follow-up after an emergency department visit for "
                                                            "people with multiple high-risk chronic conditions"]
    issues = [r for r in resources if r["resourceType"] == "DetectedIssue"]
    statuses = {i["identifier"][0]["value"]: i["modifierExtension"][0]["valueCodeableConcept"]["coding"][0]["code"]
                for i in issues}
    assert statuses == {"FMC|H|V1": "closed-gap", "FMC|H|V2": "open-gap", "COL-E|2026": "open-gap"}  # excluded: out
    fmc_report = next(r for r in resources if r["resourceType"] == "MeasureReport" and "FMC" in r["measure"])
    counts = {p["code"]["coding"][0]["code"]: p["count"] for p in fmc_report["group"][0]["population"]}
    assert counts == {"initial-population": 2, "denominator": 2, "numerator": 1}
    # Every reference points at an entry of the bundle.
    urls = {e["fullUrl"] for e in bundle["entry"]}
    refs = [s["focus"]["reference"] for s in composition["section"]] + [
        i["evidence"][0]["detail"][0]["reference"] for i in issues]
    assert set(refs) <= urls


def test_a_worklist_puts_the_soonest_due_first_and_counts_days_left():
    rows = [("M-2", "111", gap("COL-E", "2026", "open", "2026-12-31")),
            ("M-1", "222", gap("FMC", "H|V2", "open", "2026-06-08"))]
    listed = worklist(rows, dt.date(2026, 6, 10))
    assert [(e["member_id"], e["days_left"]) for e in listed] == [("M-1", -2), ("M-2", 204)]


# Four family physicians (A-D) and one cardiologist (E) with COL-E outcomes:
# A 3 of 4 (0.75), B 1 of 2 (0.5), C 2 of 2 (1.0), D 0 of 1 (0.0), E 1 of 1; excluded gaps do not count.
OUTCOMES = ([("A", "COL-E", s) for s in ("closed", "closed", "closed", "open")] + [("A", "COL-E", "not_applicable")]
            + [("B", "COL-E", s) for s in ("closed", "missed")] + [("C", "COL-E", "closed")] * 2
            + [("D", "COL-E", "open"), ("E", "COL-E", "closed"), ("B", "FMC", "closed")])
PEERS = {"A": "207Q00000X", "B": "207Q00000X", "C": "207Q00000X", "D": "207Q00000X", "E": "207RC0000X"}


@pytest.mark.parametrize("npi, rate, median, percentile", [
    ("A", 0.75, 0.625, 62.5),   # peers 0, 0.5, 0.75, 1: one below, itself equal -> (2 + 0.5) / 4
    ("D", 0.0, 0.625, 12.5),
    ("C", 1.0, 0.625, 87.5),
    ("E", 1.0, 1.0, 50.0),      # alone in its specialty
])
def test_scorecard_rates_sit_next_to_the_median_and_percentile_of_the_same_specialty(npi, rate, median, percentile):
    [col] = [s for s in scorecard(npi, OUTCOMES, PEERS) if s.measure_id == "COL-E"]
    assert (col.rate, col.peer_median, col.percentile) == (rate, median, percentile)


def test_a_scorecard_lists_only_the_measures_the_provider_has_members_in():
    assert [s.measure_id for s in scorecard("A", OUTCOMES, PEERS)] == ["COL-E"]
    fmc = [s for s in scorecard("B", OUTCOMES, PEERS) if s.measure_id == "FMC"][0]
    assert (fmc.met, fmc.counted, fmc.peers) == (1, 1, 1)
