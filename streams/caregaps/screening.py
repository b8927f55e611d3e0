"""Screening measures (COL-E and its kind): for a measurement year, whether the member is in the
denominator, and whether a service of any modality inside that modality's lookback closes the gap.

Of the qualifying services, the one that keeps counting longest wins (a colonoscopy six years ago
over a stool test this year), and the answer says through which measurement year it counts, so a
gap can be shown before it opens.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from streams.caregaps.lifecycle import Evidence
from streams.caregaps.measures import Measure, Screening, age_on
from streams.claims.ledger import EffectiveClaim


@dataclass(frozen=True)
class ScreeningStatus:
    status: str  # not_applicable | open | closed
    reason: str
    due: dt.date  # the end of the measurement year
    evidence: Evidence | None = None
    modality: str | None = None
    counts_through: int | None = None  # the last measurement year the closing service counts for


def _excluded(measure: Measure, claims: list[EffectiveClaim], year_end: dt.date) -> str | None:
    for rule in measure.exclusions:
        if rule.rule != "history_of" or rule.codeset is None:
            continue
        for claim in claims:
            found = any(map(rule.codeset.has_diagnosis, claim.diagnosis_codes)) or any(
                rule.codeset.has_procedure(line.procedure_code) for line in claim.lines)
            if found and min(line.service_date for line in claim.lines) <= year_end.isoformat():
                return f"{rule.codeset.title} (claim {claim.claim_id})"
    return None


def status(measure: Measure, year: int, birth_date: dt.date, sex: str | None, product_line: str | None,
           claims: Iterable[EffectiveClaim]) -> ScreeningStatus:
    if not isinstance(measure.rules, Screening):
        raise TypeError(f"{measure.id} is a {measure.kind} measure, not a screening measure")
    year_end = dt.date(year, 12, 31)
    claims = [c for c in claims if c.lines]
    refused = measure.denominator.refuses(age_on(birth_date, year_end), sex, product_line)
    if refused:
        return ScreeningStatus("not_applicable", f"{refused} (as of {year_end})", year_end)
    excluded = _excluded(measure, claims, year_end)
    if excluded:
        return ScreeningStatus("not_applicable", excluded, year_end)
    found: list[tuple[str, int, str, Evidence]] = []  # (service date, counts through, modality, evidence)
    for modality in measure.rules.modalities:
        since = dt.date(year - modality.years, 1, 1).isoformat()
        for claim in claims:
            for line in claim.lines:
                if line.procedure_code in modality and since <= line.service_date <= year_end.isoformat():
                    day = dt.date.fromisoformat(line.service_date)
                    found.append((line.service_date, day.year + modality.years, modality.name,
                                  Evidence("claim", claim.claim_id, day)))
    if not found:
        return ScreeningStatus("open", f"no screening service within any modality's lookback in {year}", year_end)
    # The service that keeps the member screened longest; on a tie, the latest one.
    _, through, modality, latest = max(found, key=lambda f: (f[1], f[0]))
    return ScreeningStatus("closed", f"{modality} on {latest.service_date}", year_end, latest, modality, through)
