"""COL-E as data, on hand-computed members: each modality's lookback, ages at year end, exclusions."""
import datetime as dt

import pytest

from streams.caregaps.facts import Member
from streams.caregaps.measures import MeasureError, measures, parse_measure
from streams.caregaps.screening import status
from streams.claims.ledger import EffectiveClaim, Line
from streams.codesets import RULES

COL = measures()["COL-E"]
BORN = dt.date(1960, 5, 1)  # 66 at the end of 2026


def claim(claim_id, day, code, dx=()):
    return EffectiveClaim(claim_id, claim_id, "PROFESSIONAL", tuple(dx), (Line(day, code, "1234567893", 10.0),))


def col(claims, born=BORN, year=2026, product="MEDICARE_ADVANTAGE"):
    return status(COL, year, Member(born, "F", product, claims, []))


@pytest.mark.parametrize("code, day, closed", [
    ("45378", "2017-01-01", True),    # colonoscopy: the measurement year and 9 years before
    ("45378", "2016-12-31", False),
    ("G0121", "2020-06-01", True),
    ("81528", "2024-01-01", True),    # stool DNA with FIT: 2 years before
    ("81528", "2023-12-31", False),
    ("82274", "2026-02-01", True),    # FIT: the measurement year only
    ("82274", "2025-12-31", False),
    ("74263", "2022-03-01", True),    # CT colonography: 4 years before
    ("45330", "2021-12-31", False),   # flexible sigmoidoscopy: 4 years before
    ("99213", "2026-02-01", False),   # an office visit is no screening
])
def test_each_modality_counts_within_its_own_lookback(code, day, closed):
    result = col([claim("c1", day, code)])
    assert (result.status == "closed") is closed, result.reason


def test_the_service_that_counts_longest_is_reported():
    result = col([claim("fit", "2026-03-01", "82274"), claim("colo", "2020-05-05", "45380")])
    assert (result.details, [e.id for e in result.evidence]) == (
        {"modality": "colonoscopy", "counts_through": 2029}, ["colo"])


def test_unscreened_members_have_a_gap_due_at_year_end():
    result = col([])
    assert (result.status, result.due) == ("open", dt.date(2026, 12, 31))


@pytest.mark.parametrize("born, applies", [
    (dt.date(1981, 12, 31), True),   # 45 on December 31st
    (dt.date(1982, 1, 1), False),    # 44 at the end of the year
    (dt.date(1951, 1, 1), True),     # 75
    (dt.date(1950, 12, 31), False),  # 76
])
def test_ages_are_taken_at_the_end_of_the_measurement_year(born, applies):
    assert (col([], born=born).status != "not_applicable") is applies


def test_colorectal_cancer_or_a_colectomy_excludes_the_member():
    assert "colorectal cancer" in col([claim("c1", "2019-02-01", "99214", dx=["C18.7"])]).reason
    assert col([claim("c1", "2015-02-01", "44150")]).status == "not_applicable"
    assert col([claim("c1", "2027-02-01", "99214", dx=["C20"])]).status == "open"  # after the year


def test_a_modality_without_its_group_in_the_code_set_is_refused():
    text = (RULES / "measures" / "col_e.toml").read_text()
    with pytest.raises(MeasureError, match="no group 'capsule'"):
        parse_measure(text.replace('name = "ct_colonography"', 'name = "capsule"'), "col_e.toml")


def test_a_device_code_that_looks_like_a_cancer_category_does_not_exclude():
    # HCPCS C1889 (an implanted device) starts like ICD-10 C18 (colon cancer): a procedure code is
    # compared with the procedures of the exclusion, never with its diagnosis categories.
    assert col([claim("c1", "2019-02-01", "C1889")]).status == "open"
    assert col([claim("c1", "2019-02-01", "99214", dx=["C1889"])]).status == "not_applicable"


BCS, EED = measures()["BCS-E"], measures()["EED"]


@pytest.mark.parametrize("day, closed", [
    ("2024-10-01", True),   # October 1 two years before the measurement year: 27 months
    ("2024-09-30", False),
    ("2026-12-31", True),
])
def test_a_mammogram_counts_from_october_1_two_years_before(day, closed):
    found = status(BCS, 2026, Member(BORN, "F", "COMMERCIAL", [claim("m1", day, "77067")], []))
    assert (found.status == "closed") is closed, found.reason


def test_breast_screening_counts_women_42_to_74_without_a_bilateral_mastectomy():
    assert "sex M" in status(BCS, 2026, Member(BORN, "M", "COMMERCIAL", [], [])).reason
    assert status(BCS, 2026, Member(dt.date(1985, 1, 1), "F", "COMMERCIAL", [], [])).status == "not_applicable"
    history = [claim("x1", "2012-02-01", "99214", dx=["Z90.13"])]
    assert "mastectomy" in status(BCS, 2026, Member(BORN, "F", "COMMERCIAL", history, [])).reason


DIABETES = [claim("d1", "2025-03-01", "99213", dx=["E11.9"]), claim("d2", "2025-09-01", "99213", dx=["E1165"])]


@pytest.mark.parametrize("day, code, closed", [
    ("2026-05-01", "2022F", True),   # an exam this year, with retinopathy
    ("2025-05-01", "2022F", False),  # last year, with retinopathy: not enough
    ("2025-05-01", "2023F", True),   # last year, without retinopathy
    ("2024-12-31", "2023F", False),
    ("2026-05-01", "3072F", True),   # low risk reported this year
    ("2026-05-01", "92228", True),   # retinal imaging
])
def test_eye_exams_count_by_result_and_year(day, code, closed):
    found = status(EED, 2026, Member(BORN, "M", "MEDICAID", [*DIABETES, claim("e1", day, code)], []))
    assert (found.status == "closed") is closed, found.reason


def test_eye_exams_are_for_members_with_diabetes():
    found = status(EED, 2026, Member(BORN, "M", "MEDICAID", DIABETES[:1], []))
    assert found.status == "not_applicable" and "1 of 2" in found.reason


@pytest.mark.parametrize("coverage, today, enrolled", [
    (((dt.date(2020, 1, 1), None),), dt.date(2026, 12, 31), True),
    (((dt.date(2020, 1, 1), dt.date(2026, 3, 1)), (dt.date(2026, 4, 16), None)), dt.date(2026, 12, 31), True),  # 45
    (((dt.date(2020, 1, 1), dt.date(2026, 3, 1)), (dt.date(2026, 4, 17), None)), dt.date(2026, 12, 31), False),  # 46
    (((dt.date(2020, 1, 1), dt.date(2026, 3, 1)), (dt.date(2026, 3, 12), dt.date(2026, 8, 1)),
      (dt.date(2026, 8, 12), None)), dt.date(2026, 12, 31), False),  # two gaps of 10 days
    (((dt.date(2026, 2, 1), None),), dt.date(2026, 6, 1), True),  # joined February: one gap of 31 days
    (((dt.date(2020, 1, 1), dt.date(2026, 9, 30)),), dt.date(2026, 11, 10), True),  # lapsed 41 days ago, so far
    (((dt.date(2020, 1, 1), dt.date(2026, 9, 30)),), dt.date(2026, 12, 31), False),  # 92 days by year end
    # Covered again from June: judged on April 20, the gap so far is 20 days.
    (((dt.date(2020, 1, 1), dt.date(2026, 3, 31)), (dt.date(2026, 6, 1), None)), dt.date(2026, 4, 20), True),
])
def test_screening_needs_continuous_enrollment_with_one_gap_of_up_to_45_days(coverage, today, enrolled):
    facts = Member(BORN, "F", "MEDICARE_ADVANTAGE", [], [], (), coverage)
    found = status(COL, 2026, facts, today)
    assert (found.status != "not_applicable") is enrolled, found.reason
