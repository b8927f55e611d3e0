"""A follow-up gap from its trigger to closed, missed or re-opened, decided by event time."""
import datetime as dt

from streams.caregaps.lifecycle import (
    Evidence,
    EvidenceAdded,
    EvidenceVoided,
    Opened,
    Status,
    Tick,
    apply,
    next_wakeup,
)

D = dt.date
# An ED visit on March 1st: follow-up counts on March 1st to 8th (the visit day plus 7).
OPEN = Opened("FMC", "visit-1", D(2026, 3, 1), D(2026, 3, 8))
VISIT = Evidence("claim", "C1", D(2026, 3, 5))


def run(facts, days):
    gap, events = None, []
    for fact, day in zip(facts, days, strict=True):
        gap, new = apply(gap, fact, day)
        events += [e.kind for e in new]
    return gap, events


def test_open_warned_then_missed_by_the_calendar():
    gap, events = run([OPEN, Tick(), Tick(), Tick()], [D(2026, 3, 1), D(2026, 3, 5), D(2026, 3, 6), D(2026, 3, 9)])
    assert events == ["gap.opened", "gap.due_soon", "gap.missed"] and gap.status == Status.MISSED


def test_a_follow_up_inside_the_window_closes_it():
    gap, events = run([OPEN, EvidenceAdded(VISIT)], [D(2026, 3, 1), D(2026, 3, 5)])
    assert events == ["gap.opened", "gap.closed"] and gap.status == Status.CLOSED and not gap.closed_late


def test_a_late_claim_dated_inside_the_window_closes_a_missed_gap_and_says_so():
    gap, events = run([OPEN, Tick(), EvidenceAdded(VISIT)], [D(2026, 3, 1), D(2026, 3, 9), D(2026, 4, 20)])
    assert events == ["gap.opened", "gap.missed", "gap.closed"]
    assert gap.status == Status.CLOSED and gap.closed_late


def test_evidence_outside_the_window_changes_nothing():
    too_late = Evidence("claim", "C2", D(2026, 3, 9))
    before = Evidence("claim", "C0", D(2026, 2, 28))
    gap, events = run([OPEN, EvidenceAdded(too_late), EvidenceAdded(before)], [D(2026, 3, 1)] * 3)
    assert events == ["gap.opened"] and gap.status == Status.OPEN and gap.evidence == ()


def test_a_void_of_the_closing_claim_reopens_it_or_marks_it_missed():
    void = EvidenceVoided("claim", "C1")
    gap, events = run([OPEN, EvidenceAdded(VISIT), void], [D(2026, 3, 1), D(2026, 3, 5), D(2026, 3, 6)])
    assert events == ["gap.opened", "gap.closed", "gap.opened", "gap.due_soon"] and gap.status == Status.OPEN
    gap, events = run([OPEN, EvidenceAdded(VISIT), void], [D(2026, 3, 1), D(2026, 3, 5), D(2026, 5, 1)])
    assert events[-2:] == ["gap.opened", "gap.missed"] and gap.status == Status.MISSED


def test_a_void_of_one_of_two_visits_keeps_it_closed():
    other = Evidence("claim", "C2", D(2026, 3, 7))
    gap, events = run([OPEN, EvidenceAdded(VISIT), EvidenceAdded(other), EvidenceVoided("claim", "C1")],
                      [D(2026, 3, 1)] * 4)
    assert events == ["gap.opened", "gap.closed"] and gap.status == Status.CLOSED and gap.evidence == (other,)


def test_repeats_change_nothing():
    gap, events = run([OPEN, OPEN, EvidenceAdded(VISIT), EvidenceAdded(VISIT)], [D(2026, 3, 1)] * 4)
    assert events == ["gap.opened", "gap.closed"]


def test_timers_wake_the_gap_on_the_warning_day_then_the_day_after_the_deadline():
    gap, _ = apply(None, OPEN, D(2026, 3, 1))
    assert next_wakeup(gap) == D(2026, 3, 6)
    gap, _ = apply(gap, Tick(), D(2026, 3, 6))
    assert next_wakeup(gap) == D(2026, 3, 9)
    gap, _ = apply(gap, EvidenceAdded(VISIT), D(2026, 3, 7))
    assert next_wakeup(gap) is None
