"""Adherence measures (Part D D08 and its kind): the proportion of days covered by fills of a drug
class from the first fill of the year to December 31, kept current as fills arrive.

The gap is open while the year's rate is not yet secured, closed once the fills so far cover the
threshold whatever happens next, and missed as soon as even a fill every remaining day could not
lift the rate to the threshold (the "cannot reach 80% this year any more" warning users ask for).
While it is open, a supply that ran out more than the measure's number of days ago sends
``gap.refill_overdue``, once per supply.

The same drug (whose early refills are shifted, see :mod:`streams.caregaps.pdc`) is taken as the
same NDC labeler and product (the first nine digits): package sizes of one product are one drug.
"""
from __future__ import annotations

import datetime as dt
import math

from streams.caregaps import pdc
from streams.caregaps.facts import Member
from streams.caregaps.lifecycle import Evidence, Warn
from streams.caregaps.measures import Adherence, Measure
from streams.caregaps.yearly import YearStatus, outside

DAY = dt.timedelta(days=1)


def status(measure: Measure, year: int, member: Member, today: dt.date) -> YearStatus:
    rules = measure.rules_as(Adherence)
    start, end = dt.date(year, 1, 1), dt.date(year, 12, 31)
    refused = outside(measure, member, year, start, today)
    if refused:
        return refused
    fills = [f for f in member.fills if f.ndc11 in rules.drugs and f.fill_date[:4] == str(year)
             and f.days_supply > 0 and f.fill_date <= today.isoformat()]
    dates = sorted({f.fill_date for f in fills})
    if len(dates) < rules.min_fills:
        return YearStatus("not_applicable", f"{len(dates)} of {rules.min_fills} fills on distinct dates of "
                                            f"{rules.drugs.title.lower()} in {year}", start, end)
    if (end - dt.date.fromisoformat(dates[0])).days + 1 < rules.min_treatment_days:
        return YearStatus("not_applicable", f"first fill on {dates[0]}: fewer than {rules.min_treatment_days} "
                                            f"days of treatment left in {year}", start, end)
    as_of = min(today, end)
    rate = pdc.adherence([pdc.Fill(f.ndc11[:9], dt.date.fromisoformat(f.fill_date), f.days_supply) for f in fills],
                         member.stays(), end, as_of)
    assert rate is not None  # there are fills up to as_of
    needed = math.ceil(rules.threshold * rate.days)
    details: dict[str, object] = {
        "index_date": rate.index_date.isoformat(), "days": rate.days, "covered": rate.covered,
        "pdc": round(rate.pdc, 4), "pdc_to_date": round(rate.pdc_to_date, 4),
        "best_possible": round(rate.best_possible, 4), "supply_ends": rate.supply_ends.isoformat()}
    if rate.covered >= needed:
        evidence = tuple(Evidence("fill", f.claim_id, dt.date.fromisoformat(f.fill_date)) for f in fills)
        return YearStatus("closed", f"fills cover {rate.covered} of {rate.days} days: at least {rules.threshold:.0%} "
                                    f"whatever comes", start, end, evidence, details=details)
    # Uncovered days the year can still afford; below zero, even a fill every remaining day falls short.
    slack = (rate.days - needed) - (rate.days_to_date - rate.covered_to_date)
    if slack < 0:
        return YearStatus("missed", f"at most {rate.best_possible:.1%} of days can be covered by December 31",
                          start, end, details=details)
    overdue, warning = rate.refill_overdue_days(), None
    if overdue > rules.refill_overdue_days:
        warning = Warn(f"refill_overdue|{rate.supply_ends}", "gap.refill_overdue",
                       {"supply_ran_out": rate.supply_ends.isoformat(), "days_without_supply": str(overdue)})
    return YearStatus("open", f"{rate.covered} of {rate.days} days covered so far; {needed} needed", start, end,
                      warning=warning, watch=_watch(rate, rules, slack), details=details)


def _watch(rate: pdc.Adherence, rules: Adherence, slack: int) -> dt.date | None:
    """The next day time alone may change the answer: the refill becoming overdue, or the rate
    becoming unreachable. The second is a lower bound (inpatient days and supply still on hand only
    postpone it), so the member is looked at again then and the date worked out anew."""
    days = [rate.as_of + (slack + 1) * DAY]
    overdue_on = rate.supply_ends + (rules.refill_overdue_days + 1) * DAY
    if overdue_on > rate.as_of:
        days.append(overdue_on)
    found = min(d for d in days if d > rate.as_of)
    return found if found <= rate.period_end else None
