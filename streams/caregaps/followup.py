"""Event-triggered follow-up measures (FMC and its kind): whether an ED visit or a discharge opens
a gap for the member, what evidence in the claims closes it, and what excludes it afterwards.

Pure functions of a measure definition and the member's facts; the agent turns their answers into
:mod:`streams.caregaps.lifecycle` facts.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from streams.caregaps import denominator
from streams.caregaps.facts import Member
from streams.caregaps.lifecycle import Evidence, Opened
from streams.caregaps.measures import FollowUp, Measure
from streams.claims.ledger import EffectiveClaim


@dataclass(frozen=True)
class Trigger:
    id: str  # the visit's stable id (facility and visit number)
    day: dt.date
    diagnoses: tuple[str, ...] = ()  # the visit's, principal first


@dataclass(frozen=True)
class Applicability:
    applies: bool
    reason: str


def applies(measure: Measure, trigger: Trigger, member: Member) -> Applicability:
    """Whether the trigger puts the member in the measure's denominator, and why (or why not)."""
    wanted = measure.rules_as(FollowUp).trigger_diagnoses
    if wanted is not None:
        principal = trigger.diagnoses[0] if trigger.diagnoses else None
        if not wanted.has_diagnosis(principal):
            return Applicability(False, f"the visit's principal diagnosis {principal or '(none sent)'} is not in "
                                        f"{wanted.title.lower()}")
    refused = denominator.refusal(measure, member, trigger.day, trigger.day)  # age on the day of the visit
    if refused:
        return Applicability(False, refused)
    return Applicability(True, denominator.conditions(measure, member, trigger.day)[1])


def opened(measure: Measure, trigger: Trigger) -> Opened:
    days = measure.rules_as(FollowUp).within_days
    return Opened(measure.id, trigger.id, trigger.day, trigger.day + dt.timedelta(days=days))


def evidence(measure: Measure, claims: Iterable[EffectiveClaim]) -> list[Evidence]:
    """Every claim line with a service of the measure's numerator code set, as evidence."""
    services = measure.rules_as(FollowUp).codeset
    return [Evidence("claim", claim.claim_id, dt.date.fromisoformat(line.service_date))
            for claim in claims for line in claim.lines if line.procedure_code in services]


def exclusion(measure: Measure, trigger: Trigger, admissions: Iterable[dt.date]) -> str | None:
    """Why the trigger no longer counts (for example an admission right after the ED visit), if so."""
    for rule in measure.exclusions:
        if rule.rule != "inpatient_admission_within_days":
            continue
        last = trigger.day + dt.timedelta(days=rule.days)
        admitted = sorted(day for day in admissions if trigger.day <= day <= last)
        if admitted:
            return f"inpatient admission on {admitted[0]}, within {rule.days} days of the visit"
    return None
