"""CMS RIF files (the CCW layout of Medicare claims, as in the Blue Button synthetic data) turned
into gapstream's claim, pharmacy, eligibility and provider messages.

RIF carries no provider directory; carrier lines name each rendering NPI with its CMS specialty
code and billing TIN, which is what the Shared Savings Program assigns on. So the adapter derives a
directory entry per NPI from them: specialty → role, and the TIN as the organization.
"""
from __future__ import annotations

import csv
import datetime as dt
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from streams.models import ClaimLine, EligibilitySpan, MedicalClaim, PharmacyClaim, Provider
from streams.sources.csvfile import Problem

# CMS provider specialty codes (CCW "PRVDR_SPCLTY"), as the Shared Savings Program groups them.
PRIMARY_CARE_SPECIALTIES = {"01", "08", "11", "38"}  # general practice, family, internal medicine, geriatrics
NON_PHYSICIAN_SPECIALTIES = {"50", "89", "97"}  # nurse practitioner, clinical nurse specialist, physician assistant
INSTITUTIONAL_FILES = ("outpatient", "inpatient", "snf", "hha", "hospice")
SEX = {"1": "M", "2": "F"}


@dataclass
class RifBatch:
    claims: list[MedicalClaim] = field(default_factory=list)
    fills: list[PharmacyClaim] = field(default_factory=list)
    spans: list[EligibilitySpan] = field(default_factory=list)
    providers: dict[str, Provider] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    rows: int = 0
    icd9_codes_not_carried: int = 0


def _date(value: str) -> str:
    return dt.datetime.strptime(value.strip(), "%d-%b-%Y").date().isoformat()


def _rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(enumerate(csv.DictReader(f, delimiter="|"), start=2))


def _text(row: dict[str, str], column: str) -> str | None:
    return (row.get(column) or "").strip() or None


def _optional_date(row: dict[str, str], column: str) -> str | None:
    return _date(row[column]) if _text(row, column) else None


def _claims(path: Path, batch: RifBatch, build) -> None:
    """Rows grouped by CLM_ID, each group built into one claim; a group that fails is reported row by row."""
    by_claim: dict[str, list[tuple[int, dict[str, str]]]] = defaultdict(list)
    for line_no, row in _rows(path):
        batch.rows += 1
        by_claim[row["CLM_ID"]].append((line_no, row))
    for claim_id, rows in by_claim.items():
        try:
            batch.claims.append(build(claim_id, [row for _, row in rows]))
        except (KeyError, ValueError) as exc:
            for line_no, _ in rows:
                batch.problems.append(Problem(str(path), line_no, f"bad_row: {type(exc).__name__} {exc}"))


def _money(value: str) -> float:
    return float(value) if value and value.strip() else 0.0


def _diagnoses(row: dict[str, str], batch: RifBatch) -> list[str]:
    codes = []
    pairs = [("PRNCPAL_DGNS_CD", "PRNCPAL_DGNS_VRSN_CD")] + [(f"ICD_DGNS_CD{i}", f"ICD_DGNS_VRSN_CD{i}")
                                                            for i in range(1, 26)]
    for code_col, version_col in pairs:
        code = (row.get(code_col) or "").strip()
        if not code or code in codes:
            continue
        if (row.get(version_col) or "0").strip() == "9":
            batch.icd9_codes_not_carried += 1  # gapstream's measures and validation are ICD-10-CM
            continue
        codes.append(code)
    return codes


def _carrier(path: Path, batch: RifBatch, now_ms: int) -> None:
    """Carrier (physician/supplier) and DME claims: one row per line. DME rows name no performing
    NPI, so they add no directory entries."""
    def build(claim_id: str, rows: list[dict[str, str]]) -> MedicalClaim:
        first, lines = rows[0], []
        for row in rows:
            npi = _text(row, "PRF_PHYSN_NPI")
            lines.append(ClaimLine(
                line_number=int(row["LINE_NUM"]), service_date=_date(row["LINE_1ST_EXPNS_DT"]),
                procedure_code=_text(row, "HCPCS_CD"),
                modifiers=[m for m in (_text(row, "HCPCS_1ST_MDFR_CD"), _text(row, "HCPCS_2ND_MDFR_CD")) if m],
                place_of_service=_text(row, "LINE_PLACE_OF_SRVC_CD"), rendering_npi=npi,
                units=_money(row.get("LINE_SRVC_CNT", "")) or 1.0,
                allowed_amount=_money(row.get("LINE_ALOWD_CHRG_AMT") or row.get("LINE_PRMRY_ALOWD_CHRG_AMT", "")),
                paid_amount=_money(row.get("LINE_NCH_PMT_AMT", ""))))
            if npi and npi not in batch.providers:
                specialty = _text(row, "PRVDR_SPCLTY")
                role = ("PRIMARY_CARE_PHYSICIAN" if specialty in PRIMARY_CARE_SPECIALTIES else
                        "NON_PHYSICIAN_PRACTITIONER" if specialty in NON_PHYSICIAN_SPECIALTIES else "SPECIALIST")
                batch.providers[npi] = Provider(npi=npi, name=f"NPI {npi}", role=role, tin=_text(row, "TAX_NUM"))
        return MedicalClaim(
            claim_id=claim_id, frequency_code="1", member_id=first["BENE_ID"], claim_type="PROFESSIONAL",
            billing_tin=_text(first, "TAX_NUM"), billing_npi=_text(first, "CARR_CLM_BLG_NPI_NUM"),
            statement_from=_date(first["CLM_FROM_DT"]), statement_to=_date(first["CLM_THRU_DT"]),
            adjudicated_at=_optional_date(first, "NCH_WKLY_PROC_DT"), diagnosis_codes=_diagnoses(first, batch),
            lines=lines, received_at_ms=now_ms)

    _claims(path, batch, build)


def _institutional(path: Path, batch: RifBatch, now_ms: int) -> None:
    def build(claim_id: str, rows: list[dict[str, str]]) -> MedicalClaim:
        first = rows[0]
        statement_from = _date(first["CLM_FROM_DT"])
        lines = [ClaimLine(
            line_number=int(row.get("CLM_LINE_NUM") or i + 1),
            service_date=_optional_date(row, "REV_CNTR_DT") or statement_from,
            procedure_code=_text(row, "HCPCS_CD"), revenue_code=_text(row, "REV_CNTR"),
            rendering_npi=_text(row, "RNDRNG_PHYSN_NPI"), units=_money(row.get("REV_CNTR_UNIT_CNT", "")) or 1.0,
            paid_amount=_money(row.get("REV_CNTR_PMT_AMT_AMT", ""))) for i, row in enumerate(rows)]
        frequency = _text(first, "CLM_FREQ_CD") or "1"
        return MedicalClaim(
            claim_id=claim_id, frequency_code=frequency if frequency in ("7", "8") else "1",
            member_id=first["BENE_ID"], claim_type="INSTITUTIONAL", billing_npi=_text(first, "ORG_NPI_NUM"),
            rendering_npi=_text(first, "AT_PHYSN_NPI"),
            type_of_bill="".join(_text(first, c) or "" for c in
                                 ("CLM_FAC_TYPE_CD", "CLM_SRVC_CLSFCTN_TYPE_CD", "CLM_FREQ_CD")) or None,
            statement_from=statement_from, statement_to=_date(first["CLM_THRU_DT"]),
            admit_date=_optional_date(first, "CLM_ADMSN_DT"),
            discharge_date=_optional_date(first, "NCH_BENE_DSCHRG_DT"),
            adjudicated_at=_optional_date(first, "NCH_WKLY_PROC_DT"), diagnosis_codes=_diagnoses(first, batch),
            lines=lines, received_at_ms=now_ms)

    _claims(path, batch, build)


def _pde(path: Path, batch: RifBatch, now_ms: int) -> None:
    for line_no, row in _rows(path):
        batch.rows += 1
        try:
            batch.fills.append(PharmacyClaim(
                claim_id=row["PDE_ID"], member_id=row["BENE_ID"], ndc11=row["PROD_SRVC_ID"].strip(),
                fill_date=_date(row["SRVC_DT"]), days_supply=int(row["DAYS_SUPLY_NUM"]),
                quantity=_money(row.get("QTY_DSPNSD_NUM", "")),
                prescriber_npi=row["PRSCRBR_ID"] if row.get("PRSCRBR_ID_QLFYR_CD") == "01" else None,
                pharmacy_npi=row["SRVC_PRVDR_ID"] if row.get("SRVC_PRVDR_ID_QLFYR_CD") == "01" else None,
                received_at_ms=now_ms))
        except (KeyError, ValueError) as exc:
            batch.problems.append(Problem(str(path), line_no, f"bad_row: {type(exc).__name__} {exc}"))


def _beneficiaries(path: Path, batch: RifBatch, now_ms: int) -> None:
    for line_no, row in _rows(path):
        batch.rows += 1
        try:
            year = int(row.get("RFRNC_YR") or re.search(r"(\d{4})", path.name).group(1))
            months = [m for m in range(1, 13)
                      if (row.get(f"MDCR_ENTLMT_BUYIN_{m}_IND") or "0").strip() not in ("", "0")]
            if not months:
                batch.problems.append(Problem(str(path), line_no, f"no_coverage: no entitled month in {year}"))
                continue
            hmo = any((row.get(f"HMO_{m}_IND") or "0").strip() not in ("", "0") for m in months)
            last_day = (dt.date(year + (months[-1] == 12), months[-1] % 12 + 1, 1) - dt.timedelta(days=1))
            batch.spans.append(EligibilitySpan(
                member_id=row["BENE_ID"], payer="CMS",
                # Fee-for-service beneficiaries here are read as aligned to an ACO (Shared Savings) contract.
                product_line="MEDICARE_ADVANTAGE" if hmo else "ACO",
                coverage_start=dt.date(year, months[0], 1).isoformat(), coverage_end=last_day.isoformat(),
                birth_date=_date(row["BENE_BIRTH_DT"]), sex=SEX.get(row.get("BENE_SEX_IDENT_CD", ""), "U"),
                received_at_ms=now_ms))
        except (KeyError, ValueError, AttributeError) as exc:
            batch.problems.append(Problem(str(path), line_no, f"bad_row: {type(exc).__name__} {exc}"))


def _kind(name: str):
    """The reader for a RIF file, from its name (CCW extract names and BFD sample names)."""
    if name.startswith(("carrier", "bcarrier", "dme")):
        return _carrier
    if name.startswith(INSTITUTIONAL_FILES):
        return _institutional
    if name.startswith("pde"):
        return _pde
    if re.fullmatch(r"beneficiary_\d{4}|beneficiaries(-with-backslash)?|multiple-entries-same-bene", name):
        return _beneficiaries
    return None


def read_directory(directory: Path) -> RifBatch:
    """Every RIF file gapstream understands in ``directory``; other files are listed as problems."""
    batch, now_ms = RifBatch(), int(time.time() * 1000)
    for path in sorted(directory.iterdir()):
        if path.suffix not in (".csv", ".txt"):
            continue
        kind = _kind(path.stem.lower().removeprefix("sample-a-"))
        if kind is None:
            batch.problems.append(Problem(str(path), 0, "not_loaded: not a claim, Part D or beneficiary file"))
        else:
            kind(path, batch, now_ms)
    return batch
