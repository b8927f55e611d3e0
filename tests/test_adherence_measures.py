"""D08 as data, on hand-computed members: the year's proportion of days covered, secured or out of
reach as early as the fills decide it, the refill-overdue warning once per supply, leap years,
hospital stays, insulin users excluded and reversed fills re-opening the gap."""
import datetime as dt

import pytest

from streams.caregaps.adherence import status
from streams.caregaps.facts import Member, Visit
from streams.caregaps.lifecycle import Status
from streams.caregaps.measures import measures
from streams.caregaps.member import update, wakeup
from streams.claims.ledger import Fill
from streams.codesets import codeset

D = dt.date
D08 = measures()["D08"]
BORN = D(1950, 6, 1)
METFORMIN_SITAGLIPTIN = "00006057561"  # an NDC of the non-insulin diabetes drugs code set
INSULIN = "00002751001"
assert METFORMIN_SITAGLIPTIN in codeset("non_insulin_diabetes_drugs") and INSULIN in codeset("insulin")


def fill(claim_id, day, days=90, ndc=METFORMIN_SITAGLIPTIN):
    return Fill(claim_id, ndc, day, days)


def member(*fills, visits=(), product="MEDICARE_ADVANTAGE"):
    return Member(BORN, "F", product, [], list(visits), tuple(sorted(fills, key=lambda f: f.fill_date)))


YEAR_END = D(2026, 12, 31)


def d08(*fills, today=YEAR_END, **kw):
    return status(D08, today.year, member(*fills, **kw), today)


QUARTERLY = [fill("q1", "2026-01-01"), fill("q2", "2026-04-01"), fill("q3", "2026-07-01"), fill("q4", "2026-09-29")]


def test_fills_covering_80_percent_close_the_gap_as_soon_as_nothing_can_undo_it():
    # Jan 1 to Sep 28 is 271 days: 292 of 365 are needed, not yet secured.
    assert d08(*QUARTERLY[:3], today=D(2026, 7, 1)).status == "open"
    found = d08(*QUARTERLY, today=D(2026, 9, 29))  # 360 days covered once the fourth fill is in
    assert (found.status, found.details["covered"], found.details["days"]) == ("closed", 360, 365)
    assert [e.id for e in found.evidence] == ["q1", "q2", "q3", "q4"]


def test_the_gap_is_missed_the_day_80_percent_becomes_out_of_reach():
    # Two 30-day fills (Jan 1, Feb 1) leave Jan 31 and every day from Mar 3 uncovered. The year can
    # afford 365 - 292 = 73 uncovered days: the 74th is May 14.
    fills = (fill("a", "2026-01-01", 30), fill("b", "2026-02-01", 30))
    assert d08(*fills, today=D(2026, 5, 13)).status == "open"
    assert d08(*fills, today=D(2026, 5, 14)).status == "missed"
    # Seen on April 1, the member is looked at again on May 14 without any message.
    assert d08(*fills, today=D(2026, 4, 1)).watch == D(2026, 5, 14)


def test_refill_overdue_is_sent_once_per_supply_that_ran_out():
    fills = [fill("a", "2026-01-01", 30), fill("b", "2026-02-01", 30)]  # the supply ends on March 3
    gaps, events = {}, []
    for today, held in [(D(2026, 3, 10), fills), (D(2026, 3, 11), fills), (D(2026, 3, 12), fills),
                        (D(2026, 3, 20), [*fills, fill("c", "2026-03-20", 30)]),
                        (D(2026, 4, 27), [*fills, fill("c", "2026-03-20", 30)])]:
        gaps, new = update(gaps, member(*held), today)
        events += [(today, e.kind, e.detail) for e in new if e.gap.measure_id == "D08"]
    assert events == [
        (D(2026, 3, 10), "gap.opened", {}),  # 7 days without supply: not yet overdue
        (D(2026, 3, 11), "gap.refill_overdue", {"supply_ran_out": "2026-03-03", "days_without_supply": "8"}),
        (D(2026, 4, 27), "gap.refill_overdue", {"supply_ran_out": "2026-04-19", "days_without_supply": "8"}),
    ]
    # Uncovered so far: Jan 31, Mar 3-19, Apr 19-27 (27 days); 46 more are affordable, so without a
    # refill the member is looked at again, and missed, on June 13.
    assert wakeup(gaps, D(2026, 4, 27)) == D(2026, 6, 13)


def test_a_leap_year_needs_293_of_366_days():
    assert d08(fill("a", "2028-01-01", 200), fill("b", "2028-07-19", 92), today=D(2028, 12, 31)).status == "missed"
    found = d08(fill("a", "2028-01-01", 200), fill("b", "2028-07-19", 93), today=D(2028, 12, 31))
    assert (found.status, found.details["days"], found.details["covered"]) == ("closed", 366, 293)


def test_days_in_hospital_neither_count_nor_use_up_the_supply():
    fills = (fill("a", "2026-01-01", 30), fill("b", "2026-01-31", 30))  # covered to Mar 1 without a stay
    stay = [Visit("H|1", "inpatient_admission", D(2026, 2, 10)), Visit("H|1", "inpatient_discharge", D(2026, 2, 20))]
    without, within = d08(*fills, today=D(2026, 3, 1)), d08(*fills, today=D(2026, 3, 1), visits=stay)
    assert (without.details["days"], within.details["days"]) == (365, 355)
    assert (without.details["supply_ends"], within.details["supply_ends"]) == ("2026-03-02", "2026-03-12")


def test_two_hospital_stays_both_count():
    # Found by `gapstream bench pipeline`: a member's second stay made the evaluation fail.
    fills = (fill("a", "2026-01-01", 30), fill("b", "2026-01-31", 30))
    stays = [Visit("H|2", "inpatient_admission", D(2026, 2, 22)), Visit("H|2", "inpatient_discharge", D(2026, 2, 25)),
             Visit("H|1", "inpatient_admission", D(2026, 2, 10)), Visit("H|1", "inpatient_discharge", D(2026, 2, 20))]
    found = d08(*fills, today=D(2026, 3, 1), visits=stays)
    assert (found.details["days"], found.details["supply_ends"]) == (352, "2026-03-15")


@pytest.mark.parametrize("fills, why", [
    ([fill("a", "2026-01-01")], "1 of 2 fills"),
    ([fill("a", "2026-03-01"), fill("b", "2026-03-01")], "1 of 2 fills"),  # the same date
    ([fill("a", "2026-10-03", 30), fill("b", "2026-11-01", 30)], "fewer than 91 days"),
    ([*QUARTERLY, fill("i", "2026-05-01", 30, INSULIN)], "Insulin"),
])
def test_members_outside_the_denominator_say_why(fills, why):
    found = d08(*fills)
    assert found.status == "not_applicable" and why in found.reason


def test_a_first_fill_on_october_2_still_leaves_91_days():
    assert d08(fill("a", "2026-10-02", 30), fill("b", "2026-11-01", 30)).status != "not_applicable"


def test_a_reversed_fill_reopens_a_secured_gap():
    gaps, first = update({}, member(*QUARTERLY), D(2026, 9, 29))
    gaps, then = update(gaps, member(*QUARTERLY[:3]), D(2026, 9, 30))
    kinds = [(e.kind, e.detail.get("reopened_by")) for e in first + then if e.gap.measure_id == "D08"]
    assert kinds == [("gap.closed", None), ("gap.opened", "void")]
    assert gaps["D08|2026"].status == Status.OPEN


def test_commercial_members_are_not_in_the_part_d_measure():
    assert d08(*QUARTERLY, product="COMMERCIAL").status == "not_applicable"
