"""FMC as data: the definition file loads, and decides denominator, evidence and exclusion as the
measure description says, on hand-computed members."""
import datetime as dt

import pytest

from streams.caregaps.facts import Member
from streams.caregaps.followup import Trigger, applies, evidence, exclusion, opened
from streams.caregaps.measures import MeasureError, measures, parse_measure
from streams.claims.ledger import EffectiveClaim, Line
from streams.codesets import RULES

D = dt.date
FMC = measures()["FMC"]
VISIT = Trigger("STMARYS|V1", D(2026, 3, 1))
BORN = D(1950, 6, 1)


def claim(claim_id, day, codes=(), dx=()):
    return EffectiveClaim(claim_id, claim_id, "PROFESSIONAL", tuple(dx),
                          tuple(Line(day, code, "1234567893", 100.0) for code in codes or ["99213"]))


def test_the_definition_reads_as_the_measure_description():
    assert (FMC.kind, FMC.rules.trigger, FMC.rules.within_days, FMC.denominator.min_age) == (
        "event_followup", "ed_visit", 7, 18)
    assert FMC.denominator.conditions_at_least == 2 and "MEDICARE_ADVANTAGE" in FMC.denominator.product_lines
    assert [(e.rule, e.days) for e in FMC.exclusions] == [("inpatient_admission_within_days", 7)]


def test_two_different_conditions_in_the_event_year_or_the_one_before_put_the_visit_in():
    history = [claim("c1", "2025-02-10", dx=["I50.9"]), claim("c2", "2026-01-05", dx=["J449"])]
    result = applies(FMC, VISIT, Member(BORN, "F", "MEDICARE_ADVANTAGE", history, []))
    assert result.applies and "copd_asthma" in result.reason and "heart_failure" in result.reason


@pytest.mark.parametrize("history, product, born, why", [
    ([claim("c1", "2025-02-10", dx=["I509"]), claim("c2", "2025-03-01", dx=["I5022"])], "MEDICARE_ADVANTAGE",
     BORN, "1 of 2"),  # two codes, one condition group
    ([claim("c1", "2024-12-31", dx=["I509"]), claim("c2", "2026-01-05", dx=["J449"])], "MEDICARE_ADVANTAGE",
     BORN, "1 of 2"),  # the heart failure claim is before the lookback
    ([claim("c1", "2025-02-10", dx=["I509", "N183"])], "COMMERCIAL", BORN, "product line"),
    ([claim("c1", "2025-02-10", dx=["I509", "N183"])], "MEDICARE_ADVANTAGE", D(2008, 3, 2), "age 17"),
])
def test_visits_outside_the_denominator_say_why(history, product, born, why):
    result = applies(FMC, VISIT, Member(born, "M", product, history, []))
    assert not result.applies and why in result.reason


def test_an_eighteenth_birthday_on_the_visit_day_counts():
    history = [claim("c1", "2025-02-10", dx=["I509", "N183"])]
    assert applies(FMC, VISIT, Member(D(2008, 3, 1), "F", "MEDICARE_ADVANTAGE", history, [])).applies


def test_the_gap_window_is_the_visit_day_plus_seven():
    gap = opened(FMC, VISIT)
    assert (gap.window_start, gap.due, gap.trigger_id) == (D(2026, 3, 1), D(2026, 3, 8), "STMARYS|V1")


def test_only_follow_up_services_are_evidence():
    found = evidence(FMC, [claim("c1", "2026-03-04", ["99214"]), claim("c2", "2026-03-04", ["80053"]),
                           claim("c3", "2026-03-05", ["99496"])])
    assert [(e.id, e.service_date) for e in found] == [("c1", D(2026, 3, 4)), ("c3", D(2026, 3, 5))]


def test_an_admission_within_seven_days_excludes_the_visit():
    assert "2026-03-08" in exclusion(FMC, VISIT, [D(2026, 3, 8)])
    assert exclusion(FMC, VISIT, [D(2026, 3, 9), D(2026, 2, 20)]) is None


def test_a_definition_naming_an_unknown_code_set_is_refused():
    text = (RULES / "measures" / "fmc.toml").read_text()
    with pytest.raises(MeasureError, match="no code set 'no_such_codes'"):
        parse_measure(text.replace('codeset = "ed_follow_up_services"', 'codeset = "no_such_codes"'), "fmc.toml")
    with pytest.raises(MeasureError, match="kind must be one of"):
        parse_measure(text.replace('kind = "event_followup"', 'kind = "vibes"'), "fmc.toml")
