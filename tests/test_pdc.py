"""PDC by hand-computed cases and against an independent day-by-day simulation."""
import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.caregaps.pdc import Fill, Stay, adherence

D = dt.date


def test_two_fills_back_to_back():
    a = adherence([Fill("metformin", D(2026, 1, 1), 30), Fill("metformin", D(2026, 1, 31), 30)], [],
                  D(2026, 3, 31), D(2026, 3, 31))
    assert (a.index_date, a.days, a.covered, a.eligible) == (D(2026, 1, 1), 90, 60, True)
    assert round(a.pdc, 4) == 0.6667 and a.supply_ends == D(2026, 3, 2)


def test_an_early_refill_of_the_same_drug_is_taken_when_the_first_runs_out():
    a = adherence([Fill("metformin", D(2026, 1, 1), 30), Fill("metformin", D(2026, 1, 20), 30)], [],
                  D(2026, 3, 31), D(2026, 3, 31))
    assert a.covered == 60 and a.supply_ends == D(2026, 3, 2)


def test_different_drugs_of_the_class_overlap_instead():
    a = adherence([Fill("metformin", D(2026, 1, 1), 30), Fill("glipizide", D(2026, 1, 20), 30)], [],
                  D(2026, 3, 31), D(2026, 3, 31))
    assert a.covered == 49 and a.supply_ends == D(2026, 2, 19)  # Jan 1 .. Feb 18


def test_an_inpatient_stay_is_left_out_and_pauses_the_supply():
    # In hospital Jan 10-14 (home on the 15th): Jan 1-9, then Jan 15-Feb 4 from the same 30 days.
    a = adherence([Fill("statin", D(2026, 1, 1), 30), Fill("statin", D(2026, 3, 1), 30)],
                  [Stay(D(2026, 1, 10), D(2026, 1, 15))], D(2026, 3, 31), D(2026, 3, 31))
    assert a.days == 90 - 5
    assert a.covered == 30 + 30 and a.supply_ends == D(2026, 3, 31)


def test_a_leap_day_is_a_day_of_the_period():
    a = adherence([Fill("x", D(2024, 2, 1), 29), Fill("x", D(2024, 3, 1), 31)], [], D(2024, 3, 31), D(2024, 3, 31))
    assert (a.days, a.covered, a.pdc) == (60, 60, 1.0)


def test_one_fill_is_not_yet_in_the_measure():
    a = adherence([Fill("x", D(2026, 5, 1), 90)], [], D(2026, 12, 31), D(2026, 6, 1))
    assert not a.eligible


def test_early_warnings_refill_overdue_and_eighty_percent_out_of_reach():
    fills = [Fill("statin", D(2026, 1, 1), 30), Fill("statin", D(2026, 2, 15), 30)]  # ends Mar 17
    a = adherence(fills, [], D(2026, 12, 31), D(2026, 4, 6))
    assert a.supply_ends == D(2026, 3, 17) and a.refill_overdue_days() == 20
    # 60 of 96 days so far; 269 days left of 365: at best 329/365 = 90% still possible.
    assert (a.covered_to_date, a.days_to_date) == (60, 96) and not a.cannot_reach_threshold
    late = adherence(fills, [], D(2026, 12, 31), D(2026, 5, 20))
    assert late.best_possible < 0.8 and late.cannot_reach_threshold  # 60 + 225 of 365


def test_fills_after_the_evaluation_date_or_with_no_supply_do_not_count():
    a = adherence([Fill("x", D(2026, 1, 1), 30), Fill("x", D(2026, 1, 15), 0), Fill("x", D(2026, 7, 1), 30)], [],
                  D(2026, 12, 31), D(2026, 6, 1))
    assert a.covered == 30 and not a.eligible
    assert adherence([Fill("x", D(2026, 7, 1), 30)], [], D(2026, 12, 31), D(2026, 6, 1)) is None


def simulate(fills, stays, period_end, as_of):
    """Reference: walk the days with an inventory of pills per drug; each drug on hand is taken daily
    (so a same-drug early refill waits, different drugs overlap); nothing is taken in hospital."""
    fills = [f for f in fills if f.fill_date <= min(period_end, as_of) and f.days_supply > 0]
    if not fills:
        return None
    inpatient = {s.admitted + dt.timedelta(days=i) for s in stays for i in range((s.discharged - s.admitted).days)}
    day, inventory, covered, days, last_taken = min(f.fill_date for f in fills), {}, 0, 0, None
    while day <= period_end or any(inventory.values()):
        for f in fills:
            if f.fill_date == day:
                inventory[f.drug] = inventory.get(f.drug, 0) + f.days_supply
        if day not in inpatient:
            on_hand = [drug for drug, n in inventory.items() if n > 0]
            if day <= period_end:
                days += 1
                covered += bool(on_hand)
            for drug in on_hand:
                inventory[drug] -= 1
            if on_hand:
                last_taken = day
        day += dt.timedelta(days=1)
    return covered, days, last_taken + dt.timedelta(days=1)


fills_st = st.lists(st.builds(Fill, st.sampled_from(["a", "b", "c"]),
                              st.dates(D(2026, 1, 1), D(2026, 12, 31)), st.integers(0, 100)), max_size=8)
stays_st = st.lists(st.builds(lambda start, length: Stay(start, start + dt.timedelta(days=length)),
                              st.dates(D(2025, 12, 1), D(2026, 12, 31)), st.integers(1, 20)), max_size=3)


@settings(max_examples=300, deadline=None)
@given(fills_st, stays_st, st.dates(D(2026, 1, 1), D(2027, 1, 31)))
def test_matches_a_day_by_day_simulation(fills, stays, as_of):
    period_end = D(2026, 12, 31)
    result, expected = adherence(fills, stays, period_end, as_of), simulate(fills, stays, period_end, as_of)
    if expected is None:
        assert result is None
        return
    assert (result.covered, result.days, result.supply_ends) == expected
