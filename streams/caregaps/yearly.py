"""What every measurement-year measure (screening, control, adherence) answers for a member and a
year; :mod:`streams.caregaps.member` turns the answer into gap lifecycle facts."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from streams.caregaps import denominator
from streams.caregaps.facts import Member
from streams.caregaps.lifecycle import Evidence, Warn
from streams.caregaps.measures import Measure


@dataclass(frozen=True)
class YearStatus:
    status: str  # not_applicable | open | closed | missed (cannot be met any more this year)
    reason: str
    window_start: dt.date  # the earliest date evidence may have
    due: dt.date  # the end of the measurement year
    evidence: tuple[Evidence, ...] = ()  # what meets the measure, when it is met
    warning: Warn | None = None  # a warning worth sending once per occasion (a refill overdue)
    watch: dt.date | None = None  # a later date on which time alone changes the answer
    details: dict[str, object] = field(default_factory=dict)  # evaluator-specific figures, for reports


def outside(measure: Measure, member: Member, year: int, window_start: dt.date,
            today: dt.date | None = None) -> YearStatus | None:
    """The not-applicable answer when the member is outside the denominator or excluded. Enrollment
    is judged from January 1 to ``today`` (to December 31 once the year is over)."""
    year_end = dt.date(year, 12, 31)
    through = min(today or year_end, year_end)
    why = (denominator.refusal(measure, member, year_end, year_end)
           or denominator.enrollment_gap(measure, member, year, through)
           or denominator.exclusion(measure, member, year, year_end))
    return YearStatus("not_applicable", why, window_start, year_end) if why else None
