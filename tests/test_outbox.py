"""Who receives an alert, the numbered outbox the dispatcher works from, the results of attempts,
recovery and the accounting of disclosures, on real SQLite and PostgreSQL."""
import json
import threading
import time

import pytest

from sinks.sql.outbox import AttemptResult, Shard, webhook_id
from sinks.sql.subscriptions import Spec, SubscriptionError
from sinks.webhooks.retries import Decision, Result
from streams.models import Alert, AttributionChange, Diagnosis, GapInfo


def alert(alert_id="a1", org="ORG1", member="M1", alert_type="adt.ed_visit", **fields):
    now = int(time.time() * 1000)
    return Alert(alert_id=alert_id, alert_type=alert_type, facility="F", event_type="A04", received_at_ms=now,
                 created_at_ms=now, member_id=member, organization_id=org, **fields)


def gap(measure="FMC", status="open"):
    return GapInfo(gap_id=f"{measure}|F|V1", measure_id=measure, measure_title="t", trigger_id="F|V1", status=status,
                   window_start="2026-03-01", due="2026-03-08")


def subscribe(store, org="ORG1", url="http://127.0.0.1:9/hook", **spec):
    try:
        store.subscriptions.organization(org)
    except SubscriptionError:
        store.subscriptions.add_organization(org, org, "test")
    described, _ = store.subscriptions.create(org, Spec(url=url, **spec), "test")
    return described["id"]


def bodies(store, sub):
    return [json.loads(d.body) for d in sorted(store.deliveries(), key=lambda d: d.event_number or 0)
            if d.subscription_id == sub]


def claim(store, now=None, slots=4, busy=()):
    return store.outbox.claim_due((now or time.time()) + 1, 30, {}, slots, busy).jobs


def test_an_alert_stored_twice_is_queued_once_and_events_are_numbered_without_holes(store):
    sub = subscribe(store)
    assert store.outbox.save_alerts([alert("a1")]) == 1
    assert store.outbox.save_alerts([alert("a1")]) == 0  # a redelivered Kafka message
    assert store.outbox.save_alerts([alert("a2")]) == 1
    assert [b["events_since_subscription_start"] for b in bodies(store, sub)] == [1, 2]
    assert {d.webhook_id for d in store.deliveries()} == {webhook_id("a1", sub), webhook_id("a2", sub)}
    assert store.outbox.status(sub)["events_since_subscription_start"] == 2


def test_a_batch_fans_out_each_alert_to_its_own_organization_in_order(store):
    one, two = subscribe(store, "ORG1"), subscribe(store, "ORG2")
    store.subscriptions.add_organization("PLAN", "PLAN", "test")
    store.subscriptions.set_plan_level("PLAN", True, "reviewer", "care management contract")
    plan = subscribe(store, "PLAN", scope="plan")
    batch = [alert("a1", org="ORG1"), alert("a2", org="ORG2"), alert("a1", org="ORG1"), alert("a3", org="ORG1"),
             alert("a4", org=None)]
    assert store.outbox.save_alerts(batch) == 3 + 4  # each to its organization once, and all to the plan
    assert [b["data"]["alert_id"] for b in bodies(store, one)] == ["a1", "a3"]
    assert [b["data"]["alert_id"] for b in bodies(store, two)] == ["a2"]
    assert [(b["data"]["alert_id"], b["events_since_subscription_start"]) for b in bodies(store, plan)] == [
        ("a1", 1), ("a2", 2), ("a3", 3), ("a4", 4)]


def test_a_replayed_alert_is_not_fanned_out_again_to_who_qualifies_since(store):
    first = subscribe(store, "ORG1")
    store.outbox.save_alerts([alert("a1", org="ORG1")])
    later = subscribe(store, "ORG1", url="http://127.0.0.1:10/hook")
    subscribe(store, "ORG2")
    assert store.outbox.save_alerts([alert("a1", org="ORG2")]) == 0  # replayed after the member moved to ORG2
    assert {(d.subscription_id, d.alert_id) for d in store.deliveries()} == {(first, "a1")}
    assert later not in {d.subscription_id for d in store.deliveries()}


def test_only_the_attributed_organization_and_granted_plan_level_subscriptions_receive(store):
    mine = subscribe(store, "ORG1")
    other = subscribe(store, "ORG2")
    subscribe(store, "PLAN", scope="attributed")  # a plan org without the role sees only its attributed members
    with pytest.raises(SubscriptionError, match="plan-level role"):
        subscribe(store, "PLAN", scope="plan")
    store.subscriptions.set_plan_level("PLAN", True, "reviewer", "care management contract")
    plan = subscribe(store, "PLAN", scope="plan")
    store.outbox.save_alerts([alert("a1", org="ORG1")])
    store.outbox.save_alerts([alert("a2", org=None, member="M2")])  # attributed to nobody
    got = {(d.subscription_id, d.alert_id) for d in store.deliveries()}
    assert got == {(mine, "a1"), (plan, "a1"), (plan, "a2")}
    assert other not in {s for s, _ in got}
    assert [e["action"] for e in store.subscriptions.audit("PLAN")] == [
        "organization.added", "plan_level.granted"]
    store.subscriptions.set_plan_level("PLAN", False, "reviewer", "contract ended")
    store.outbox.save_alerts([alert("a3", org=None, member="M3")])
    assert not any(d.alert_id == "a3" for d in store.deliveries())
    # A cancellation of what the plan was sent while it held the role still reaches it; another
    # member's alert in the same batch does not.
    store.outbox.save_alerts([alert("a1-cancel", org="ORG1", alert_type="adt.cancelled", cancels_alert_id="a1",
                                    cancels_alert_type="adt.ed_visit"), alert("a4", org=None, member="M4")])
    assert {d.alert_id for d in store.deliveries() if d.subscription_id == plan} == {"a1", "a2", "a1-cancel"}


def test_event_types_and_filters_choose_what_a_subscription_receives(store):
    adt = subscribe(store, event_types=("adt.*",))
    cbp_only = subscribe(store, event_types=("gap.*",), filters={"measures": ["CBP"]})
    other_facility = subscribe(store, filters={"facilities": ["ELSEWHERE"]})
    store.outbox.save_alerts([alert("a1")])
    store.outbox.save_alerts([alert("g1", alert_type="gap.opened", gap=gap("CBP"))])
    store.outbox.save_alerts([alert("g2", alert_type="gap.opened", gap=gap("FMC"))])
    got = sorted((d.subscription_id, d.alert_id) for d in store.deliveries())
    assert got == sorted([(adt, "a1"), (cbp_only, "g1")])
    assert other_facility


def test_payload_formats(store):
    full = subscribe(store, payload_format="json-full")
    thin = subscribe(store, payload_format="json-thin")
    store.outbox.save_alerts([alert("a1", cohorts=["high_risk@2026.1"])])
    [f], [t] = bodies(store, full), bodies(store, thin)
    assert f["type"] == "adt.ed_visit" and f["data"]["cohorts"] == ["high_risk@2026.1"]
    assert t["data"] == {"alert_id": "a1", "alert_type": "adt.ed_visit", "member_id": "M1", "organization_id": "ORG1",
                         "facility": "F", "visit_number": None, "occurred_at": None}
    assert store.outbox.alert_for("ORG1", "a1")["cohorts"] == ["high_risk@2026.1"]  # what a thin payload points to
    assert store.outbox.alert_for("ORG2", "a1") is None  # never sent to ORG2


def test_a_cancellation_goes_to_exactly_who_was_told_of_the_alert_it_withdraws(store):
    told = subscribe(store, "ORG1", event_types=("adt.ed_visit",))  # asked for ED visits only
    store.outbox.save_alerts([alert("visit")])
    later = subscribe(store, "ORG1", url="http://127.0.0.1:10/hook")  # created after: never told of the visit
    other = subscribe(store, "ORG2", url="http://127.0.0.1:11/hook")  # the member is attributed there now
    cancel = alert("cancel", org="ORG2", alert_type="adt.cancelled", cancels_alert_id="visit",
                   cancels_alert_type="adt.ed_visit")
    assert store.outbox.save_alerts([cancel]) == 1
    assert [(b["type"], b["data"].get("cancels_alert_id")) for b in bodies(store, told)] == [
        ("adt.ed_visit", None), ("adt.cancelled", "visit")]
    assert bodies(store, later) == [] and bodies(store, other) == []
    same_batch = [alert("visit2"), alert("cancel3", alert_type="adt.cancelled", cancels_alert_id="visit2",
                                         cancels_alert_type="adt.ed_visit")]  # caught up: both in one batch
    assert store.outbox.save_alerts(same_batch) == 4  # the visit and its cancellation, to both of ORG1's
    for sub in (told, later):
        assert [b["data"]["alert_id"] for b in bodies(store, sub)][-2:] == ["visit2", "cancel3"]
    never_sent = alert("cancel2", alert_type="adt.cancelled", cancels_alert_id="unknown",
                       cancels_alert_type="adt.admit")
    assert store.outbox.save_alerts([never_sent]) == 0


def test_part2_events_are_withheld_without_consent_and_recorded(store):
    org1, org2 = subscribe(store, "ORG1"), subscribe(store, "ORG2", scope="attributed")
    sud = alert("a1", diagnoses=[Diagnosis(code="F10.20")])
    store.outbox.save_alerts([sud])
    assert store.deliveries() == []
    [withheld] = store.outbox.disclosures("M1")
    assert (withheld["outcome"], withheld["organization_id"]) == ("withheld", "ORG1")
    assert "42 CFR Part 2" in withheld["reason"] and "F10" not in withheld["reason"]
    store.subscriptions.record_consent("M1", "ORG1", "plan:privacy-office")
    store.outbox.save_alerts([alert("a2", diagnoses=[Diagnosis(code="F11.10")])])
    assert [(d.subscription_id, d.alert_id) for d in store.deliveries()] == [(org1, "a2")]
    # An ordinary ED alert listing an open FUA gap: the gap is left out for an organization without consent.
    store.outbox.save_alerts([alert("a3", member="M2", org="ORG2", open_gaps=[gap("FUA-7"), gap("FMC")])])
    [b] = [b for b in bodies(store, org2)]
    assert [g["measure_id"] for g in b["data"]["open_gaps"]] == ["FMC"]
    assert [g["measure_id"] for g in store.outbox.alert_for("ORG2", "a3")["open_gaps"]] == ["FMC"]


def test_claims_are_leased_limited_per_endpoint_and_one_per_member_at_a_time(store):
    slow = subscribe(store, url="http://127.0.0.1:9/slow")
    fast = subscribe(store, url="http://127.0.0.1:10/fast")
    for i in range(6):
        store.outbox.save_alerts([alert(f"a{i}", member=f"M{i}")])
    store.outbox.save_alerts([alert("b", member="M0")])  # M0's second event
    now = time.time() + 1
    jobs = store.outbox.claim_due(now, 30, {"http://127.0.0.1:9": 2}, 3).jobs
    per_sub = {s: [j for j in jobs if j.subscription_id == s] for s in (slow, fast)}
    assert (len(per_sub[slow]), len(per_sub[fast])) == (2, 3)
    assert all(len([j for j in per_sub[s] if j.member_id == "M0"]) <= 1 for s in (slow, fast))
    assert store.outbox.claim_due(now, 30, {"http://127.0.0.1:9": 0, "http://127.0.0.1:10": 0}, 3).jobs == []
    taken = {j.webhook_id for j in jobs}
    again = store.outbox.claim_due(now, 30, {}, 100, busy={(j.subscription_id, j.member_id) for j in jobs})
    assert not taken & {j.webhook_id for j in again.jobs}  # leased: nobody sends them twice meanwhile
    # M0's second event waits behind the first: the end of the first is what makes it claimable.
    assert again.held == {(slow, "M0"), (fast, "M0")}
    resting = store.outbox.claim_due(now + 31, 30, {}, 100, resting={slow}).jobs  # lease over; one rests
    assert {j.subscription_id for j in resting} == {fast}
    assert taken <= {j.webhook_id for j in resting} | {j.webhook_id for j in store.outbox.claim_due(now + 31, 30, {},
                                                                                                     100).jobs}


def test_dispatchers_share_the_endpoints_each_endpoint_going_to_one_of_them(store):
    urls = [f"http://127.0.0.1:{port}/hook" for port in range(9000, 9012)]
    for url in urls:
        subscribe(store, url=url)
    for i in range(3):
        store.outbox.save_alerts([alert(f"a{i}", member=f"M{i}")])
    now = time.time() + 1
    shards = [store.outbox.claim_due(now, 30, {}, 100, shard=Shard(i, 3)).jobs for i in range(3)]
    endpoints = [{j.endpoint for j in jobs} for jobs in shards]
    assert all(endpoints), "a dispatcher was left without endpoints"
    assert not (endpoints[0] & endpoints[1] or endpoints[0] & endpoints[2] or endpoints[1] & endpoints[2])
    # Between them, every delivery once: 3 alerts to 12 endpoints.
    ids = [j.webhook_id for jobs in shards for j in jobs]
    assert len(ids) == len(set(ids)) == 36


def result(job, outcome, status=None, retry_at=None):
    return AttemptResult(job, Result(status_code=status, error=None if status else "timeout"),
                         Decision(outcome, retry_at), 1.0, time.time())


def test_the_backlog_counts_alert_deliveries_waiting_for_active_subscriptions_only(store):
    active = subscribe(store, url="http://127.0.0.1:9/hook")
    paused = subscribe(store, url="http://127.0.0.1:10/hook")
    store.subscriptions.set_status("ORG1", paused, "paused", "test")  # its backlog waits on purpose
    for i in range(3):
        store.outbox.save_alerts([alert(f"a{i}", member=f"M{i}")])
    store.outbox.ping(active)  # not about an alert
    [first] = [j for j in claim(store) if j.alert_id == "a0"]
    store.outbox.record([result(first, "delivered", 204)])
    oldest = min(d.created_at for d in store.deliveries() if d.subscription_id == active and d.alert_id != "a0")
    assert store.outbox.backlog() == (2, oldest)


def test_exhaustion_and_gone_endpoints_tell_the_organizations_other_channels(store):
    hook = subscribe(store, url="http://127.0.0.1:9/hook", event_types=("adt.*",))
    ops = subscribe(store, url="http://127.0.0.1:10/ops", event_types=("delivery.*", "endpoint.*"))
    store.outbox.save_alerts([alert("a1")])
    [job] = claim(store)
    assert store.outbox.record([result(job, "retry", 500, time.time() + 60)]) == 0
    assert store.outbox.status(hook)["failing_since"] is not None
    [job] = claim(store, time.time() + 61)
    assert store.outbox.record([result(job, "exhausted", 500)]) == 1
    [notice] = bodies(store, ops)
    assert notice["type"] == "delivery.exhausted" and notice["data"]["webhook_id"] == job.webhook_id
    assert "member_id" not in json.dumps(notice)
    store.outbox.save_alerts([alert("a2")])
    job = next(j for j in claim(store) if j.subscription_id == hook)
    store.outbox.record([result(job, "gone", 410)])
    status = store.outbox.status(hook)
    assert (status["status"], status["exhausted"], status["pending"]) == ("disabled", 1, 1)
    assert [b["type"] for b in bodies(store, ops)] == ["delivery.exhausted", "endpoint.disabled"]
    assert not any(j.subscription_id == hook for j in claim(store, time.time() + 100))  # disabled: not sent
    store.subscriptions.set_status("ORG1", hook, "active", "test")  # the organization fixed it
    assert [j.webhook_id for j in claim(store) if j.subscription_id == hook] == [job.webhook_id]


def test_deliveries_exhausted_together_are_each_told_to_their_own_organization_only(store):
    hooks = {org: subscribe(store, org=org, url=f"http://127.0.0.1:{port}/hook", event_types=("adt.*",))
             for org, port in (("ORG1", 9), ("ORG2", 11))}
    ops = {org: subscribe(store, org=org, url=f"http://127.0.0.1:{port}/ops", event_types=("delivery.*",))
           for org, port in (("ORG1", 10), ("ORG2", 12))}
    store.outbox.save_alerts([alert(f"{org}-{i}", org=org, member=f"{org}-M{i}") for org in ("ORG1", "ORG2")
                              for i in range(3)])
    jobs = [j for j in claim(store) if j.subscription_id in hooks.values()]
    assert store.outbox.record([result(j, "exhausted", 500) for j in jobs]) == 6
    for org in ("ORG1", "ORG2"):
        told = bodies(store, ops[org])
        assert {b["data"]["webhook_id"] for b in told} == {j.webhook_id for j in jobs if j.organization_id == org}
        assert [b["events_since_subscription_start"] for b in told] == [1, 2, 3]
        assert bodies(store, hooks[org]) and all(b["type"] == "adt.ed_visit" for b in bodies(store, hooks[org]))


def test_an_endpoint_failing_longer_than_allowed_is_disabled(store):
    store.outbox.disable_after_s = 0.0
    hook = subscribe(store)
    store.outbox.save_alerts([alert("a1")])
    [job] = claim(store)
    store.outbox.record([result(job, "retry", None, time.time() + 5)])
    assert store.outbox.status(hook)["status"] == "disabled"


def test_resend_and_redeliver_since_keep_the_webhook_ids(store):
    sub = subscribe(store)
    for i in range(3):
        store.outbox.save_alerts([alert(f"a{i}", member=f"M{i}")])
    store.outbox.record([result(j, "delivered", 200) for j in claim(store)])
    assert claim(store) == []
    first = webhook_id("a0", sub)
    assert store.outbox.resend(sub, first) == 1
    assert [j.webhook_id for j in claim(store)] == [first]
    assert store.outbox.resend(sub, None, since=0) == 3
    assert {j.webhook_id for j in claim(store, time.time() + 100)} == {webhook_id(f"a{i}", sub) for i in range(3)}
    assert [e["event_number"] for e in store.outbox.events(sub, 2, 3)] == [2, 3]


def test_heartbeats_go_to_idle_subscriptions_once_per_period_and_are_not_counted(store):
    sub = subscribe(store, heartbeat_period_s=60)
    subscribe(store, url="http://127.0.0.1:10/quiet")  # asked for none
    now = time.time()
    assert store.outbox.queue_heartbeats(now) == 0  # just created: not idle yet
    assert store.outbox.queue_heartbeats(now + 61) == 1
    assert store.outbox.queue_heartbeats(now + 62) == 0
    [beat] = bodies(store, sub)
    assert beat["type"] == "heartbeat" and beat["data"] == {"events_since_subscription_start": 0}
    assert "events_since_subscription_start" not in beat  # not an event of its own


def test_secret_rotation_signs_with_both_until_the_overlap_ends(store):
    sub = subscribe(store)
    store.outbox.save_alerts([alert("a1")])
    [before] = claim(store)
    new, _ = store.subscriptions.rotate_secret("ORG1", sub, "test", overlap_s=60)
    [during] = claim(store, time.time() + 31)
    assert during.secrets == (new, before.secrets[0])
    [after] = claim(store, time.time() + 120)
    assert after.secrets == (new,)
    assert "secret.rotated" in [e["action"] for e in store.subscriptions.audit(sub)]


def test_another_organizations_subscription_is_not_found(store):
    sub = subscribe(store, "ORG1")
    store.subscriptions.add_organization("ORG2", "Two", "test")
    for call in (lambda: store.subscriptions.get("ORG2", sub),
                 lambda: store.subscriptions.rotate_secret("ORG2", sub, "x"),
                 lambda: store.subscriptions.set_status("ORG2", sub, "paused", "x"),
                 lambda: store.subscriptions.change("ORG2", sub, {"url": "http://127.0.0.1:9/x"}, "x")):
        with pytest.raises(SubscriptionError, match="no subscription"):
            call()
    assert store.subscriptions.of("ORG2") == []


def test_the_dispatchers_of_the_endpoints_queued_for_are_told_once_the_deliveries_can_be_claimed(store):
    from sinks.sql.models import endpoint_hash

    subscribe(store, "ORG1", url="http://127.0.0.1:9/hook", event_types=("adt.*", "attribution.*"))
    subscribe(store, "ORG1", url="http://127.0.0.1:9/other")
    subscribe(store, "ORG2", url="http://127.0.0.1:10/hook", event_types=("adt.*", "attribution.*"))
    told = []
    store.outbox.on_queued = lambda hashes: told.append((hashes, {j.endpoint for j in claim(store)}))
    store.outbox.save_alerts([alert("a1", org="ORG1")])
    store.outbox.save_alerts([alert("a1", org="ORG1")])  # queues nothing: no one is told
    store.outbox.notify_attribution([AttributionChange(
        member_id="M2", rule="r", reason="r", effective_date="2026-05-01", explanation="{}", changed_at_ms=1,
        old_organization_id=None, new_organization_id="ORG2", method_id="m")])
    assert told == [({endpoint_hash("http://127.0.0.1:9")}, {"http://127.0.0.1:9"}),
                    ({endpoint_hash("http://127.0.0.1:10")}, {"http://127.0.0.1:10"})]


def test_attribution_changes_are_told_to_the_organization_gained_and_the_one_left(store):
    a = subscribe(store, "ORG-A", event_types=("attribution.changed",))
    b = subscribe(store, "ORG-B", url="http://127.0.0.1:10/hook", event_types=("attribution.*", "adt.*"))
    subscribe(store, "ORG-C", url="http://127.0.0.1:11/hook", event_types=("adt.*",))

    def change(member, old, new, old_npi=None, new_npi="1000000001", at=1):
        return AttributionChange(member_id=member, rule="plurality", reason="most visits", effective_date="2026-05-01",
                                 explanation="{}", changed_at_ms=at, old_organization_id=old, new_organization_id=new,
                                 old_npi=old_npi, new_npi=new_npi, method_id="primary-care-visits")

    changes = [change("M1", None, "ORG-A"), change("M2", "ORG-A", "ORG-B", "1000000001", "1000000002"),
               change("M3", "ORG-A", "ORG-A", "1000000001", "1000000003"), change("M4", "ORG-C", "ORG-C", at=2)]
    assert store.outbox.notify_attribution(changes) == 4
    assert store.outbox.notify_attribution(changes) == 0  # a replayed batch
    told = {sub: [(b["data"]["member_id"], b["data"]["attributed"], b["data"].get("npi")) for b in bodies(store, sub)]
            for sub in (a, b)}
    assert told == {a: [("M1", True, "1000000001"), ("M2", False, None), ("M3", True, "1000000003")],
                    b: [("M2", True, "1000000002")]}
    assert all("ORG-B" not in json.dumps(body) for body in bodies(store, a))  # the one left is not told where to
    assert sorted((d["organization_id"], d["event_type"]) for d in store.outbox.disclosures("M2")) == [
        ("ORG-A", "attribution.changed"), ("ORG-B", "attribution.changed")]


def test_attribution_notices_and_alerts_fanned_out_at_once_do_not_deadlock(store):
    """The attribution sink and the alert sink write the same subscriptions' event counters at the
    same time; each takes its row locks in one order (PostgreSQL would otherwise abort one with a
    deadlock, and its batch would wait for a retry)."""
    orgs = [f"ORG-{n}" for n in range(6)]
    for n, org in enumerate(orgs):
        subscribe(store, org, url=f"http://127.0.0.1:{20 + n}/hook", event_types=("*",))
    failures: list[BaseException] = []

    def guarded(work):
        def run():
            try:
                work()
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                failures.append(exc)
        return run

    def notices():
        for i in range(60):  # each batch touches the organizations in the reverse of the alerts' order
            store.outbox.notify_attribution([AttributionChange(
                member_id=f"M{i}-{k}", rule="plurality", reason="r", effective_date="2026-05-01", explanation="{}",
                changed_at_ms=i, old_organization_id=None, new_organization_id=org, old_npi=None, new_npi="1",
                method_id="m") for k, org in enumerate(reversed(orgs))])

    def alerts():
        for i in range(60):
            store.outbox.save_alerts([alert(f"a{i}-{k}", org=org, member=f"N{i}") for k, org in enumerate(orgs)])

    threads = [threading.Thread(target=guarded(work)) for work in (notices, alerts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
    numbers = sorted(d.event_number for d in store.deliveries() if d.organization_id == "ORG-0")
    assert numbers == list(range(1, 121))  # every event of both sinks counted once, none skipped
