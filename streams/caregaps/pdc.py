"""Proportion of days covered (PDC), the medication-adherence measure of Medicare Part D (D08-D10).

The rules, as the CMS Part D Star Ratings technical notes and PQA describe them:
- The measurement period runs from the first fill of the class in the year (the index date) to the
  end of the period; a member counts only with at least two fills on different dates.
- A fill of the same drug before the previous one runs out is taken when that one ends (its days
  are shifted), so early refills are not lost; fills of different drugs of the class overlap.
- Days in an inpatient stay are left out of the period, and a supply is not used up during a stay:
  what was left on admission is taken after discharge.

A pure function of the fills, stays and dates, checked by the tests against a day-by-day simulation
written independently. The adherence measures (:mod:`streams.caregaps.adherence`) read it with the
threshold their files set.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

THRESHOLD = 0.8  # adherent at or above


@dataclass(frozen=True)
class Fill:
    drug: str  # "same drug" key: the ingredient where a map is known, else the NDC
    fill_date: dt.date
    days_supply: int


@dataclass(frozen=True, order=True)
class Stay:
    admitted: dt.date
    discharged: dt.date  # the day home again: not an inpatient day

    def days(self) -> set[dt.date]:
        return {self.admitted + dt.timedelta(days=i) for i in range((self.discharged - self.admitted).days)}


@dataclass(frozen=True)
class Adherence:
    index_date: dt.date
    period_end: dt.date
    as_of: dt.date
    eligible: bool  # at least two fills on different dates
    days: int  # days in the period, inpatient days left out
    covered: int  # covered days in the period by the fills so far
    covered_to_date: int
    days_to_date: int
    supply_ends: dt.date  # first day with nothing left (after shifts)
    pdc: float  # covered / days: the year's figure if no more fills come
    pdc_to_date: float
    best_possible: float  # if every remaining day were covered from tomorrow

    @property
    def cannot_reach_threshold(self) -> bool:
        return self.best_possible < THRESHOLD

    def refill_overdue_days(self) -> int:
        """Days since the supply ran out, as of ``as_of`` (0 while some is left)."""
        return max(0, (self.as_of - self.supply_ends).days)


def _covered_days(fills: list[Fill], inpatient: set[dt.date]) -> tuple[set[dt.date], dt.date]:
    covered: set[dt.date] = set()
    next_free: dict[str, dt.date] = {}  # per drug: the first day its earlier fills leave free
    for fill in sorted(fills, key=lambda f: (f.fill_date, f.drug)):
        day = max(fill.fill_date, next_free.get(fill.drug, fill.fill_date))
        left = fill.days_supply
        while left > 0:
            if day not in inpatient:  # no outpatient supply is used during a stay
                covered.add(day)
                left -= 1
            day += dt.timedelta(days=1)
        next_free[fill.drug] = day
    return covered, max(next_free.values())


def adherence(fills: Iterable[Fill], stays: Iterable[Stay], period_end: dt.date, as_of: dt.date) -> Adherence | None:
    """None when there is no fill in the period up to ``as_of``."""
    fills = [f for f in fills if f.fill_date <= min(period_end, as_of) and f.days_supply > 0]
    if not fills:
        return None
    index = min(f.fill_date for f in fills)
    inpatient = set().union(*(s.days() for s in stays))
    covered, supply_ends = _covered_days(fills, inpatient)
    period = [index + dt.timedelta(days=i) for i in range((period_end - index).days + 1)]
    days = [d for d in period if d not in inpatient]
    to_date = [d for d in days if d <= as_of]
    covered_in_period = sum(1 for d in days if d in covered)
    covered_to_date = sum(1 for d in to_date if d in covered)
    remaining = len(days) - len(to_date)
    return Adherence(
        index_date=index, period_end=period_end, as_of=as_of,
        eligible=len({f.fill_date for f in fills}) >= 2,
        days=len(days), covered=covered_in_period, covered_to_date=covered_to_date, days_to_date=len(to_date),
        supply_ends=supply_ends,
        pdc=covered_in_period / len(days) if days else 0.0,
        pdc_to_date=covered_to_date / len(to_date) if to_date else 0.0,
        best_possible=(covered_to_date + remaining) / len(days) if days else 0.0,
    )
