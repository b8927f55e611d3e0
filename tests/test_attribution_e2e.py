"""Attribution on real parts: RIF files loaded with `gapstream load rif` into a worker on the
embedded broker, explanations, bad input, disputes and attribution lists over HTTP."""
import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from fhir.resources.R4B.group import Group

from streams import topics
from streams.models import DeadLetter
from streams.serialization.codec import AvroCodec
from streams.sources.publish import publish
from tests.claims_factory import fill, visit
from tests.helpers import call, health, metrics_text, organization_token, plan_token, read_topic, start_worker, wait_for

pytestmark = pytest.mark.e2e
RIF = Path(__file__).parent / "fixtures" / "rif"
MEMBER, ORG, NPI = "-1000006", "TIN:999145882", "9999310391"


@pytest.fixture(scope="module")
def worker(broker, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("attribution")
    w = start_worker(broker.bootstrap, data_dir, GAPSTREAM_ATTRIBUTION_CLOCK="event")
    loaded = subprocess.run([sys.executable, "-m", "streams.cli", "load", "rif", str(RIF / "synthea")], env=w.env,
                            capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    w.loaded = json.loads(loaded.stdout.strip().splitlines()[-1])
    w.plan = plan_token(w.env)
    wait_for(lambda: (health(w.web_port) or {}).get("attributed") == 2, 60, message="two RIF members attributed")
    # SQL is written by the batching sink, a moment after routing knows.
    wait_for(lambda: call(w.web_port, f"/attribution/{MEMBER}", token=w.plan)[1].get("current"), 30,
             message="attribution stored in SQL")
    yield w
    w.stop()


def current(worker, member=MEMBER):
    return call(worker.web_port, f"/attribution/{member}", token=worker.plan)[1]["current"]


def test_the_rif_corpus_loads_every_row(worker):
    assert worker.loaded["rows"] == 398 and worker.loaded["problems"] == 2  # beneficiary history, export summary
    assert worker.loaded["published"] == 4 + 33 + 89 + 18  # providers, spans, claims, fills


def test_attribution_is_explained(worker):
    status, body = call(worker.web_port, f"/attribution/{MEMBER}", token=worker.plan)
    assert status == 200
    now = body["current"]
    assert (now["organization_id"], now["npi"], now["rule"], now["method_id"]) == (
        ORG, NPI, "plurality", "mssp-allowed-charges")
    # As when the decision was made: which claims had arrived by then depends on arrival order.
    top = now["explanation"]["candidates"][0]
    assert (top["npi"], top["rank"]) == (NPI, 1) and "ranks first" in now["reason"]
    assert [(h["organization_id"], h["end_date"]) for h in body["history"]] == [(ORG, None)]
    # Evaluated now from the worker's state: the same answer, with the numbers of every claim.
    live_top = body["live"]["candidates"][0]
    assert body["live"]["npi"] == NPI
    assert (live_top["npi"], live_top["visits"], live_top["rank"], live_top["last_visit"]) == (NPI, 2, 1, "2020-06-27")
    # Never attributed (no coded primary care service), yet explained: what was looked at and why nobody.
    status, nobody = call(worker.web_port, "/attribution/-1000018", token=worker.plan)
    assert status == 200 and nobody["current"] is None
    assert nobody["live"]["rule"] == "no_candidate" and "no eligible provider" in nobody["live"]["steps"][0]
    assert call(worker.web_port, "/attribution/NO-SUCH-MEMBER", token=worker.plan)[0] == 404


def test_an_organization_reads_only_its_own_members(worker):
    port = worker.web_port
    assert call(port, f"/attribution/{MEMBER}")[0] == 401
    status, seen = call(port, f"/attribution/{MEMBER}", token=organization_token(worker.env, ORG))
    assert status == 200 and seen["current"]["organization_id"] == ORG
    assert {h["organization_id"] for h in seen["history"]} == {ORG}  # not where the member was before
    named = {c["organization_id"] for c in seen["current"]["explanation"]["candidates"]}
    assert named <= {ORG, None}  # the member's other providers keep their numbers, not their names
    other = organization_token(worker.env, "ORG-OTHER")
    for path in (f"/attribution/{MEMBER}", f"/gaps/{MEMBER}", f"/gaps/{MEMBER}/report", f"/providers/{NPI}/scorecard"):
        assert call(port, path, token=other)[0] == 404, path


def test_bad_input_is_dead_lettered_or_held(worker, broker):
    bad = [
        visit("future", NPI, "2999-01-01", member=MEMBER),
        visit("badcode", NPI, "2021-01-01", code="ABC", member=MEMBER),
        fill("zero", days=0),
        fill("badndc", ndc="123"),
    ]
    held = visit("stranger", NPI, "2021-01-01", member="NO-SUCH-MEMBER")
    asyncio.run(publish(broker.bootstrap, [*bad, held]))

    def letters():
        found = {(d.source, d.reason) for d in (AvroCodec().decode(m.value(), DeadLetter)
                                                 for m in read_topic(broker.bootstrap, topics.DLQ, 20))}
        expected = {(topics.CLAIMS_MEDICAL, "future_date"), (topics.CLAIMS_MEDICAL, "invalid_procedure_code"),
                    (topics.CLAIMS_PHARMACY, "invalid_days_supply"), (topics.CLAIMS_PHARMACY, "invalid_ndc")}
        return expected <= found
    wait_for(letters, 90, message="dead letters for bad claims and fills")
    text = metrics_text(worker.web_port)
    assert 'gapstream_claims_held_total{reason="no_active_coverage"}' in text
    assert 'gapstream_dead_letters_total{reason="future_date",source="claims.medical"} 1.0' in text
    assert current(worker)["organization_id"] == ORG  # the good state was not disturbed


def test_a_dispute_overrides_until_revoked_and_every_step_is_audited(worker):
    port, org, plan = worker.web_port, organization_token(worker.env, ORG), worker.plan
    other = organization_token(worker.env, "ORG-OTHER")
    request = {"member_id": MEMBER, "organization_id": ORG, "kind": "remove", "reason": "patient moved out of state",
               "submitted_by": "care-mgr@org"}
    assert call(port, "/disputes", request)[0] == 401
    assert call(port, "/disputes", request, token=other)[0] == 403  # not in another organization's name
    status, dispute = call(port, "/disputes", request, token=org)
    assert status == 201 and dispute["status"] == "pending"
    assert call(port, "/disputes", {"member_id": MEMBER}, token=org)[0] == 400  # missing fields are refused
    assert call(port, "/disputes", token=other)[1] == []  # an organization lists its own disputes only
    assert [d["id"] for d in call(port, f"/disputes?member_id={MEMBER}", token=org)[1]] == [dispute["id"]]
    decision = {"decision": "accept", "reviewer": "reviewer@plan", "reason": "address change confirmed",
                "effective_from": "2021-01-01"}
    assert call(port, f"/disputes/{dispute['id']}/decision", decision, token=org)[0] == 403  # reviewers only
    status, decided = call(port, f"/disputes/{dispute['id']}/decision", decision, token=plan)
    assert status == 200 and decided["status"] == "accepted"
    wait_for(lambda: current(worker)["organization_id"] is None, 30, message="the removal to take effect")
    assert call(port, f"/disputes/{dispute['id']}/decision",
                {"decision": "accept", "reviewer": "r", "reason": "again"}, token=plan)[0] == 400  # decided once only
    history = call(port, f"/attribution/{MEMBER}", token=plan)[1]["history"]
    assert [h["organization_id"] for h in history] == [ORG] and history[0]["end_date"] is not None

    status, _ = call(port, f"/disputes/{dispute['id']}/revoke",
                     {"actor": "reviewer@plan", "reason": "entered in error"}, token=plan)
    assert status == 200
    wait_for(lambda: current(worker)["organization_id"] == ORG, 30, message="the revocation to restore attribution")
    assert call(port, f"/disputes/{dispute['id']}/audit", token=other)[0] == 404
    audit = call(port, f"/disputes/{dispute['id']}/audit", token=org)[1]
    reviewer = "reviewer@plan (organization:PLAN-CARE-MGMT)"
    assert [(a["action"], a["actor"]) for a in audit] == [
        ("submitted", f"care-mgr@org (organization:{ORG})"), ("accepted", reviewer), ("revoked", reviewer)]


def test_an_accepted_add_dispute_attributes_a_member_nobody_had(worker):
    port, plan = worker.web_port, worker.plan
    _, dispute = call(port, "/disputes", {"member_id": "-1000018", "organization_id": "ORG-NEW", "kind": "add",
                                          "reason": "seen at our clinic, claims pending", "submitted_by": "org-new"},
                      token=organization_token(worker.env, "ORG-NEW"))
    call(port, f"/disputes/{dispute['id']}/decision",
         {"decision": "accept", "reviewer": "reviewer@plan", "reason": "visit notes provided",
          "effective_from": "2021-01-01"}, token=plan)
    wait_for(lambda: call(port, "/attribution/-1000018", token=plan)[1]["current"], 30, message="the added member")
    now = current(worker, "-1000018")
    assert (now["organization_id"], now["rule"]) == ("ORG-NEW", "dispute_add")


def test_a_plan_roster_assigns_members_audited_and_reports_bad_rows(worker, tmp_path):
    organization_token(worker.env, "ORG-ROSTER")  # registered: a roster may name only known organizations
    roster = tmp_path / "roster.csv"
    roster.write_text("member_id,organization_id,npi\n-1000014,ORG-ROSTER,\n-1000099,,\n-1000015,ORG-ROSTR,\n")

    def load() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "streams.cli", "roster", "load", str(roster),
                               "--by", "enrollment@plan", "--effective-from", "2021-01-01"],
                              env=worker.env, capture_output=True, text=True, timeout=60)

    loaded = load()
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(loaded.stdout) == {"published": 1, "problems": 1, "already_assigned": 0,
                                         "unknown_organization_rows": 1}
    assert "roster.csv:3: bad_row: empty organization_id" in loaded.stderr
    assert "1 rows name 'ORG-ROSTR', neither a registered organization" in loaded.stderr
    # Loaded again (say its publishing had failed): published again, recorded once.
    assert json.loads(load().stdout)["already_assigned"] == 1
    wait_for(lambda: current(worker, "-1000014")["organization_id"] == "ORG-ROSTER", 30, message="the roster applied")
    assert current(worker, "-1000014")["rule"] == "dispute_add"
    [assignment] = call(worker.web_port, "/disputes?member_id=-1000014", token=worker.plan)[1]
    assert (assignment["status"], assignment["reason"]) == ("accepted", "plan roster roster.csv")
    audit = call(worker.web_port, f"/disputes/{assignment['id']}/audit", token=worker.plan)[1]
    assert [(a["action"], a["actor"]) for a in audit] == [("submitted", "cli:enrollment@plan"),
                                                          ("accepted", "cli:enrollment@plan")]
    refused = subprocess.run([sys.executable, "-m", "streams.cli", "roster", "load", str(roster), "--by", "x",
                              "--effective-from", "2021-13-01"], env=worker.env, capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode != 0 and "'2021-13-01' is not an ISO date" in refused.stderr


def test_attribution_list_as_fhir_group_and_csv_with_changes(worker):
    port, token = worker.web_port, organization_token(worker.env, ORG)
    assert call(port, f"/organizations/{ORG}/attribution-list")[0] == 401
    other = organization_token(worker.env, "ORG-OTHER")
    assert call(port, f"/organizations/{ORG}/attribution-list", token=other)[0] == 404
    status, group = call(port, f"/organizations/{ORG}/attribution-list?publish=true", token=token)
    assert status == 200
    Group.model_validate(group) if hasattr(Group, "model_validate") else Group.parse_obj(group)
    assert group["quantity"] == 1
    [member] = group["member"]
    assert member["entity"]["reference"] == f"Patient/{MEMBER}"
    assert {e["url"].rsplit("/", 1)[1]: e.get("valueCode") or e["valueReference"]["reference"]
            for e in member["extension"]} == {"ext-changeType": "new", "ext-attributedProvider": f"Practitioner/{NPI}"}
    _, again = call(port, f"/organizations/{ORG}/attribution-list", token=token)
    assert again["member"][0]["extension"][0]["valueCode"] == "nochange"
    _, text = call(port, f"/organizations/{ORG}/attribution-list?format=csv", token=token)
    assert text.splitlines() == ["member_id,attributed_npi,since,change", f"{MEMBER},{NPI},2021-05-14,nochange"]
