"""Small builders for claims, spans and providers in tests."""
from streams.models import ClaimLine, EligibilitySpan, MedicalClaim, PharmacyClaim

PCP_A, PCP_B, NP_C, SPEC_D, PCP_E = "1000000001", "1000000002", "1000000003", "1000000004", "1000000005"
PROVIDERS = {
    PCP_A: {"npi": PCP_A, "role": "PRIMARY_CARE_PHYSICIAN", "organization_id": "ORG-A"},
    PCP_B: {"npi": PCP_B, "role": "PRIMARY_CARE_PHYSICIAN", "organization_id": "ORG-B"},
    NP_C: {"npi": NP_C, "role": "NON_PHYSICIAN_PRACTITIONER", "organization_id": "ORG-C"},
    SPEC_D: {"npi": SPEC_D, "role": "SPECIALIST", "organization_id": "ORG-D"},
    PCP_E: {"npi": PCP_E, "role": "PRIMARY_CARE_PHYSICIAN", "tin": "123456789"},
}


def visit(claim_id, npi, *dates, code="99213", allowed=100.0, frequency="1", original=None, adjudicated=None,
          member="M1"):
    return MedicalClaim(
        claim_id=claim_id, frequency_code=frequency, original_claim_id=original, member_id=member,
        claim_type="PROFESSIONAL", received_at_ms=1, rendering_npi=npi, adjudicated_at=adjudicated,
        diagnosis_codes=["I10"],
        lines=[ClaimLine(line_number=i + 1, service_date=d, procedure_code=code, allowed_amount=allowed)
               for i, d in enumerate(dates)])


def void(claim_id, original, member="M1"):
    return MedicalClaim(claim_id=claim_id, frequency_code="8", original_claim_id=original, member_id=member,
                        claim_type="PROFESSIONAL", received_at_ms=1)


def span(product_line="COMMERCIAL", start="2020-01-01", end=None, pcp=None, payer="PLAN", received=1):
    return EligibilitySpan(member_id="M1", payer=payer, product_line=product_line, coverage_start=start,
                           coverage_end=end, birth_date="1960-05-05", sex="F", selected_pcp_npi=pcp,
                           received_at_ms=received)


def fill(claim_id, date="2024-01-10", days=30, reversal=False, ndc="00093505698"):
    return PharmacyClaim(claim_id=claim_id, member_id="M1", ndc11=ndc, fill_date=date, days_supply=days,
                         quantity=30.0, received_at_ms=1, reversal=reversal)
