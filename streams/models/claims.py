"""Claims, eligibility and provider directory messages."""
from __future__ import annotations

from dataclasses import dataclass, field

from streams.models.record import Record

ORIGINAL, REPLACEMENT, VOID = "1", "7", "8"


@dataclass(slots=True)
class ClaimLine(Record):
    schema = "claim_line"
    line_number: int
    service_date: str
    procedure_code: str | None = None
    modifiers: list[str] = field(default_factory=list)
    place_of_service: str | None = None
    revenue_code: str | None = None
    rendering_npi: str | None = None
    units: float = 1.0
    allowed_amount: float = 0.0
    paid_amount: float = 0.0


@dataclass(slots=True)
class MedicalClaim(Record):
    schema = "medical_claim"
    claim_id: str
    frequency_code: str
    member_id: str
    claim_type: str  # PROFESSIONAL | INSTITUTIONAL
    received_at_ms: int
    original_claim_id: str | None = None
    billing_tin: str | None = None
    billing_npi: str | None = None
    rendering_npi: str | None = None
    type_of_bill: str | None = None
    statement_from: str | None = None
    statement_to: str | None = None
    admit_date: str | None = None
    discharge_date: str | None = None
    adjudicated_at: str | None = None
    diagnosis_codes: list[str] = field(default_factory=list)
    lines: list[ClaimLine] = field(default_factory=list)


@dataclass(slots=True)
class PharmacyClaim(Record):
    schema = "pharmacy_claim"
    claim_id: str
    member_id: str
    ndc11: str
    fill_date: str
    days_supply: int
    quantity: float
    received_at_ms: int
    reversal: bool = False
    prescriber_npi: str | None = None
    pharmacy_npi: str | None = None


@dataclass(slots=True)
class EligibilitySpan(Record):
    schema = "eligibility_span"
    member_id: str
    payer: str
    product_line: str  # MEDICARE_ADVANTAGE | MEDICAID | COMMERCIAL | ACO
    coverage_start: str
    birth_date: str
    sex: str
    received_at_ms: int
    coverage_end: str | None = None
    selected_pcp_npi: str | None = None


@dataclass(slots=True)
class Provider(Record):
    schema = "provider"
    npi: str
    name: str
    role: str  # PRIMARY_CARE_PHYSICIAN | NON_PHYSICIAN_PRACTITIONER | SPECIALIST | FACILITY | OTHER
    taxonomy: str | None = None
    tin: str | None = None
    organization_id: str | None = None
    active_from: str | None = None
    active_to: str | None = None
