"""Checks on incoming claims, fills and spans. A failed check is a dead letter with this reason."""
from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache

from streams.deadletters import BadInput
from streams.models import EligibilitySpan, MedicalClaim, PharmacyClaim, Provider
from streams.models.claims import ORIGINAL, REPLACEMENT, VOID

# CPT (4 digits + digit/F/T/U) and HCPCS level II (letter + 4 digits).
PROCEDURE = re.compile(r"^(\d{4}[0-9FTU]|[A-V]\d{4})$")
# ICD-10-CM: letter, digit, alphanumeric, then up to four more, with or without the dot.
ICD10 = re.compile(r"^[A-TV-Z]\d[0-9A-Z](\.?[0-9A-Z]{1,4})?$")
NPI = re.compile(r"^\d{10}$")
NDC11 = re.compile(r"^\d{11}$")
# Claims may be dated in the sender's time zone ahead of ours; more than that is a data error.
FUTURE_TOLERANCE = dt.timedelta(days=1)


class InvalidRecord(BadInput):
    """A claim, fill, span or provider that fails a check."""



def parse_date(value: str | None, what: str) -> dt.date:
    day = _iso_date(value) if value else None
    if day is None:
        raise InvalidRecord("missing_date", f"{what} is empty") if not value else InvalidRecord(
            "invalid_date", f"{what} {value!r} is not an ISO date")
    return day


@lru_cache(maxsize=8192)
def _iso_date(value: str) -> dt.date | None:
    # Cached: a feed repeats a few hundred service dates across millions of lines.
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        return None


def _not_future(day: dt.date, what: str, today: dt.date) -> None:
    if day > today + FUTURE_TOLERANCE:
        raise InvalidRecord("future_date", f"{what} {day} is in the future")


def check_medical(claim: MedicalClaim, today: dt.date) -> dt.date | None:
    """Raise :class:`InvalidRecord` on the first failed check; return the latest service date."""
    if claim.frequency_code not in (ORIGINAL, REPLACEMENT, VOID):
        raise InvalidRecord("invalid_frequency_code", f"frequency code {claim.frequency_code!r}")
    if claim.frequency_code in (REPLACEMENT, VOID) and not claim.original_claim_id:
        raise InvalidRecord("missing_original_claim", "a replacement or void must name the claim it corrects")
    if claim.frequency_code != VOID and not claim.lines:
        raise InvalidRecord("no_lines", "a claim with no service lines")
    for code in claim.diagnosis_codes:
        if not ICD10.match(code):
            raise InvalidRecord("invalid_diagnosis_code", f"{code!r} is not an ICD-10-CM code")
    for npi in (claim.rendering_npi, claim.billing_npi):
        if npi and not NPI.match(npi):
            raise InvalidRecord("invalid_npi", f"{npi!r} is not a 10-digit NPI")
    latest = None
    for line in claim.lines:
        day = _iso_date(line.service_date) if line.service_date else None
        if day is None:  # the description is only worth formatting for the error
            parse_date(line.service_date, f"line {line.line_number} service date")
        latest = day if latest is None or day > latest else latest
        if line.procedure_code and not PROCEDURE.match(line.procedure_code):
            raise InvalidRecord("invalid_procedure_code", f"{line.procedure_code!r} is not a CPT/HCPCS code")
        if line.rendering_npi and not NPI.match(line.rendering_npi):
            raise InvalidRecord("invalid_npi", f"{line.rendering_npi!r} is not a 10-digit NPI")
        if line.allowed_amount < 0 or line.paid_amount < 0:
            raise InvalidRecord("negative_amount", f"line {line.line_number} has a negative amount")
    if latest is not None:
        _not_future(latest, "service date", today)
    return latest


def check_pharmacy(fill: PharmacyClaim, today: dt.date) -> dt.date:
    """Raise :class:`InvalidRecord` on the first failed check; return the fill date."""
    if not NDC11.match(fill.ndc11):
        raise InvalidRecord("invalid_ndc", f"{fill.ndc11!r} is not an 11-digit NDC")
    day = parse_date(fill.fill_date, "fill date")
    _not_future(day, "fill date", today)
    if not fill.reversal and fill.days_supply <= 0:
        raise InvalidRecord("invalid_days_supply", f"days supply {fill.days_supply} must be positive")
    return day


def check_span(span: EligibilitySpan) -> None:
    start = parse_date(span.coverage_start, "coverage start")
    if span.coverage_end and parse_date(span.coverage_end, "coverage end") < start:
        raise InvalidRecord("invalid_span", "coverage ends before it starts")
    parse_date(span.birth_date, "birth date")
    if span.selected_pcp_npi and not NPI.match(span.selected_pcp_npi):
        raise InvalidRecord("invalid_npi", f"selected PCP {span.selected_pcp_npi!r} is not a 10-digit NPI")


def check_provider(provider: Provider) -> None:
    if not NPI.match(provider.npi):
        raise InvalidRecord("invalid_npi", f"{provider.npi!r} is not a 10-digit NPI")
