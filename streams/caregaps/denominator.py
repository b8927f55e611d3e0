"""Who a measure counts: age, sex and product line, the conditions a member must have, and the
exclusions that take a member out. One set of rules for every kind of measure."""
from __future__ import annotations

import datetime as dt

from streams.caregaps.facts import Member
from streams.caregaps.measures import LOOKBACKS, Denominator, Measure, age_on


def refusal(measure: Measure, member: Member, age_day: dt.date, reference_day: dt.date) -> str | None:
    """Why the member is outside the denominator, or None. Age is taken on ``age_day`` (the visit,
    or the end of the measurement year); condition lookbacks end relative to ``reference_day``."""
    if member.birth_date is None:
        return "no coverage known, so no age"
    refused = measure.denominator.refuses(age_on(member.birth_date, age_day), member.sex, member.product_line)
    if refused:
        return f"{refused} (as of {age_day})"
    met, reason = conditions(measure, member, reference_day)
    return None if met else reason


def conditions(measure: Measure, member: Member, reference_day: dt.date) -> tuple[bool, str]:
    """Whether the member has the conditions the denominator asks for, and which. Measures with
    the same denominator (GSD and EED) share one answer."""
    den = measure.denominator
    if den.conditions is None or den.conditions_lookback is None:
        return True, "age and product line"
    key = ("conditions", den, reference_day)
    if key not in member.memo:
        member.memo[key] = _conditions(den, member, reference_day)
    return member.memo[key]


def _conditions(den: Denominator, member: Member, reference_day: dt.date) -> tuple[bool, str]:
    assert den.conditions is not None and den.conditions_lookback is not None
    since, until = (d.isoformat() for d in LOOKBACKS[den.conditions_lookback](reference_day))
    found = {group if den.conditions_count == "groups" else served
             for served, group in member.diagnosed(den.conditions) if since <= served <= until}
    what = "condition groups" if den.conditions_count == "groups" else "dates of service with " + den.conditions.title
    if len(found) >= den.conditions_at_least:
        return True, f"{what}: {', '.join(sorted(found))}"
    for fill in member.fills:
        drugs = next((s for s in den.conditions_or_fills if fill.ndc11 in s), None)
        if drugs and since <= fill.fill_date <= until:
            return True, f"a fill of {drugs.title.lower()} on {fill.fill_date}"
    return False, (f"{len(found)} of {den.conditions_at_least} required {what} "
                   f"({', '.join(sorted(found)) or 'none'}) from {since} to {until}")


def enrollment_gap(measure: Measure, member: Member, year: int, through: dt.date) -> str | None:
    """Why the member's coverage from January 1 to ``through`` is not continuous enough, if so:
    more than one gap, or one longer than the measure allows."""
    allowed = measure.denominator.enrollment_gap_days
    if allowed is None or not member.coverage:  # facts built without spans (the processor always has them)
        return None
    day, gaps = dt.date(year, 1, 1), []
    for start, end in sorted(member.coverage):
        if start > through:
            break  # coverage that starts later: the gap up to now is counted below
        if start > day:
            gaps.append((start - day).days)
        if end is None or end >= through:
            day = through + dt.timedelta(days=1)
            break
        day = max(day, end + dt.timedelta(days=1))
    if day <= through:
        gaps.append((through - day).days + 1)
    gaps = [g for g in gaps if g > 0]
    if len(gaps) > 1 or any(g > allowed for g in gaps):
        return (f"coverage gaps of {', '.join(map(str, gaps))} days in {year}: at most one gap of up to "
                f"{allowed} days is allowed")
    return None


def exclusion(measure: Measure, member: Member, year: int, until: dt.date) -> str | None:
    """Why the member is excluded: a diagnosis or procedure of a ``history_of`` set at any time up to
    ``until``, or a fill of a ``fill_of`` drug in the measurement year."""
    for rule in measure.exclusions:
        codes = rule.codeset
        if codes is None:
            continue
        if rule.rule == "history_of":
            for served, claim in member.first_service_dates():
                if served > until.isoformat():
                    continue
                if any(map(codes.has_diagnosis, claim.diagnosis_codes)) or any(
                        codes.has_procedure(line.procedure_code) for line in claim.lines):
                    return f"{codes.title} (claim {claim.claim_id})"
        elif rule.rule == "fill_of":
            for fill in member.fills:
                if fill.ndc11 in codes and fill.fill_date[:4] == str(year):
                    return f"{codes.title} (fill {fill.claim_id})"
    return None
