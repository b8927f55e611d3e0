"""Cohorts as signed-off data, on hand-computed members: any-of and all-of rules, lookbacks that
let a member leave a cohort as visits age, and files that are refused."""
import datetime as dt

import pytest

from streams.caregaps.cohorts import CohortError, cohorts, member_cohorts, parse_cohort
from streams.caregaps.facts import Member, Visit
from streams.claims.ledger import EffectiveClaim, Line
from streams.codesets import RULES, rule_files

D = dt.date
TODAY = D(2026, 6, 15)


def claim(claim_id, day, dx=(), allowed=100.0):
    return EffectiveClaim(claim_id, claim_id, "PROFESSIONAL", tuple(dx), (Line(day, "99213", "1234567893", allowed),))


def ed(n, day):
    return Visit(f"H|{n}", "ed_visit", day)


def member(claims=(), visits=()):
    return Member(D(1950, 1, 1), "F", "MEDICARE_ADVANTAGE", list(claims), list(visits))


def test_the_shipped_cohorts_are_signed_off_by_both_parties():
    assert set(cohorts()) == {"high_risk", "rising_risk"}
    assert {s.party for s in cohorts()["high_risk"].signed_off} == {"plan", "providers"}


@pytest.mark.parametrize("facts, high_risk", [
    (member([claim("a", "2024-07-01", ["I509"]), claim("b", "2026-01-10", ["J449"])]), True),  # two groups, 24 months
    (member([claim("a", "2024-06-14", ["I509"]), claim("b", "2026-01-10", ["J449"])]), False),  # one aged out
    (member([claim("a", "2026-01-10", ["I509", "I5022"])]), False),  # one group twice
    (member(visits=[ed(1, D(2026, 1, 1)), ed(2, D(2026, 3, 1)), ed(3, D(2026, 6, 1))]), True),  # 3 ED in 6 months
    (member(visits=[ed(1, D(2025, 12, 14)), ed(2, D(2026, 3, 1)), ed(3, D(2026, 6, 1))]), False),
    (member([claim("a", "2025-07-01", allowed=30000.0), claim("b", "2026-02-01", allowed=20000.0)]), True),
    (member([claim("a", "2025-06-14", allowed=30000.0), claim("b", "2026-02-01", allowed=20000.0)]), False),
])
def test_any_one_rule_puts_a_member_in_high_risk(facts, high_risk):
    assert ("high_risk@2026.1" in member_cohorts(facts, TODAY)) is high_risk


def test_rising_risk_needs_every_rule():
    conditions = [claim("a", "2025-03-01", ["E119"]), claim("b", "2025-04-01", ["I10"])]
    assert member_cohorts(member(conditions, [ed(1, D(2026, 2, 1))]), TODAY) == ["rising_risk@2026.1"]
    assert member_cohorts(member(conditions[:1], [ed(1, D(2026, 2, 1))]), TODAY) == []
    assert member_cohorts(member(conditions), TODAY) == []


def test_a_cohort_without_both_sign_offs_or_with_an_unknown_rule_is_refused():
    text = (RULES / "cohorts" / "high_risk.toml").read_text()
    with pytest.raises(CohortError, match="both the plan and the providers"):
        parse_cohort(text.replace('party = "providers"', 'party = "plan"'), "high_risk.toml")
    with pytest.raises(CohortError, match="rule must be one of"):
        parse_cohort(text.replace('rule = "ed_visits"', 'rule = "er_visits"'), "high_risk.toml")
    with pytest.raises(CohortError, match="no code set"):
        parse_cohort(text.replace('"fmc_chronic_conditions"', '"nope"'), "high_risk.toml")


def test_two_rule_files_with_one_id_are_refused(tmp_path):
    text = (RULES / "cohorts" / "high_risk.toml").read_text()
    (tmp_path / "a.toml").write_text(text)
    (tmp_path / "b.toml").write_text(text.replace('version = "2026.1"', 'version = "2026.2"'))
    with pytest.raises(CohortError, match="b.toml: id high_risk is already defined"):
        rule_files(str(tmp_path), parse_cohort, CohortError)  # an absolute folder stands for a rules folder
