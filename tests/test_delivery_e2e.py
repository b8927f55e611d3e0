"""The subscription API and the delivery engine in a real worker on the embedded broker: tokens and
scoping, the OpenAPI document, recovery, and a worker killed with SIGKILL while retries are pending."""
import asyncio
import json
import os
import signal
import time

import pytest
from openapi_spec_validator import validate
from standardwebhooks.webhooks import Webhook

from streams.models import Alert
from streams.sources.publish import publish
from tests.helpers import Receiver, call, organization_token, start_worker, wait_for

pytestmark = pytest.mark.e2e
SCHEDULE = "0,1,1,1,1,1,1,1,1,1"


def alert(alert_id: str, org: str, member: str) -> Alert:
    now = int(time.time() * 1000)
    return Alert(alert_id=alert_id, alert_type="adt.ed_visit", facility="HOSP", event_type="A04",
                 received_at_ms=now, created_at_ms=now, member_id=member, organization_id=org)


@pytest.fixture(scope="module")
def stack(broker, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("delivery")
    worker = start_worker(broker.bootstrap, data_dir, GAPSTREAM_WEBHOOK_SCHEDULE_S=SCHEDULE)
    tokens = {org: organization_token(worker.env, org) for org in ("ORG-A", "ORG-B")}
    receivers = {org: Receiver().start() for org in tokens}
    subs = {}
    for org, receiver in receivers.items():
        status, created = call(worker.web_port, "/subscriptions", {"url": receiver.url, "event_types": ["adt.*"]},
                               token=tokens[org])
        assert status == 201, created
        receiver.secret, subs[org] = created["secret"], created["id"]
    running = {"worker": worker, "tokens": tokens, "receivers": receivers, "subs": subs,
               "bootstrap": broker.bootstrap, "data_dir": data_dir}
    yield running
    running["worker"].stop()  # the worker a test restarted, if it did


def received(receiver: Receiver, alert_type: str = "adt.ed_visit") -> list[dict]:
    events = [(r.headers["webhook-id"], Webhook(receiver.secret).verify(r.body, r.headers))
              for r in receiver.requests]
    return [{"webhook_id": wid, **e} for wid, e in events if e["type"] == alert_type]


def test_the_openapi_document_is_valid_and_lists_every_route(stack):
    port = stack["worker"].web_port
    status, doc = call(port, "/openapi.json")
    assert status == 200
    validate(doc)
    sub = "/subscriptions/{subscription_id}"
    for path in ("/subscriptions", f"{sub}/$status", f"{sub}/$events", f"{sub}/messages/{{webhook_id}}/resend",
                 "/members/{member_id}/disclosures", "/organizations/{organization_id}/attribution-list",
                 "/disputes/{dispute_id}/decision", "/attribution/{member_id}", "/gaps/{member_id}/report"):
        assert path in doc["paths"]


def test_a_request_body_off_its_declared_schema_is_answered_400_naming_the_field(stack):
    port, token, sub = stack["worker"].web_port, stack["tokens"]["ORG-A"], stack["subs"]["ORG-A"]
    url = stack["receivers"]["ORG-A"].url
    dispute = {"member_id": "M1", "organization_id": "ORG-A", "kind": "add", "reason": "r", "submitted_by": "dr a"}
    refused = [
        ("/subscriptions", {"url": url, "event_types": "adt.*"}, "event_types"),  # a string, not a list
        ("/subscriptions", {"url": url, "event_type": ["adt.*"]}, "event_type"),  # misspelt: not ignored
        (f"/subscriptions/{sub}/rotate-secret", {"overlap_s": True}, "overlap_s"),  # not a number of seconds
        ("/disputes", {**dispute, "member_id": ["M1"]}, "member_id"),  # not stored as the text "['M1']"
        ("/disputes", {**dispute, "npi": 1234567893}, "npi"),
        ("/disputes", {**dispute, "kind": "maybe"}, "kind"),
    ]
    for path, body, field in refused:
        status, answer = call(port, path, body, token=token)
        assert status == 400 and field in answer["error"], (path, body, status, answer)
    assert call(port, "/disputes", token=token)[1] == []
    assert len(call(port, "/subscriptions", token=token)[1]) == 1  # none of them was created


def test_alerts_reach_only_the_attributed_organization_and_each_token_sees_only_its_own(stack):
    port, tokens, subs, receivers = (stack["worker"].web_port, stack["tokens"], stack["subs"], stack["receivers"])
    asyncio.run(publish(stack["bootstrap"], [alert(f"scope-{i}", "ORG-A", f"MA{i}") for i in range(3)]))
    wait_for(lambda: len(received(receivers["ORG-A"])) >= 3, 30, message="ORG-A's alerts")
    time.sleep(1)
    assert received(receivers["ORG-B"]) == []
    # Different members' events may overtake each other; their numbers have no holes.
    assert sorted(e["events_since_subscription_start"] for e in received(receivers["ORG-A"]))[:3] == [1, 2, 3]

    a, b = tokens["ORG-A"], tokens["ORG-B"]
    assert [s["id"] for s in call(port, "/subscriptions", token=b)[1]] == [subs["ORG-B"]]
    mine = f"/subscriptions/{subs['ORG-A']}"
    wid = received(receivers["ORG-A"])[0]["webhook_id"]
    for path, body in [(mine, None), (f"{mine}/$status", None), (f"{mine}/$events?from=1&to=10", None),
                       (f"{mine}/messages/{wid}", None), (f"{mine}/messages/{wid}/resend", {}),
                       (f"{mine}/redeliver", {"since": "2020-01-01T00:00:00Z"}), (f"{mine}/pause", {}),
                       (f"{mine}/rotate-secret", {}), ("/alerts/scope-0", None),
                       ("/organizations/ORG-A/attribution-list", None)]:
        assert call(port, path, body, token=b)[0] == 404, path  # B cannot see, replay or change A's
    assert call(port, mine, token="gst_not-a-token")[0] == 401
    assert call(port, mine)[0] == 401
    assert call(port, "/members/MA0/disclosures", token=a)[0] == 403  # the plan-level role only
    assert call(port, "/alerts/scope-0", token=a)[1]["member_id"] == "MA0"
    assert len(received(receivers["ORG-B"])) == 0


def test_recovery_status_events_resend_and_redeliver_keep_the_webhook_ids(stack):
    port, token, sub = stack["worker"].web_port, stack["tokens"]["ORG-B"], stack["subs"]["ORG-B"]
    receiver = stack["receivers"]["ORG-B"]
    asyncio.run(publish(stack["bootstrap"], [alert(f"rec-{i}", "ORG-B", f"MB{i}") for i in range(3)]))
    wait_for(lambda: len(received(receiver)) >= 3, 30, message="ORG-B's alerts")
    status = call(port, f"/subscriptions/{sub}/$status", token=token)[1]
    assert (status["events_since_subscription_start"], status["last_delivered_event_number"]) == (3, 3)
    events = call(port, f"/subscriptions/{sub}/$events?from=2&to=3", token=token)[1]
    assert [e["event_number"] for e in events] == [2, 3]
    first = received(receiver)[0]["webhook_id"]
    assert call(port, f"/subscriptions/{sub}/messages/{first}/resend", {}, token=token)[0] == 202
    wait_for(lambda: len(received(receiver)) >= 4, 30, message="the resent message")
    assert received(receiver)[3]["webhook_id"] == first
    assert call(port, f"/subscriptions/{sub}/redeliver", {"since": "2020-01-01T00:00:00Z"}, token=token)[1] == {
        "queued": 3}
    wait_for(lambda: len(received(receiver)) >= 7, 30, message="everything since T again")
    assert {e["webhook_id"] for e in received(receiver)} == {e["webhook_id"] for e in received(receiver)[:3]}
    assert call(port, f"/subscriptions/{sub}/ping", {}, token=token)[0] == 202
    wait_for(lambda: received(receiver, "ping"), 30, message="the ping")


def test_the_sink_and_dispatcher_processes_killed_are_started_again_and_alerts_flow_on(stack):
    worker, receiver = stack["worker"], stack["receivers"]["ORG-A"]
    killed = {pid: name for pid, name in worker.children().items() if name == "sinks" or name.startswith("dispatcher")}
    assert "sinks" in killed.values() and "dispatcher-0" in killed.values()
    for pid in killed:
        os.kill(pid, signal.SIGKILL)

    def started_again() -> bool:
        now = worker.children()
        return not set(now) & set(killed) and sorted(killed.values()) == sorted(
            n for n in now.values() if n == "sinks" or n.startswith("dispatcher"))
    wait_for(started_again, 60, message="the killed processes started again")
    asyncio.run(publish(stack["bootstrap"], [alert("after-kill", "ORG-A", "MK9")]))
    wait_for(lambda: any(e["data"]["alert_id"] == "after-kill" for e in received(receiver)), 60,
             message="an alert through the new processes")


def test_a_worker_killed_while_retries_are_pending_delivers_everything_after_restart(stack):
    port, token = stack["worker"].web_port, stack["tokens"]["ORG-A"]
    flaky = Receiver(script=[500] * 1000).start()
    status, created = call(port, "/subscriptions", {"url": flaky.url, "event_types": ["adt.*"]}, token=token)
    flaky.secret = created["secret"]
    asyncio.run(publish(stack["bootstrap"], [alert(f"kill-{i}", "ORG-A", f"MK{i}") for i in range(5)]))
    wait_for(lambda: len({r.headers["webhook-id"] for r in flaky.requests}) >= 5, 30, message="first attempts")
    before = {r.headers["webhook-id"] for r in flaky.requests}
    os.kill(stack["worker"].process.pid, signal.SIGKILL)
    stack["worker"].process.wait(10)
    flaky.script.clear()  # the endpoint recovers while the worker is down
    stack["worker"] = start_worker(stack["bootstrap"], stack["data_dir"], GAPSTREAM_WEBHOOK_SCHEDULE_S=SCHEDULE)
    port = stack["worker"].web_port

    def sub_status() -> dict:
        return call(port, f"/subscriptions/{created['id']}/$status", token=token)[1]

    wait_for(lambda: sub_status()["delivered"] == 5, 60, message="everything delivered after the restart")
    assert {r.headers["webhook-id"] for r in flaky.requests} == before  # the same ids, none new
    assert {json.loads(r.body)["data"]["alert_id"] for r in flaky.requests} == {f"kill-{i}" for i in range(5)}
