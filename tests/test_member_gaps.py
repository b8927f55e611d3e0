"""A member's gaps kept current from visits and claims, as a care manager would follow them:
hand-computed FMC and COL-E scenarios, in any arrival order."""
import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.adt.visits import alert_id
from streams.attribution.members import MemberState, apply, check, keep_cohorts, keep_gaps
from streams.caregaps.alerts import gap_info
from streams.caregaps.lifecycle import Status
from streams.caregaps.member import Member, Visit, gap_from_dict, gap_to_dict, update, wakeup
from streams.claims.ledger import EffectiveClaim, Line
from streams.claims.validation import InvalidRecord
from streams.models import Encounter
from tests.claims_factory import fill, span, visit, void

D = dt.date
ED = Visit("STMARYS|V1", "ed_visit", D(2026, 3, 1))
FMC_GAP = "FMC|STMARYS|V1"
HISTORY = [  # heart failure and COPD: two FMC condition groups
    EffectiveClaim("h1", "h1", "PROFESSIONAL", ("I509",), (Line("2025-05-01", "99213", "1234567893", 90.0),)),
    EffectiveClaim("h2", "h2", "PROFESSIONAL", ("J449",), (Line("2025-09-01", "99213", "1234567893", 90.0),)),
]


def office_visit(claim_id, day, code="99214"):
    return EffectiveClaim(claim_id, claim_id, "PROFESSIONAL", ("I509",), (Line(day, code, "1234567893", 120.0),))


BORN = D(1950, 6, 1)


def member(claims=(), visits=(ED,), born=BORN, product="MEDICARE_ADVANTAGE"):
    return Member(born, "F", product, [*HISTORY, *claims], list(visits))


def run(steps, gaps=None):
    """Apply (member, today) steps in turn; return the gaps and every event kind by gap."""
    gaps, seen = dict(gaps or {}), []
    for m, today in steps:
        gaps, events = update(gaps, m, today)
        seen += [(e.kind, e.gap.measure_id) for e in events]
    return gaps, seen


def test_an_ed_visit_opens_fmc_and_a_follow_up_visit_in_the_window_closes_it():
    gaps, seen = run([(member(), D(2026, 3, 1)), (member([office_visit("f1", "2026-03-05")]), D(2026, 3, 6))])
    assert gaps[FMC_GAP].status == Status.CLOSED and [e.id for e in gaps[FMC_GAP].evidence] == ["f1"]
    assert [k for k, m in seen if m == "FMC"] == ["gap.opened", "gap.closed"]


def test_running_again_on_the_same_facts_changes_nothing():
    gaps, _ = run([(member(), D(2026, 3, 1))])
    again, events = update(gaps, member(), D(2026, 3, 1))
    assert again == gaps and events == []


def test_the_deadline_passes_the_gap_is_missed_and_a_late_claim_dated_inside_still_closes_it():
    gaps, seen = run([(member(), D(2026, 3, 1)), (member(), D(2026, 3, 6)), (member(), D(2026, 3, 9))])
    assert gaps[FMC_GAP].status == Status.MISSED
    assert [k for k, m in seen if m == "FMC"] == ["gap.opened", "gap.due_soon", "gap.missed"]
    gaps, events = update(gaps, member([office_visit("f1", "2026-03-08")]), D(2026, 4, 20))
    assert gaps[FMC_GAP].status == Status.CLOSED and gaps[FMC_GAP].closed_late
    assert [(e.kind, e.detail.get("late")) for e in events if e.gap.measure_id == "FMC"] == [("gap.closed", "true")]


def test_a_follow_up_one_day_after_the_window_does_not_count():
    gaps, _ = run([(member([office_visit("f1", "2026-03-09")]), D(2026, 3, 10))])
    assert gaps[FMC_GAP].status == Status.MISSED and gaps[FMC_GAP].evidence == ()


def test_voiding_the_closing_claim_reopens_the_gap():
    closed, _ = run([(member([office_visit("f1", "2026-03-05")]), D(2026, 3, 5))])
    gaps, events = update(closed, member(), D(2026, 3, 6))  # f1 is no longer an effective claim
    assert gaps[FMC_GAP].status == Status.OPEN
    assert [(e.kind, e.detail) for e in events if e.gap.measure_id == "FMC"] == [
        ("gap.opened", {"reopened_by": "void", "evidence": "f1"}), ("gap.due_soon", {})]  # two days left of the window


def test_an_admission_within_seven_days_excludes_the_visit_whenever_it_is_known():
    admitted = Visit("STMARYS|V2", "inpatient_admission", D(2026, 3, 3))
    before, _ = run([(member(visits=[ED, admitted]), D(2026, 3, 3))])
    assert FMC_GAP not in before  # known first: the gap never opens
    after, seen = run([(member(), D(2026, 3, 1)), (member(visits=[ED, admitted]), D(2026, 3, 3))])
    assert after[FMC_GAP].status == Status.NOT_APPLICABLE
    assert [k for k, m in seen if m == "FMC"] == ["gap.opened", "gap.excluded"]


def test_the_second_condition_arriving_after_the_visit_opens_the_gap_then():
    only_one = Member(D(1950, 6, 1), "F", "MEDICARE_ADVANTAGE", HISTORY[:1], [ED])
    gaps, _ = run([(only_one, D(2026, 3, 2))])
    assert FMC_GAP not in gaps
    gaps, events = update(gaps, member(), D(2026, 3, 3))
    assert gaps[FMC_GAP].status == Status.OPEN


def test_no_coverage_no_gap_and_a_commercial_member_is_outside_fmc():
    assert update({}, Member(None, None, None, HISTORY, [ED]), D(2026, 3, 1)) == ({}, [])
    gaps, _ = run([(member(product="COMMERCIAL"), D(2026, 3, 1))])
    assert FMC_GAP not in gaps


def test_colorectal_screening_opens_for_the_year_and_a_colonoscopy_nine_years_back_closes_it():
    plain = Member(D(1960, 1, 1), "M", "COMMERCIAL", [], [])
    gaps, events = update({}, plain, D(2026, 2, 1))
    assert gaps["COL-E|2026"].status == Status.OPEN and gaps["COL-E|2026"].due == D(2026, 12, 31)
    scoped = EffectiveClaim("s1", "s1", "PROFESSIONAL", ("Z1211",), (Line("2017-04-01", "45378", "1234567893", 900.0),))
    gaps, events = update(gaps, Member(D(1960, 1, 1), "M", "COMMERCIAL", [scoped], []), D(2026, 2, 1))
    assert gaps["COL-E|2026"].status == Status.CLOSED
    assert [e.kind for e in events] == ["gap.closed"]


def test_a_member_already_screened_is_announced_once_as_closed():
    scoped = EffectiveClaim("s1", "s1", "PROFESSIONAL", (), (Line("2025-04-01", "82270", "1234567893", 20.0),))
    gaps, events = update({}, Member(D(1960, 1, 1), "M", "COMMERCIAL", [scoped], []), D(2025, 6, 1))
    assert gaps["COL-E|2025"].status == Status.CLOSED and [e.kind for e in events] == ["gap.closed"]


def test_timers_wake_the_member_on_the_warning_day_the_day_after_the_deadline_and_new_year():
    gaps, _ = run([(member(), D(2026, 3, 1))])
    assert wakeup(gaps, D(2026, 3, 1)) == D(2026, 3, 6)  # due 03-08, warned two days before
    gaps, _ = run([(member(), D(2026, 3, 6))], gaps)
    assert wakeup(gaps, D(2026, 3, 6)) == D(2026, 3, 9)
    gaps, _ = run([(member(), D(2026, 3, 9))], gaps)
    assert wakeup(gaps, D(2026, 3, 9)) == D(2027, 1, 1)


def test_gaps_survive_the_changelog():
    gaps, _ = run([(member([office_visit("f1", "2026-03-05")]), D(2026, 3, 5))])
    assert {k: gap_from_dict(gap_to_dict(g)) for k, g in gaps.items()} == gaps


CLAIMS = [office_visit("f1", "2026-03-04"), office_visit("f2", "2026-03-06", "99496"),
          office_visit("late", "2026-03-20")]


@settings(max_examples=100, deadline=None)
@given(st.permutations(CLAIMS))
def test_the_same_claims_in_any_order_give_the_same_gap(order):
    gaps, _ = run([(member(), D(2026, 3, 1))])
    for i in range(len(order)):
        gaps, _ = update(gaps, member(order[: i + 1]), D(2026, 3, 10))
    assert gaps[FMC_GAP].status == Status.CLOSED
    assert sorted(e.id for e in gaps[FMC_GAP].evidence) == ["f1", "f2"]


DISCHARGE = Visit("STMARYS|V9", "inpatient_discharge", D(2026, 5, 10))


def test_a_discharge_opens_both_transitions_of_care_gaps_and_each_closes_on_its_own_evidence():
    discharged = member(visits=[DISCHARGE])
    gaps, _ = update({}, discharged, D(2026, 5, 10))
    assert {k: (g.status, g.due) for k, g in gaps.items() if k.startswith("TRC")} == {
        "TRC-PE|STMARYS|V9": (Status.OPEN, D(2026, 6, 9)), "TRC-MRP|STMARYS|V9": (Status.OPEN, D(2026, 6, 9))}
    reconciled = member([office_visit("mr1", "2026-06-09", "1111F")], visits=[DISCHARGE])
    gaps, events = update(gaps, reconciled, D(2026, 6, 9))
    assert gaps["TRC-MRP|STMARYS|V9"].status == Status.CLOSED  # the 31st day still counts
    assert gaps["TRC-PE|STMARYS|V9"].status == Status.OPEN  # reconciliation is not an engagement visit
    assert sorted((e.kind, e.gap.measure_id) for e in events) == [
        ("gap.closed", "TRC-MRP"), ("gap.due_soon", "TRC-PE")]  # the last day of its window


def test_an_encounter_of_an_unknown_kind_or_day_is_refused_with_a_reason():
    def encounter(kind="ed_visit", day="2026-03-01"):
        return Encounter("F|V1", "M1", kind, day, "F", 1)

    assert check(encounter(), D(2026, 3, 2)) is None
    with pytest.raises(InvalidRecord) as bad_kind:
        check(encounter(kind="picnic"), D(2026, 3, 2))
    with pytest.raises(InvalidRecord) as bad_day:
        check(encounter(day="2026-02-30"), D(2026, 3, 2))
    assert (bad_kind.value.reason, bad_day.value.reason) == ("invalid_encounter_kind", "invalid_date")


def test_a_depression_ed_visit_opens_both_fum_rates_and_a_visit_on_day_twenty_closes_only_the_thirty_day_one():
    ed = Visit("STMARYS|V5", "ed_visit", D(2026, 4, 1), ("F32.9", "R45.851"))
    adult = Member(D(1990, 2, 2), "M", "COMMERCIAL", [], [ed])
    gaps, _ = update({}, adult, D(2026, 4, 1))
    assert {k for k in gaps if k.startswith("FU")} == {"FUM-7|STMARYS|V5", "FUM-30|STMARYS|V5"}
    assert "FMC|STMARYS|V5" not in gaps  # commercial, no chronic conditions
    therapy = EffectiveClaim("p1", "p1", "PROFESSIONAL", ("F329",), (Line("2026-04-21", "90834", "1234567893", 95.0),))
    gaps, _ = update(gaps, Member(D(1990, 2, 2), "M", "COMMERCIAL", [therapy], [ed]), D(2026, 4, 22))
    assert gaps["FUM-30|STMARYS|V5"].status == Status.CLOSED
    assert gaps["FUM-7|STMARYS|V5"].status == Status.MISSED


def test_the_principal_diagnosis_decides_fum_and_fua():
    def opened(*diagnoses, born=None):
        born = born or D(1990, 2, 2)
        visit = Visit("F|V", "ed_visit", D(2026, 4, 1), diagnoses)
        return {k.split("|")[0] for k in update({}, Member(born, "F", "MEDICAID", [], [visit]), D(2026, 4, 1))[0]
                if k.startswith("FU")}

    assert opened("F10.20") == {"FUA-7", "FUA-30"}
    assert opened("F17.210") == set()  # nicotine dependence is not FUA's
    assert opened("I10", "F32.9") == set()  # only the principal diagnosis counts
    assert opened() == set()  # no diagnosis sent
    assert opened("F10.20", born=D(2014, 4, 2)) == set()  # 11 years old: under FUA's 13


def test_last_years_screening_gap_is_missed_in_the_new_year_even_though_no_rule_looks_at_it():
    plain = Member(D(1960, 1, 1), "M", "COMMERCIAL", [], [])
    gaps, _ = update({}, plain, D(2025, 12, 1))
    gaps, events = update(gaps, plain, D(2026, 1, 2))
    assert gaps["COL-E|2025"].status == Status.MISSED and gaps["COL-E|2026"].status == Status.OPEN
    assert ("gap.missed", "COL-E|2025") in [(e.kind, f"{e.gap.measure_id}|{e.gap.trigger_id}") for e in events]
    assert wakeup(gaps, D(2026, 1, 2)) > D(2026, 1, 2)  # nothing due in the past keeps waking the member


COLECTOMY = EffectiveClaim("x1", "x1", "INSTITUTIONAL", ("Z9049",), (Line("2020-05-01", "44150", "1234567893", 9e3),))


@settings(max_examples=50, deadline=None)
@given(st.booleans())
def test_a_voided_colectomy_claim_gives_the_screening_gap_back_whenever_it_was_seen(seen_in_between):
    def screening_member(claims):
        return Member(D(1960, 1, 1), "M", "COMMERCIAL", claims, [])

    gaps, _ = update({}, screening_member([]), D(2026, 2, 1))
    if seen_in_between:  # the colectomy claim and its void arrive in different batches
        gaps, _ = update(gaps, screening_member([COLECTOMY]), D(2026, 2, 1))
        assert gaps["COL-E|2026"].status == Status.NOT_APPLICABLE
    gaps, _ = update(gaps, screening_member([]), D(2026, 2, 2))  # voided
    assert gaps["COL-E|2026"].status == Status.OPEN


def test_a_member_of_unknown_sex_is_in_measures_that_name_no_sex():
    gaps, _ = update({}, Member(D(1960, 1, 1), "U", "COMMERCIAL", [], []), D(2026, 2, 1))
    assert gaps["COL-E|2026"].status == Status.OPEN


def test_an_ed_visit_whose_diagnosis_comes_later_opens_fum_then():
    state = MemberState()
    apply(state, span(product_line="COMMERCIAL"))
    registered = Encounter("F|V7", "M1", "ed_visit", "2026-03-01", "F", 1)
    assert apply(state, registered).gaps and not [e for e in keep_gaps(state, D(2026, 3, 1))
                                                  if e.gap.measure_id.startswith("FUM")]
    diagnosed = Encounter("F|V7", "M1", "ed_visit", "2026-03-01", "F", 2, diagnoses=["F32.9"])
    assert apply(state, diagnosed).gaps
    assert {e.gap.measure_id for e in keep_gaps(state, D(2026, 3, 1))} >= {"FUM-7", "FUM-30"}
    assert apply(state, diagnosed).gaps == frozenset()  # redelivered: nothing to do


def test_a_follow_up_gap_goes_when_the_hospital_cancels_its_visit_and_returns_if_the_visit_happens_after_all():
    state = MemberState()
    apply(state, span(product_line="COMMERCIAL"))
    diagnosed = Encounter("F|V7", "M1", "ed_visit", "2026-03-01", "F", 1, diagnoses=["F32.9"])
    apply(state, diagnosed)
    assert {e.gap.measure_id for e in keep_gaps(state, D(2026, 3, 1)) if e.kind == "gap.opened"} >= {"FUM-7"}
    cancelled = Encounter("F|V7", "M1", "ed_visit", "", "F", 2, withdrawn=True)
    check(cancelled, D(2026, 3, 2))  # no day needed to name the visit withdrawn
    affects = apply(state, cancelled)
    excluded = keep_gaps(state, D(2026, 3, 2), affects.gaps)
    assert {e.gap.measure_id for e in excluded} >= {"FUM-7", "FUM-30"}
    assert {e.kind for e in excluded} == {"gap.excluded"}
    assert {e.detail["reason"] for e in excluded} == {"the hospital cancelled the visit"}
    assert apply(state, cancelled).gaps == frozenset()  # the withdrawal redelivered: nothing to do
    assert keep_gaps(state, D(2026, 3, 3)) == []  # and it stays withdrawn
    # Registered again after all, on another day: the ADT side numbers the visit after the cancel.
    apply(state, Encounter("F|V7|1", "M1", "ed_visit", "2026-03-03", "F", 3, diagnoses=["F32.9"]))
    reopened = keep_gaps(state, D(2026, 3, 3))
    assert {e.gap.measure_id for e in reopened if e.kind == "gap.opened"} >= {"FUM-7", "FUM-30"}
    fum7 = next(e.gap for e in reopened if e.gap.measure_id == "FUM-7")
    assert (fum7.window_start, fum7.due) == (D(2026, 3, 3), D(2026, 3, 10))  # its own window, not the cancelled one
    assert gap_info(fum7).detail.get("ed_alert_id") == alert_id("adt.ed_visit", "F|V7|1")  # the alert raised again
    assert state.gaps["FUM-7|F|V7"].status == Status.NOT_APPLICABLE


def _claim_with(claim_id, day, code, dx):
    claim = visit(claim_id, "1000000001", day, code=code)
    claim.diagnosis_codes = list(dx)
    return claim


MESSAGES = [
    _claim_with("c1", "2026-01-10", "99213", ["I10"]), _claim_with("c2", "2026-02-10", "99213", ["I10", "E119"]),
    _claim_with("c3", "2026-03-05", "99214", ["I509"]), _claim_with("c4", "2026-03-06", "3074F", []),
    _claim_with("c5", "2026-03-06", "3078F", []), _claim_with("c6", "2026-02-20", "45378", []),
    _claim_with("c7", "2026-03-07", "3052F", []), _claim_with("c8", "2026-02-01", "80053", ["Z0000"]),
    _claim_with("c9", "2026-03-08", "99213", ["I10", "E11.9"]),  # a third date: conditions only
    void("c6-void", "c6"), fill("r1", "2026-01-05", 90, ndc="00006057561"),
    fill("r2", "2026-03-01", 90, ndc="00006057561"), fill("r3", "2026-02-01", 30),
    Encounter("F|V1", "M1", "ed_visit", "2026-03-02", "F", 1, diagnoses=["I509"]),
]


@settings(max_examples=60, deadline=None)
@given(st.permutations(MESSAGES))
def test_re_evaluating_only_the_measures_a_message_touches_gives_what_evaluating_all_gives(order):
    # The processor evaluates only the measures that read a message's codes, and of those not the
    # ones it adds only a condition to while the member is in their denominator already; a member
    # evaluated in full after every message must end up with the same gaps.
    today, partial, full = D(2026, 3, 10), MemberState(), MemberState()
    for state in (partial, full):
        apply(state, span(product_line="MEDICARE_ADVANTAGE"))
        keep_gaps(state, today)
    for message in order:
        affects = apply(partial, message)
        keep_gaps(partial, today, affects.gaps, conditions_only=affects.conditions_only)
        apply(full, message)
        keep_gaps(full, today)
        keep_cohorts(full, today)
        assert partial.gaps == full.gaps
        # What is kept of the claims between messages (diagnoses, first service dates) must give
        # what a state recovered from its changelog, which keeps nothing, works out.
        recovered = MemberState.from_dict(full.to_dict())
        assert keep_gaps(recovered, today) == [] and recovered.gaps == full.gaps
        assert not keep_cohorts(recovered, today) and recovered.cohorts == full.cohorts


def test_a_stay_whose_discharge_was_cancelled_and_sent_again_still_pairs_with_its_admission():
    from streams.caregaps.pdc import Stay

    visits = [Visit("F|V1", "inpatient_admission", D(2026, 3, 1)),
              Visit("F|V1|1", "inpatient_discharge", D(2026, 3, 9))]
    assert Member(D(1960, 1, 1), "M", "COMMERCIAL", [], visits).stays() == [Stay(D(2026, 3, 1), D(2026, 3, 9))]
