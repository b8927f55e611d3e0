"""Screening measures (COL-E, BCS-E, EED): for a measurement year, whether a service of any
modality inside that modality's lookback closes the gap.

Of the qualifying services, the one that keeps counting longest wins (a colonoscopy six years ago
over a stool test this year), and the answer says through which measurement year it counts, so a
gap can be shown before it opens.
"""
from __future__ import annotations

import datetime as dt

from streams.caregaps.facts import Member
from streams.caregaps.lifecycle import Evidence
from streams.caregaps.measures import Measure, Modality, Screening
from streams.caregaps.yearly import YearStatus, outside
from streams.codesets import CodeSet


def _since(modality: Modality, year: int) -> dt.date:
    return dt.date(year - modality.years, modality.from_month, 1)


def status(measure: Measure, year: int, member: Member, today: dt.date | None = None) -> YearStatus:
    modalities = measure.rules_as(Screening).modalities
    window_start = min(_since(m, year) for m in modalities)
    year_end = dt.date(year, 12, 31)
    refused = outside(measure, member, year, window_start, today)
    if refused:
        return refused
    by_codeset: dict[CodeSet, dict[str, Modality]] = {}
    for modality in modalities:
        by_codeset.setdefault(modality.codeset, {})[modality.name] = modality
    found: list[tuple[str, int, str, Evidence]] = []  # (service date, counts through, modality, evidence)
    for codes, named in by_codeset.items():
        for _, served, code, claim_id in member.performed(codes):
            modality = named.get(codes.group_of(code))
            if modality and _since(modality, year).isoformat() <= served <= year_end.isoformat():
                day = dt.date.fromisoformat(served)
                found.append((served, day.year + modality.years, modality.name, Evidence("claim", claim_id, day)))
    if not found:
        return YearStatus("open", f"no screening service within any modality's lookback in {year}",
                          window_start, year_end)
    # The service that keeps the member screened longest; on a tie, the latest one.
    _, through, modality, latest = max(found, key=lambda f: (f[1], f[0]))
    return YearStatus("closed", f"{modality} on {latest.service_date}", window_start, year_end, (latest,),
                      details={"modality": modality, "counts_through": through})
