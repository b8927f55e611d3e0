"""CBP and GSD as data, on hand-computed members: the latest result of the year decides, the
denominator needs the condition on enough dates (or a diabetes fill), and a later result above
target re-opens a gap a good one closed."""
import datetime as dt

import pytest

from streams.caregaps.control import status
from streams.caregaps.facts import Member
from streams.caregaps.lifecycle import Status
from streams.caregaps.measures import MeasureError, measures, parse_measure
from streams.caregaps.member import update
from streams.claims.ledger import EffectiveClaim, Fill, Line
from streams.codesets import RULES

D = dt.date
CBP, GSD = measures()["CBP"], measures()["GSD"]
BORN = D(1955, 5, 1)  # 71 at the end of 2026
HYPERTENSION = [  # diagnosed on two dates between 1 January 2025 and 30 June 2026
    EffectiveClaim("h1", "h1", "PROFESSIONAL", ("I10",), (Line("2025-04-01", "99213", "1234567893", 90.0),)),
    EffectiveClaim("h2", "h2", "PROFESSIONAL", ("I10",), (Line("2026-02-01", "99213", "1234567893", 90.0),)),
]
INSULIN = "00002751001"  # an NDC of the insulin code set
assert INSULIN in (RULES / "codesets" / "data" / "insulin_ndc.csv").read_text()


def result(claim_id, day, *codes, dx=()):
    return EffectiveClaim(claim_id, claim_id, "PROFESSIONAL", tuple(dx),
                          tuple(Line(day, code, "1234567893", 0.0) for code in codes))


def member(claims=(), history=HYPERTENSION, born=BORN, fills=()):
    return Member(born, "M", "MEDICARE_ADVANTAGE", [*history, *claims], [], tuple(fills))


def cbp(claims=(), **kw):
    return status(CBP, 2026, member(claims, **kw))


def test_the_latest_reading_below_140_over_90_closes_the_gap():
    found = cbp([result("bp1", "2026-03-01", "3077F", "3080F"), result("bp2", "2026-05-01", "3075F", "3079F")])
    assert (found.status, [e.id for e in found.evidence]) == ("closed", ["bp2"])


def test_a_later_reading_above_target_decides_over_an_earlier_good_one():
    found = cbp([result("bp1", "2026-03-01", "3074F", "3078F"), result("bp2", "2026-08-01", "3074F", "3080F")])
    assert found.status == "open" and "diastolic above target" in found.reason


def test_of_several_readings_on_the_latest_day_the_lowest_of_each_counts():
    found = cbp([result("bp1", "2026-06-01", "3077F", "3078F"), result("bp2", "2026-06-01", "3075F", "3080F")])
    assert (found.status, sorted(e.id for e in found.evidence)) == ("closed", ["bp1", "bp2"])


def test_a_day_with_only_a_systolic_result_does_not_count():
    found = cbp([result("bp1", "2026-03-01", "3075F", "3079F"), result("bp2", "2026-09-01", "3077F")])
    assert found.status == "closed" and found.details["result_date"] == "2026-03-01"


def test_no_reading_this_year_is_not_in_control_and_last_years_does_not_count():
    found = cbp([result("bp1", "2025-12-31", "3074F", "3078F")])
    assert (found.status, found.due) == ("open", D(2026, 12, 31))


@pytest.mark.parametrize("history, born, why", [
    (HYPERTENSION[:1], BORN, "1 of 2"),  # one date of service
    ([HYPERTENSION[0], result("h3", "2026-07-01", "99213", dx=["I10"])], BORN, "1 of 2"),  # after June 30
    ([HYPERTENSION[0], result("h3", "2025-04-01", "99214", dx=["I10"])], BORN, "1 of 2"),  # the same date
    (HYPERTENSION, D(1940, 1, 1), "age 86"),
])
def test_members_outside_the_denominator_say_why(history, born, why):
    found = cbp(history=history, born=born)
    assert found.status == "not_applicable" and why in found.reason


def test_a_diabetes_fill_puts_a_member_without_diagnoses_in_gsd():
    assert status(GSD, 2026, member(history=[])).status == "not_applicable"
    on_insulin = member([result("a1c", "2026-04-01", "3051F")], history=[],
                        fills=[Fill("rx1", INSULIN, "2025-11-01", 30)])
    assert status(GSD, 2026, on_insulin).status == "closed"
    assert status(GSD, 2026, member([result("a1c", "2026-04-01", "3052F")], history=[],
                                    fills=[Fill("rx1", INSULIN, "2025-11-01", 30)])).status == "open"


def test_a_later_result_above_target_reopens_the_gap_as_superseded_not_voided():
    good = member([result("a1", "2026-03-01", "3074F", "3078F")])
    worse = member([result("a1", "2026-03-01", "3074F", "3078F"), result("a2", "2026-09-01", "3077F", "3078F")])
    gaps, first = update({}, good, D(2026, 3, 2))
    gaps, then = update(gaps, worse, D(2026, 9, 2))
    cbp_events = [(e.kind, e.detail) for e in first + then if e.gap.measure_id == "CBP"]
    assert cbp_events == [("gap.closed", {"evidence": "a1"}),
                          ("gap.opened", {"reopened_by": "superseded", "evidence": "a1"})]
    assert gaps["CBP|2026"].status == Status.OPEN


def test_a_component_naming_a_group_the_code_set_lacks_is_refused():
    text = (RULES / "measures" / "cbp.toml").read_text()
    with pytest.raises(MeasureError, match="no group 'systolic_below_120'"):
        parse_measure(text.replace('"systolic_below_130", ', '"systolic_below_120", '), "cbp.toml")
