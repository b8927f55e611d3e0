"""A member's care gaps, brought up to date with what is known about the member.

:func:`update` is a pure function: from the member's coverage, effective claims and visits it works
out which gaps should exist and which evidence each should hold, and feeds the difference to the gap
lifecycle as facts. Run again on the same facts it changes nothing, so the processor may call it
after any message, a replay or a timer, and the messages may come in any order: a claim that
establishes the second chronic condition after the ED visit still opens the follow-up gap.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable, Mapping
from functools import cache, lru_cache
from typing import Any

from streams.caregaps import adherence, control, denominator, followup, screening
from streams.caregaps.facts import Member, Visit
from streams.caregaps.lifecycle import (
    Evidence,
    EvidenceAdded,
    EvidenceVoided,
    Excluded,
    Fact,
    Gap,
    GapEvent,
    Opened,
    Reinstated,
    Status,
    Tick,
    Unreachable,
    Watch,
    apply,
    next_wakeup,
)
from streams.caregaps.measures import Adherence, Control, FollowUp, Measure, Screening, age_on, measures
from streams.caregaps.yearly import YearStatus
from streams.codesets import in_any
from streams.models import EncounterKind

VISIT_KINDS = tuple(EncounterKind)
# Visits older than this cannot open or exclude a gap any more; they are dropped from state.
VISIT_MEMORY = dt.timedelta(days=400)
# The evaluator of each kind of measurement-year measure.
YEAR_EVALUATORS: dict[type, Callable[[Measure, int, Member, dt.date], YearStatus]] = {
    Screening: screening.status, Control: control.status, Adherence: adherence.status}


def gap_id(measure_id: str, trigger_id: str) -> str:
    return f"{measure_id}|{trigger_id}"


def update(gaps: Mapping[str, Gap], member: Member, today: dt.date, catalog: Mapping[str, Measure] | None = None,
           only: Collection[str] | None = None,
           conditions_only: Collection[str] = ()) -> tuple[dict[str, Gap], list[GapEvent]]:
    """The member's gaps as of ``today`` and the transitions that got them there. ``only`` names
    the measures a message could have changed (see :func:`measures_reading`); the others' gaps
    only meet their deadlines. Of ``conditions_only`` (see :func:`measures_conditions_only`), a
    measure whose gap this year holds (not excluded) is left as it is, and one with no gap this
    year is evaluated only once the member has its denominator's conditions."""
    result, events, seen = dict(gaps), [], set()
    catalog = catalog if catalog is not None else measures()
    for measure in catalog.values():
        if only is not None and measure.id not in only:
            continue
        if measure.id in conditions_only:
            held = gaps.get(gap_id(measure.id, str(today.year)))
            if held is not None and held.status != Status.NOT_APPLICABLE:
                continue
            if held is None and not denominator.conditions(measure, member, dt.date(today.year, 12, 31))[0]:
                continue  # still short of the conditions: the evaluator would refuse the member too
        for key, facts in _facts(measure, result, member, today):
            seen.add(key)
            gap, new = result.get(key), []
            for fact in facts:
                gap, produced = apply(gap, fact, today, measure.due_soon_days)
                new += produced
            if gap is not None:
                result[key] = gap
            if key not in gaps and len(new) > 1:
                new = new[-1:]  # a gap seen for the first time is announced once, in its current status
            events += new
    # Gaps no rule looked at this time (last year's screening, a member whose coverage lapsed) still
    # meet their deadlines.
    for key in sorted(set(result) - seen):
        gap = result[key]
        result[key], produced = apply(gap, Tick(), today, catalog[gap.measure_id].due_soon_days
                                      if gap.measure_id in catalog else 0)
        events += produced
    return result, events


def _facts(measure: Measure, gaps: Mapping[str, Gap], member: Member,
           today: dt.date) -> Iterable[tuple[str, list[Fact]]]:
    if isinstance(measure.rules, FollowUp):
        yield from _followup_facts(measure, measure.rules, gaps, member, today)
    else:
        yield from _year_facts(measure, gaps, member, today)


def _followup_facts(measure: Measure, rules: FollowUp, gaps: Mapping[str, Gap], member: Member,
                    today: dt.date) -> Iterable[tuple[str, list[Fact]]]:
    triggers = [v for v in member.visits if v.kind == rules.trigger and v.day <= today]
    # A gap whose visit is gone although still young enough to be remembered: the hospital
    # cancelled the visit (A11, A13), so the gap was never one.
    known = {v.id for v in member.visits if v.kind == rules.trigger}
    for key, gap in gaps.items():
        if (gap.measure_id == measure.id and gap.trigger_id not in known and gap.status != Status.NOT_APPLICABLE
                and today - gap.window_start < VISIT_MEMORY):
            yield key, [Excluded("the hospital cancelled the visit")]
    if not triggers:
        return
    admissions = [v.day for v in member.visits if v.kind == EncounterKind.INPATIENT_ADMISSION]
    found = followup.evidence(measure, member.claims)
    for visit in triggers:
        key, trigger = gap_id(measure.id, visit.id), followup.Trigger(visit.id, visit.day, visit.diagnoses)
        facts: list[Fact] = []
        if key not in gaps:
            if not followup.applies(measure, trigger, member).applies:
                continue
            if followup.exclusion(measure, trigger, admissions):
                continue  # excluded before it opened: it never was a gap
            facts.append(followup.opened(measure, trigger))
        else:
            excluded = followup.exclusion(measure, trigger, admissions)
            facts.append(Excluded(excluded) if excluded else Reinstated())
        opened = facts[0] if facts and isinstance(facts[0], Opened) else gaps[key]
        wanted = [e for e in found if opened.window_start <= e.service_date <= opened.due]
        facts += _evidence_facts(gaps.get(key), wanted, member)
        yield key, [*facts, Tick()]


def _year_facts(measure: Measure, gaps: Mapping[str, Gap], member: Member,
               today: dt.date) -> Iterable[tuple[str, list[Fact]]]:
    if member.birth_date is None:
        return
    year = today.year
    key = gap_id(measure.id, str(year))
    held = gaps.get(key)
    if (held is None or held.status == Status.NOT_APPLICABLE) and measure.denominator.refuses(
            age_on(member.birth_date, dt.date(year, 12, 31)), member.sex, member.product_line):
        return  # outside the denominator as before: no claim changes age, sex or product line
    status = YEAR_EVALUATORS[type(measure.rules)](measure, year, member, today)
    if status.status == "not_applicable":
        if key in gaps:
            yield key, [Excluded(status.reason)]
        return
    facts: list[Fact] = [Reinstated()]  # no-op unless the gap was excluded
    if key not in gaps:
        facts.append(Opened(measure.id, str(year), status.window_start, status.due))
    facts += _evidence_facts(gaps.get(key), list(status.evidence), member)
    if status.status == "missed":
        facts.append(Unreachable(status.reason))
    if status.warning:
        facts.append(status.warning)
    yield key, [*facts, Watch(status.watch), Tick()]


def _evidence_facts(gap: Gap | None, wanted: list[Evidence], member: Member) -> list[Fact]:
    """What turns the gap's evidence into ``wanted``: new evidence added, then evidence no longer
    there (a voided claim, or a result a later one supersedes) withdrawn; in that order, so a better
    service replacing the one that closed a gap does not re-open it for a moment."""
    held = set(gap.evidence) if gap else set()
    added: list[Fact] = [EvidenceAdded(e) for e in sorted(set(wanted) - held, key=_order)]
    gone = held - set(wanted)
    present = {c.claim_id for c in member.claims} | {f.claim_id for f in member.fills} if gone else set()
    voided: list[Fact] = [EvidenceVoided(e.source, e.id, "superseded" if e.id in present else "void")
                          for e in sorted(gone, key=_order)]
    return added + voided


def _order(e: Evidence) -> tuple:
    return e.service_date, e.source, e.id


def wakeup(gaps: Mapping[str, Gap], today: dt.date, catalog: Mapping[str, Measure] | None = None) -> dt.date | None:
    """The next date time alone changes something: a warning, a deadline, or a new measurement year."""
    catalog = catalog if catalog is not None else measures()
    dates = [next_wakeup(g, catalog[g.measure_id].due_soon_days) for g in gaps.values() if g.measure_id in catalog]
    if any(not isinstance(m.rules, FollowUp) for m in catalog.values()):
        dates.append(dt.date(today.year + 1, 1, 1))
    return min((d for d in dates if d), default=None)


@cache
def every_measure() -> frozenset[str]:
    return frozenset(measures())


@lru_cache(maxsize=65536)  # bounded: keyed by codes as feeds send them
def measures_reading(code: str | None, with_followup: bool) -> frozenset[str]:
    """The measures that read claims or fills with this code (numerators, modalities, results,
    drugs, conditions, exclusions): a claim or fill with none of it cannot change their gaps, so
    only these are evaluated again. Follow-up measures read claims only of members with a visit,
    hence ``with_followup``."""
    return frozenset(m for m, names in _codesets_read(with_followup).items() if in_any(names, code))


@lru_cache(maxsize=65536)
def measures_reading_claim(codes: frozenset[str | None], with_followup: bool) -> tuple[frozenset[str], frozenset[str]]:
    """For the codes of one claim (its procedures and diagnoses): the measures that read any of them,
    and of those the ones that read them only as a condition (see :func:`measures_conditions_only`).
    Cached as a whole: a feed repeats its combinations of codes, and every claim asks."""
    touched = frozenset().union(*(measures_reading(code, with_followup) for code in codes))
    beyond = frozenset().union(*(measures_reading(code, with_followup) - measures_conditions_only(code)
                                 for code in codes))
    return touched, touched - beyond


@lru_cache(maxsize=65536)
def measures_conditions_only(code: str | None) -> frozenset[str]:
    """The measurement-year measures that read this code only as a condition of their denominator
    (hypertension for CBP): one more such claim cannot change a gap whose member is in the
    denominator already, since conditions only accumulate."""
    return frozenset(m for m, names in _codesets_read(False, beyond_conditions=True).items()
                     if m in _year_measures() and not in_any(names, code)) & measures_reading(code, False)


@cache
def _year_measures() -> frozenset[str]:
    return frozenset(m.id for m in measures().values() if not isinstance(m.rules, FollowUp))


@cache
def _codesets_read(with_followup: bool, beyond_conditions: bool = False) -> dict[str, frozenset[str]]:
    found: dict[str, frozenset[str]] = {}
    for m in measures().values():
        if isinstance(m.rules, FollowUp) and not with_followup:
            continue
        sets = [e.codeset for e in m.exclusions]
        if not beyond_conditions:
            sets += [m.denominator.conditions, *m.denominator.conditions_or_fills]
        if isinstance(m.rules, FollowUp | Control):
            sets.append(m.rules.codeset)
        elif isinstance(m.rules, Adherence):
            sets.append(m.rules.drugs)
        else:
            sets += [mod.codeset for mod in m.rules.modalities]
        found[m.id] = frozenset(s.id for s in sets if s is not None)
    return found


def forget_old_visits(visits: list[Visit], today: dt.date) -> list[Visit]:
    return [v for v in visits if today - v.day <= VISIT_MEMORY]


# -- state as JSON, for the changelog --------------------------------------------------------------

def gap_to_dict(gap: Gap) -> dict[str, Any]:
    return {"measure_id": gap.measure_id, "trigger_id": gap.trigger_id,
            "window_start": gap.window_start.isoformat(), "due": gap.due.isoformat(), "status": gap.status.value,
            "due_soon_sent": gap.due_soon_sent, "closed_late": gap.closed_late, "revision": gap.revision,
            "evidence": [[e.source, e.id, e.service_date.isoformat()] for e in gap.evidence],
            "warned": gap.warned, "watch": gap.watch.isoformat() if gap.watch else None}


def gap_from_dict(data: Mapping[str, Any]) -> Gap:
    return Gap(measure_id=data["measure_id"], trigger_id=data["trigger_id"],
               window_start=dt.date.fromisoformat(data["window_start"]), due=dt.date.fromisoformat(data["due"]),
               status=Status(data["status"]), due_soon_sent=data["due_soon_sent"], closed_late=data["closed_late"],
               revision=data["revision"],
               evidence=tuple(Evidence(s, i, dt.date.fromisoformat(d)) for s, i, d in data["evidence"]),
               warned=data.get("warned"), watch=dt.date.fromisoformat(data["watch"]) if data.get("watch") else None)

