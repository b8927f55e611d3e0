"""Care gaps on real parts: an ED visit sent over MLLP opens the FMC follow-up gap of a member with
two chronic conditions, a follow-up claim closes it, a void of that claim re-opens it; each step
reaches the organization's endpoint as a signed webhook, and the next ED alert carries the open gap."""
import asyncio
import datetime as dt
import random
import subprocess
import sys

import pytest
from fhir.resources.R4B.bundle import Bundle
from standardwebhooks.webhooks import Webhook

from sinks.webhooks.signing import new_secret
from streams.adt.mllp_client import send_messages
from streams.kafka.broker import die_with_parent, free_port
from streams.models import EligibilitySpan, Provider
from streams.sources.publish import publish
from streams.tools.demo import wait_listening
from streams.tools.generate import AdtFeed, Member
from tests.claims_factory import visit, void
from tests.helpers import Receiver, call, organization_token, start_worker, wait_for

pytestmark = pytest.mark.e2e
ORG, PCP = "ORG-GAPS", "1999999984"
TODAY = dt.date.today()
SCREENED = "G-200"  # 60 years old: in colorectal screening's ages
PATIENT = Member("G-100", "DOE", "JANE", dt.date(1950, 6, 1), "F", ORG, PCP)


def history():
    """Heart failure last year, COPD this year: two FMC condition groups."""
    last_year, earlier = dt.date(TODAY.year - 1, 5, 1), TODAY - dt.timedelta(days=3)
    return [
        _claim(visit("h1", PCP, last_year.isoformat(), member=PATIENT.member_id), ["I509"]),
        _claim(visit("h2", PCP, earlier.isoformat(), member=PATIENT.member_id), ["J449"]),
    ]


def _claim(claim, diagnoses):
    claim.diagnosis_codes = diagnoses
    return claim


def webhooks(receiver, alert_type):
    events = [Webhook(receiver.secret).verify(r.body, r.headers) for r in receiver.requests]
    return [e["data"] for e in events if e["type"] == alert_type]


def subscribed_patient(bootstrap: str, worker) -> Receiver:
    """ORG's endpoint subscribed, its PCP in the directory, and PATIENT covered with the history
    that makes an ED visit open FMC; the receiver returned."""
    receiver = Receiver(secret=new_secret()).start()
    subprocess.run([sys.executable, "-m", "streams.cli", "subscriptions", "add", "--organization", ORG,
                    "--url", receiver.url, "--secret", receiver.secret], env=worker.env, check=True,
                   capture_output=True, timeout=60)
    asyncio.run(publish(bootstrap, [
        Provider(npi=PCP, name="Dr. Gaps", role="PRIMARY_CARE_PHYSICIAN", organization_id=ORG),
        EligibilitySpan(member_id=PATIENT.member_id, payer="PLAN", product_line="MEDICARE_ADVANTAGE",
                        coverage_start="2020-01-01", birth_date="1950-06-01", sex="F", selected_pcp_npi=PCP,
                        received_at_ms=1),
        *history()]))
    return receiver


@pytest.fixture(scope="module")
def stack(broker, tmp_path_factory):
    worker = start_worker(broker.bootstrap, tmp_path_factory.mktemp("gaps"))
    receiver = subscribed_patient(broker.bootstrap, worker)
    mllp_port = free_port()
    mllp = subprocess.Popen([sys.executable, "-m", "streams.cli", "mllp", "--port", str(mllp_port)],
                            env={**worker.env, "GAPSTREAM_MLLP_METRICS_PORT": str(free_port())},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
    wait_listening(mllp_port)
    token = organization_token(worker.env, ORG)  # the organization reads its own members, as a provider would
    # Routing needs the member attributed to the organization before the visit.
    wait_for(lambda: _attributed(worker, token), 60, message="member attributed")
    yield {"worker": worker, "receiver": receiver, "mllp_port": mllp_port, "bootstrap": broker.bootstrap,
           "token": token}
    mllp.terminate()
    worker.stop()
    mllp.wait(10)


def _attributed(worker, token):
    return (call(worker.web_port, f"/attribution/{PATIENT.member_id}", token=token)[1].get("current") or {}).get(
        "organization_id") == ORG


def ed_visit(stack, visit_number):
    feed = AdtFeed(random.Random(1))
    at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    message = feed.message("A04", PATIENT, "STMARYS", visit_number, "E", at)
    report = asyncio.run(send_messages("127.0.0.1", stack["mllp_port"], [message.encode()]))
    assert report.acks == ["AA"]


def fmc(receiver, kind):
    return [d["gap"] for d in webhooks(receiver, kind) if d["gap"]["measure_id"] == "FMC"]


def test_an_ed_visit_opens_the_follow_up_gap_naming_the_alert_it_follows(stack):
    receiver = stack["receiver"]
    ed_visit(stack, "V-1")
    # Two topics, two agents: either webhook may come first.
    wait_for(lambda: fmc(receiver, "gap.opened") and webhooks(receiver, "adt.ed_visit"), 60,
             message="FMC gap.opened and ED-visit webhooks")
    [ed_alert] = webhooks(receiver, "adt.ed_visit")
    [gap] = fmc(receiver, "gap.opened")
    assert gap["gap_id"] == "FMC|STMARYS|V-1" and gap["status"] == "open"
    # Heart failure and COPD in 24 months: the agreed high-risk rule, named with its version.
    [opened] = [d for d in webhooks(receiver, "gap.opened") if d["gap"]["measure_id"] == "FMC"]
    assert opened["cohorts"] == ["high_risk@2026.1"]
    assert gap["detail"]["ed_alert_id"] == ed_alert["alert_id"]
    assert gap["due"] == (dt.date.fromisoformat(gap["window_start"]) + dt.timedelta(days=7)).isoformat()
    status, body = _gaps(stack, "open")
    assert status == 200 and "FMC|STMARYS|V-1" in [g["gap_id"] for g in body["gaps"]]


def test_a_follow_up_claim_closes_it_and_a_void_of_that_claim_reopens_it(stack):
    receiver = stack["receiver"]
    [gap] = wait_for(lambda: fmc(receiver, "gap.opened"), 60, message="FMC gap open")
    # Seen on the day of the visit: a date taken earlier would precede the window past midnight.
    follow_up = visit("fu1", PCP, gap["window_start"], code="99214", member=PATIENT.member_id)
    asyncio.run(publish(stack["bootstrap"], [follow_up]))
    wait_for(lambda: fmc(receiver, "gap.closed"), 60, message="FMC gap.closed webhook")
    [closed] = fmc(receiver, "gap.closed")
    assert closed["evidence_ids"] == ["fu1"] and closed["detail"]["evidence"] == "fu1"

    asyncio.run(publish(stack["bootstrap"], [void("fu1-void", "fu1", member=PATIENT.member_id)]))
    wait_for(lambda: len(fmc(receiver, "gap.opened")) == 2, 60, message="FMC gap re-opened")
    reopened = max(fmc(receiver, "gap.opened"), key=lambda g: g["revision"])
    assert (reopened["detail"]["reopened_by"], reopened["detail"]["evidence"]) == ("void", "fu1")
    assert reopened["revision"] > closed["revision"]


def test_the_next_ed_alert_carries_the_members_open_gaps(stack):
    receiver = stack["receiver"]
    wait_for(lambda: _gaps(stack, "open")[1]["gaps"], 60, message="an open gap stored")
    wait_for(lambda: _gaps(stack, "open")[1]["cohorts"], 60, message="the member's cohorts stored")
    ed_visit(stack, "V-2")
    wait_for(lambda: [a for a in webhooks(receiver, "adt.ed_visit") if a["visit_number"] == "V-2"], 60,
             message="second ED alert")
    [second] = [a for a in webhooks(receiver, "adt.ed_visit") if a["visit_number"] == "V-2"]
    assert {g["gap_id"] for g in second["open_gaps"]} >= {"FMC|STMARYS|V-1"}
    assert all(g["status"] == "open" for g in second["open_gaps"])
    assert second["cohorts"] == ["high_risk@2026.1"]


def _gaps(stack, status):
    return call(stack["worker"].web_port, f"/gaps/{PATIENT.member_id}?status={status}", token=stack["token"])


def test_the_catalog_lists_each_measure_once_for_an_organization_with_several_programs(stack):
    port = stack["worker"].web_port
    status, listed = call(port, "/catalog?programs=MEDICARE_STARS,ACO_SHARED_SAVINGS")
    weights = {m["measure_id"]: m["total_weight"] for m in listed}
    assert status == 200 and listed[0]["total_weight"] == 4.0 and weights["FMC"] == 3.0  # Stars 1 + ACO 2
    assert len({m["measure_id"] for m in listed}) == len(listed)
    assert call(port, "/catalog?programs=NOPE")[0] == 404


def test_a_screening_gap_opened_with_the_coverage_reaches_the_attributed_organization(stack):
    # The coverage decides the member's attribution and opens the screening gap in one step, before
    # the attribution reaches SQL: the alert must be addressed all the same.
    receiver = stack["receiver"]
    asyncio.run(publish(stack["bootstrap"], [EligibilitySpan(
        member_id=SCREENED, payer="PLAN", product_line="COMMERCIAL", coverage_start="2020-01-01",
        birth_date="1966-03-03", sex="F", selected_pcp_npi=PCP, received_at_ms=1)]))
    def announced():  # a new gap is announced once, in its current status (due soon late in the year)
        return [d for kind in ("gap.opened", "gap.due_soon") for d in webhooks(receiver, kind)
                if d["member_id"] == SCREENED and d["gap"]["measure_id"] == "COL-E"]

    [first] = wait_for(announced, 60, message="COL-E gap webhook")
    assert first["organization_id"] == ORG and first["gap"]["status"] == "open"
    year = dt.date.today().year  # the worker's, now: TODAY was taken at import, maybe in another year
    assert first["gap"]["gap_id"] == f"COL-E|{year}" and first["gap"]["due"] == f"{year}-12-31"


def test_reports_list_the_gaps_of_the_organizations_members(stack):
    # After the screening test: the COL-E gap of SCREENED is open and in SQL.
    port, token = stack["worker"].web_port, stack["token"]

    def listed():
        gaps = call(port, f"/organizations/{ORG}/worklist", token=token)[1]["gaps"]
        return [g for g in gaps if (g["member_id"], g["measure_id"]) == (SCREENED, "COL-E")]

    [entry] = wait_for(listed, 60, message="COL-E gap on the organization's worklist")
    assert entry["npi"] == PCP and entry["due"] == f"{dt.date.today().year}-12-31"
    assert call(port, "/organizations/ORG-NOBODY/worklist", token=token)[0] == 404  # not this token's

    status, bundle = call(port, f"/gaps/{SCREENED}/report", token=token)
    Bundle.model_validate(bundle)
    assert status == 200 and bundle["entry"][0]["resource"]["section"]

    card = wait_for(lambda: (c := call(port, f"/providers/{PCP}/scorecard", token=token)[1]).get("name") and c, 60,
                    message="the directory in SQL")
    col = next(m for m in card["measures"] if m["measure_id"] == "COL-E")
    assert (card["name"], card["peer_group"], card["year"]) == ("Dr. Gaps", "PRIMARY_CARE_PHYSICIAN",
                                                                dt.date.today().year)
    assert col["counted"] >= 1 and card["attribution_methods"] and "POST /disputes" in card["dispute_route"]
    assert call(port, f"/providers/{PCP}/scorecard?year=last", token=token)[0] == 400
