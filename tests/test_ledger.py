"""Corrections: any arrival order of the same messages gives the same state and attribution."""
import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.attribution.engine import evaluate
from streams.claims.ledger import (
    Ledger,
    add_medical,
    add_pharmacy,
    add_span,
    effective_claims,
    effective_fills,
    spans,
)
from tests.claims_factory import PCP_A, PCP_B, PROVIDERS, fill, span, visit, void

MESSAGES = [
    span(),
    visit("c1", PCP_A, "2025-01-05", "2025-02-05", "2025-03-05"),
    visit("c2", PCP_B, "2025-04-01", "2025-05-01"),
    visit("c3", PCP_B, "2025-05-20"),
    visit("c2r", PCP_B, "2025-04-01", "2025-05-01", "2025-05-10", frequency="7", original="c2",
          adjudicated="2025-06-01"),
    visit("c2rr", PCP_B, "2025-04-01", frequency="7", original="c2r", adjudicated="2025-06-15"),
    void("c1v", "c1"),
    void("c9v", "c9"),  # a void whose original never comes
    visit("c4", PCP_A, "2025-06-01", "2025-06-02"),
    fill("f1"), fill("f2", date="2025-02-10"), fill("f2", reversal=True), fill("f3", reversal=True),
    fill("f3", date="2025-03-01"), fill("f4", date="2025-04-01"),
]


def add(ledger, m):
    if hasattr(m, "coverage_start"):
        add_span(ledger, m)
    elif hasattr(m, "ndc11"):
        add_pharmacy(ledger, m)
    else:
        add_medical(ledger, m)


def fold(messages):
    ledger = Ledger()
    for m in messages:
        add(ledger, m)
    return ledger


def test_corrections_resolve_as_a_person_would():
    ledger = fold(MESSAGES)
    claims = {c.family_id: c for c in effective_claims(ledger)}
    assert set(claims) == {"c2", "c3", "c4"}  # c1 voided, c9 never existed
    assert claims["c2"].claim_id == "c2rr" and [ln.service_date for ln in claims["c2"].lines] == ["2025-04-01"]
    assert [f.claim_id for f in effective_fills(ledger)] == ["f1", "f4"]  # f2 and f3 reversed
    # B: 2 visits (04-01 from c2rr, 05-20); A: 2 visits (06-01, 06-02), the more recent: A wins the tie.
    assert evaluate("M1", ledger, PROVIDERS, [], dt.date(2025, 6, 30)).npi == PCP_A


def test_a_void_before_its_original_cancels_it_when_it_comes():
    ledger = fold([void("v", "c1"), visit("c1", PCP_A, "2025-01-05")])
    assert effective_claims(ledger) == []


def test_a_chain_arriving_backwards_resolves_to_the_last_version():
    forwards = fold([visit("a", PCP_A, "2025-01-01"), visit("b", PCP_A, "2025-01-02", frequency="7", original="a"),
                     visit("c", PCP_A, "2025-01-03", frequency="7", original="b")])
    backwards = fold([visit("c", PCP_A, "2025-01-03", frequency="7", original="b"),
                      visit("b", PCP_A, "2025-01-02", frequency="7", original="a"), visit("a", PCP_A, "2025-01-01")])
    assert effective_claims(forwards) == effective_claims(backwards)
    assert [c.claim_id for c in effective_claims(forwards)] == ["c"]


@settings(max_examples=200, deadline=None)
@given(st.permutations(MESSAGES + MESSAGES[3:6]))  # duplicates included: redelivery is normal
def test_any_order_gives_the_same_state_and_attribution(order):
    expected = fold(MESSAGES)
    ledger = fold(order)
    assert effective_claims(ledger) == effective_claims(expected)
    assert effective_fills(ledger) == effective_fills(expected)
    as_of = dt.date(2025, 6, 30)
    assert evaluate("M1", ledger, PROVIDERS, [], as_of) == evaluate("M1", expected, PROVIDERS, [], as_of)


@settings(max_examples=200, deadline=None)
@given(st.permutations(MESSAGES + MESSAGES[3:6]))
def test_claims_kept_current_between_reads_match_claims_worked_out_afresh(order):
    ledger = Ledger()
    for m in order:
        add(ledger, m)
        afresh = Ledger.from_dict(ledger.to_dict())  # a recovered ledger starts with nothing worked out
        assert effective_claims(ledger) == effective_claims(afresh)
        assert spans(ledger) == spans(afresh)


@settings(max_examples=200, deadline=None)
@given(st.permutations(MESSAGES + MESSAGES[3:6]), st.sampled_from([dt.date(2025, 6, 30), dt.date(2026, 3, 1)]))
def test_candidate_statistics_kept_current_between_decisions_match_statistics_worked_out_afresh(order, as_of):
    ledger = Ledger()
    for m in order:
        add(ledger, m)
        kept = evaluate("M1", ledger, PROVIDERS, [], as_of)  # counts the new claim into what it kept
        assert kept == evaluate("M1", Ledger.from_dict(ledger.to_dict()), PROVIDERS, [], as_of)
    later = dt.date(2027, 4, 15)  # another day: visits of April 2025 have left the lookback
    assert evaluate("M1", ledger, PROVIDERS, [], later) == evaluate("M1", Ledger.from_dict(ledger.to_dict()),
                                                                     PROVIDERS, [], later)


def test_latest_date_covers_claims_and_fills():
    from streams.claims.ledger import latest_date

    assert latest_date(Ledger()) is None
    assert latest_date(fold(MESSAGES)) == "2025-06-02"
    assert latest_date(fold([fill("f9", date="2025-08-01"), visit("x", PCP_A, "2025-07-01")])) == "2025-08-01"
