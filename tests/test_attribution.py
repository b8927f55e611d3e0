"""Attribution scenarios computed by hand, one per rule the methods use."""
import datetime as dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.attribution.engine import add_months, evaluate
from streams.attribution.members import MemberState, apply
from streams.attribution.members import decide as members_decide
from streams.attribution.methods import MethodError, method_for, methods, parse_method
from streams.attribution.redaction import explanation_for
from streams.claims.ledger import Ledger, add_medical, add_span
from tests.claims_factory import NP_C, PCP_A, PCP_B, PCP_E, PROVIDERS, SPEC_D, fill, span, visit, void

AS_OF = dt.date(2025, 6, 30)


def decide(*messages, as_of=AS_OF, providers=PROVIDERS, overrides=()):
    ledger = Ledger()
    for m in messages:
        (add_span if hasattr(m, "coverage_start") else add_medical)(ledger, m)
    return evaluate("M1", ledger, providers, list(overrides), as_of)


def test_every_method_file_loads_and_every_program_has_a_method():
    assert set(methods()) == {"member-selected-then-visits", "plurality-visits", "mssp-allowed-charges"}
    for product_line in ("MEDICARE_ADVANTAGE", "MEDICAID", "COMMERCIAL", "ACO"):
        assert method_for("ANY", product_line)


def test_plurality_of_visits_counts_distinct_days():
    d = decide(span(), visit("c1", PCP_A, "2025-01-05", "2025-02-05", "2025-03-05"),
               visit("c2", PCP_B, "2025-04-01", "2025-05-01"),
               visit("c3", PCP_B, "2025-05-01", code="99214"))  # same day again: still one visit
    assert (d.organization_id, d.npi, d.rule) == ("ORG-A", PCP_A, "plurality")
    assert [(c.npi, c.visits, c.rank) for c in d.candidates] == [(PCP_A, 3, 1), (PCP_B, 2, 2)]
    assert d.candidates[1].allowed_amount == 300.0 and d.candidates[1].last_visit == "2025-05-01"


def test_a_tie_goes_to_the_most_recent_visit():
    d = decide(span(), visit("c1", PCP_A, "2025-01-05", "2025-03-05"),
               visit("c2", PCP_B, "2025-02-01", "2025-04-01"))
    assert d.npi == PCP_B
    assert "tied on visits" in d.reason and "most_recent_visit" in d.reason


def test_visits_age_out_of_the_lookback_and_the_decision_says_when():
    # 24-month lookback: A's visits of 2023-05 count until 2025-05; on 2025-06-30 only B's remain.
    messages = [span(), visit("c1", PCP_A, "2023-05-10", "2023-05-20", "2023-07-01"),
                visit("c2", PCP_B, "2024-01-01", "2024-02-01")]
    before = decide(*messages, as_of=dt.date(2025, 5, 9))
    assert before.npi == PCP_A and before.next_review == "2025-05-10"
    after = decide(*messages, as_of=dt.date(2025, 6, 30))
    assert after.npi == PCP_B
    assert [c.visits for c in after.candidates if c.npi == PCP_A] == [1]  # only the 2023-07-01 visit left
    assert after.next_review == "2025-07-01"


def test_member_selected_pcp_comes_first_and_its_end_is_a_review_date():
    messages = [visit("c1", PCP_A, "2025-01-05", "2025-02-05"), span(pcp=NP_C)]
    providers = {**PROVIDERS, NP_C: {**PROVIDERS[NP_C], "active_to": "2025-08-31"}}
    d = decide(*messages, providers=providers)
    assert (d.npi, d.organization_id, d.rule) == (NP_C, "ORG-C", "member_selected_pcp")
    assert d.candidates[0].npi == PCP_A  # the visits are still shown
    assert d.next_review == "2025-09-01"
    ended = decide(*messages, providers=providers, as_of=dt.date(2025, 9, 1))
    assert (ended.npi, ended.rule) == (PCP_A, "plurality")
    assert "not active" in ended.steps[0]


def test_a_specialist_is_not_a_candidate_for_visit_plurality():
    d = decide(span(), visit("c1", SPEC_D, "2025-01-05", "2025-02-05", "2025-03-05"),
               visit("c2", PCP_A, "2025-01-10"))
    assert d.npi == PCP_A
    assert [c.note for c in d.candidates if c.npi == SPEC_D] == ["role SPECIALIST not eligible"]


def test_mssp_uses_allowed_charges_and_specialists_only_without_primary_care():
    d = decide(span("ACO"), visit("c1", PCP_A, "2025-01-05", allowed=300.0),
               visit("c2", PCP_B, "2025-02-05", "2025-03-05", "2025-04-05", allowed=90.0))
    assert (d.npi, d.method_id) == (PCP_A, "mssp-allowed-charges")  # 300 > 270 despite fewer visits
    specialists_only = decide(span("ACO"), visit("c1", SPEC_D, "2025-01-05", allowed=500.0))
    assert specialists_only.npi == SPEC_D and "tier 2" in specialists_only.reason
    mixed = decide(span("ACO"), visit("c1", SPEC_D, "2025-01-05", allowed=5000.0),
                   visit("c2", PCP_A, "2025-01-06", allowed=50.0))
    assert mixed.npi == PCP_A  # one primary care clinician's service settles it in step 1


def test_a_provider_without_an_organization_is_attributed_to_its_tin():
    d = decide(span(), visit("c1", PCP_E, "2025-01-05"))
    assert d.organization_id == "TIN:123456789"


def test_unknown_providers_are_held_not_counted():
    d = decide(span(), visit("c1", "1999999999", "2025-01-05", "2025-02-05"), visit("c2", PCP_A, "2025-03-01"))
    assert d.npi == PCP_A and d.unknown_npis == ("1999999999",)


def test_a_void_flips_the_answer():
    messages = [span(), visit("c1", PCP_A, "2025-01-05", "2025-02-05", "2025-03-05"),
                visit("c2", PCP_B, "2025-04-01", "2025-05-01")]
    assert decide(*messages).npi == PCP_A
    assert decide(*messages, void("c1v", "c1")).npi == PCP_B


def test_a_replacement_supersedes_its_original():
    messages = [span(), visit("c1", PCP_A, "2025-01-05", "2025-02-05", "2025-03-05"),
                visit("c2", PCP_B, "2025-04-01", "2025-05-01")]
    corrected = visit("c1r", PCP_A, "2025-01-05", frequency="7", original="c1")
    assert decide(*messages, corrected).npi == PCP_B


def test_accepted_disputes_override_until_they_expire():
    messages = [span(), visit("c1", PCP_A, "2025-01-05", "2025-02-05"), visit("c2", PCP_B, "2025-03-01")]
    remove = {"dispute_id": "d1", "kind": "remove", "organization_id": "ORG-A", "effective_from": "2025-06-01",
              "expires_on": "2025-12-31", "reason": "patient moved away"}
    d = decide(*messages, overrides=[remove])
    assert d.npi == PCP_B and "removed by an accepted dispute" in d.candidates[0].note + d.candidates[1].note
    assert d.next_review == "2025-12-31"
    assert decide(*messages, overrides=[remove], as_of=dt.date(2025, 12, 31)).npi == PCP_A
    add = {"dispute_id": "d2", "kind": "add", "organization_id": "ORG-D", "npi": SPEC_D,
           "effective_from": "2025-01-01", "reason": "our patient"}
    d = decide(*messages, overrides=[add])
    assert (d.organization_id, d.rule) == ("ORG-D", "dispute_add") and "d2" in d.reason


def test_no_coverage_no_attribution():
    d = decide(span(start="2024-01-01", end="2024-12-31"), visit("c1", PCP_A, "2024-06-01"))
    assert (d.organization_id, d.rule) == (None, "no_active_coverage")
    future = decide(span(start="2025-08-01"), as_of=AS_OF)
    assert future.next_review == "2025-08-01"


def test_add_months_clamps_to_month_end():
    assert add_months(dt.date(2024, 2, 29), 12) == dt.date(2025, 2, 28)
    assert add_months(dt.date(2024, 8, 31), 1) == dt.date(2024, 9, 30)


def test_a_method_file_with_an_unknown_rule_is_refused():
    with pytest.raises(MethodError):
        parse_method('id="x"\nversion="1"\ntitle="t"\n[[steps]]\nrule="coin_flip"\n')


def test_a_selected_pcp_missing_from_the_directory_is_waited_for():
    d = decide(span(pcp="1888888888"), visit("c1", PCP_A, "2025-01-05"))
    assert d.npi == PCP_A and d.unknown_npis == ("1888888888",)


LAB = "80053"  # a metabolic panel: no method counts it


@settings(max_examples=150, deadline=None)
@given(st.permutations([
    visit("c1", PCP_A, "2025-01-05", "2025-02-05"),
    visit("lab", PCP_B, "2025-03-01", "2025-03-02", "2025-03-03", code=LAB),
    visit("lab-r", PCP_B, "2025-03-01", "2025-03-02", "2025-03-03", frequency="7", original="lab"),
    void("c1-v", "c1"),
    visit("c2", PCP_B, "2025-04-01", code=LAB),
    fill("f1"),
]))
def test_a_message_apply_calls_irrelevant_leaves_the_decision_as_it_was(order):
    state = MemberState()
    apply(state, span())
    members_decide("M1", state, PROVIDERS, AS_OF, 0)
    for m in order:
        if apply(state, m).attribution:
            members_decide("M1", state, PROVIDERS, AS_OF, 0)
        else:
            fresh = evaluate("M1", state.ledger, PROVIDERS, [], AS_OF)
            assert (fresh.organization_id, fresh.npi, fresh.next_review) == (
                state.organization_id, state.npi, state.next_review)
    final = evaluate("M1", state.ledger, PROVIDERS, [], AS_OF)
    assert (final.organization_id, final.npi) == (state.organization_id, state.npi)


def test_labs_and_fills_are_irrelevant_and_corrections_never_are():
    state = MemberState()
    apply(state, span())
    assert apply(state, visit("lab", PCP_B, "2025-03-01", code=LAB)).attribution is False
    assert apply(state, fill("f1")).attribution is False
    assert apply(state, visit("c1", PCP_A, "2025-01-05")).attribution is True
    # A replacement may turn a lab claim into a visit: always evaluated, whatever its codes.
    assert apply(state, visit("lab-r", PCP_B, "2025-03-01", frequency="7", original="lab")).attribution is True
    assert apply(state, visit("lab", PCP_B, "2025-03-01", code=LAB)).attribution is True  # the same id again


def test_an_organization_sees_the_numbers_behind_its_attribution_but_not_the_members_other_providers():
    # A tie PCP_B (ORG-B) wins on the most recent visit; the reason names the runner-up, PCP_A (ORG-A).
    d = decide(span(), visit("c1", PCP_A, "2025-01-05", "2025-03-05"),
               visit("c2", PCP_B, "2025-02-01", "2025-04-01"))
    full = d.to_dict()
    assert PCP_A in full["reason"] and "ORG-A" in json.dumps(full["candidates"])
    seen = explanation_for(full, "ORG-B")
    text = json.dumps(seen)
    assert PCP_A not in text and "ORG-A" not in text  # who else the member sees is not told
    assert PCP_B in seen["reason"] and "tied on visits with another provider" in seen["reason"]
    assert [(c["npi"], c["organization_id"], c["visits"], c["rank"]) for c in seen["candidates"]] == [
        (PCP_B, "ORG-B", 2, 1), (None, None, 2, 2)]  # the competition's numbers stay
    assert json.dumps(explanation_for(full, "ORG-A")).count("ORG-B") == 0  # and the other way round
    assert explanation_for(full, "ORG-A")["organization_id"] == "another organization"


def test_an_organization_the_member_had_before_is_hidden_even_where_it_is_no_candidate():
    explanation = {"organization_id": "ORG-B", "npi": PCP_B, "reason": "most visits", "candidates": [],
                   "steps": ["step 1 member_selected_pcp: selected PCP 1000000009 belongs to ORG-X, removed by an "
                             "accepted dispute"], "unknown_npis": []}
    seen = explanation_for(explanation, "ORG-B", {"ORG-X"})
    assert seen["steps"] == ["step 1 member_selected_pcp: selected PCP another provider belongs to another "
                             "organization, removed by an accepted dispute"]


def test_the_organization_decided_for_is_hidden_from_the_one_that_lost_the_member_though_no_candidate():
    # The member's own visits are with PCP_A (ORG-A); the selected PCP, at ORG-B, decides without a claim.
    full = decide(span(pcp=PCP_B), visit("c1", PCP_A, "2025-01-05")).to_dict()
    assert full["rule"] == "member_selected_pcp" and "ORG-B" in full["reason"]
    seen = explanation_for(full, "ORG-A")
    assert "ORG-B" not in json.dumps(seen) and PCP_B not in json.dumps(seen)
    assert seen["reason"] == "member selected PCP another provider (another organization)"
