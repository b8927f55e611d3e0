"""Control measures (CBP, GSD): the most recent result of the measurement year decides whether the
member's condition is in control; a member with no result this year is not.

A result is a claim line with a result code (CPT Category II: 3074F, systolic below 130). The most
recent date on which every component has a result counts; when that date has several results of
one component, the lowest, that is the best, counts, as the HEDIS CBP specification says. A later
result above target re-opens a gap a good result closed.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict

from streams.caregaps.facts import Member
from streams.caregaps.lifecycle import Evidence
from streams.caregaps.measures import Control, Measure
from streams.caregaps.yearly import YearStatus, outside


def status(measure: Measure, year: int, member: Member, today: dt.date | None = None) -> YearStatus:
    rules = measure.rules_as(Control)
    start, end = dt.date(year, 1, 1), dt.date(year, 12, 31)
    refused = outside(measure, member, year, start, today)
    if refused:
        return refused
    # day -> component -> [(in control, evidence)]
    results: dict[str, dict[str, list[tuple[bool, Evidence]]]] = defaultdict(lambda: defaultdict(list))
    for _, served, code, claim_id in member.performed(rules.codeset):
        reading = rules.reading(code)
        if reading and start.isoformat() <= served <= end.isoformat():
            component, good = reading
            results[served][component].append((good, Evidence("claim", claim_id, dt.date.fromisoformat(served))))
    wanted = [c.name for c in rules.components]
    complete = sorted(day for day, found in results.items() if all(c in found for c in wanted))
    if not complete:
        return YearStatus("open", f"no {' and '.join(wanted)} result in {year}", start, end)
    day = complete[-1]
    best = {c: max(results[day][c], key=lambda r: (r[0], r[1].id)) for c in wanted}
    above = [c for c in wanted if not best[c][0]]
    details: dict[str, object] = {"result_date": day, **{c: "in control" if best[c][0] else "above target"
                                                         for c in wanted}}
    if above:
        return YearStatus("open", f"latest result on {day}: {' and '.join(above)} above target", start, end,
                          details=details)
    return YearStatus("closed", f"latest result on {day} in control", start, end,
                      tuple(sorted({best[c][1] for c in wanted}, key=lambda e: e.id)), details=details)
