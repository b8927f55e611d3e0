"""A synthetic claims population for benchmarks: providers, coverage and claim lines."""
from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from streams.models import ClaimLine, EligibilitySpan, MedicalClaim, PharmacyClaim, Provider
from streams.tools.generate import npi

PRIMARY_CARE = ["99202", "99203", "99212", "99213", "99214", "99215", "G0439", "99396"]
OTHER = ["80053", "85025", "93000", "71046", "36415", "97110", "20610", "J1100"]
ROLES = ["PRIMARY_CARE_PHYSICIAN"] * 12 + ["NON_PHYSICIAN_PRACTITIONER"] * 3 + ["SPECIALIST"] * 5


@dataclass
class ClaimsFeed:
    providers: list[Provider]
    spans: list[EligibilitySpan]
    claims: list[MedicalClaim]

    @property
    def lines(self) -> int:
        return sum(len(c.lines) for c in self.claims)


def claims_feed(members: int, lines: int, as_of: dt.date, seed: int = 1) -> ClaimsFeed:
    rng = random.Random(seed)
    orgs = max(5, members // 2000)
    providers = [Provider(npi=npi(rng), name=f"Provider {i}", role=rng.choice(ROLES), tin=f"{100000000 + i % orgs}",
                          organization_id=f"ORG{i % orgs:03d}") for i in range(max(50, members // 50))]
    spans = [EligibilitySpan(member_id=f"B{m:07d}", payer="BENCH", product_line=rng.choice(
        ["COMMERCIAL", "MEDICAID", "MEDICARE_ADVANTAGE", "ACO"]), coverage_start="2020-01-01",
        birth_date="1960-01-01", sex=rng.choice("FM"), received_at_ms=0) for m in range(members)]
    claims = medical_claims([s.member_id for s in spans], [p.npi for p in providers], lines, as_of, rng)
    return ClaimsFeed(providers, spans, claims)


def medical_claims(member_ids: list[str], npis: list[str], lines: int, as_of: dt.date,
                   rng: random.Random) -> list[MedicalClaim]:
    """Professional claims of 1-7 lines over the two years before ``as_of``, six lines in ten primary
    care; 2% are later replaced (one line fewer) and 1% voided, as a plan's feed corrects itself."""
    claims: list[MedicalClaim] = []
    made = 0
    while made < lines:
        member = rng.choice(member_ids)
        rendering = rng.choice(npis)
        count = min(lines - made, rng.randint(1, 7))
        claim_lines = [ClaimLine(line_number=i + 1,
                                 service_date=(as_of - dt.timedelta(days=rng.randrange(730))).isoformat(),
                                 procedure_code=rng.choice(PRIMARY_CARE if rng.random() < 0.6 else OTHER),
                                 place_of_service="11", rendering_npi=rendering,
                                 allowed_amount=round(rng.uniform(20, 300), 2)) for i in range(count)]
        claim_id = f"C{len(claims):09d}"
        claims.append(MedicalClaim(claim_id=claim_id, frequency_code="1", member_id=member, claim_type="PROFESSIONAL",
                                   rendering_npi=rendering, diagnosis_codes=["I10", "E119"], lines=claim_lines,
                                   received_at_ms=0))
        made += count
        roll = rng.random()
        if roll < 0.02:  # a replacement with one line fewer
            claims.append(MedicalClaim(claim_id=claim_id + "R", frequency_code="7", original_claim_id=claim_id,
                                       member_id=member, claim_type="PROFESSIONAL", rendering_npi=rendering,
                                       diagnosis_codes=["I10"], lines=claim_lines[:-1] or claim_lines,
                                       received_at_ms=0))
            made += max(1, count - 1)
        elif roll < 0.03:
            claims.append(MedicalClaim(claim_id=claim_id + "V", frequency_code="8", original_claim_id=claim_id,
                                       member_id=member, claim_type="PROFESSIONAL", received_at_ms=0))
    return claims


# Statins, RAS antagonists, metformin (no measure counts it: no open NDC list) and sitagliptin/metformin,
# a D08 drug: most fills go through an adherence measure.
NDCS = ["00093505698", "00378395105", "68180051309", "00071015523", "00006057561"]


def pharmacy_claims(member_ids: list[str], count: int, as_of: dt.date, rng: random.Random) -> list[PharmacyClaim]:
    """30-day fills over the year before ``as_of``."""
    return [PharmacyClaim(claim_id=f"F{i:09d}", member_id=rng.choice(member_ids), ndc11=rng.choice(NDCS),
                          fill_date=(as_of - dt.timedelta(days=rng.randrange(365))).isoformat(), days_supply=30,
                          quantity=30.0, received_at_ms=0) for i in range(count)]
