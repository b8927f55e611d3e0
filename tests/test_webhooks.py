"""Signed webhook delivery to real HTTP endpoints on loopback: retries, Retry-After, 410, isolation
of a hanging endpoint, secret rotation, SSRF refusals and the FHIR notification payload."""
import asyncio
import contextlib
import email.utils
import ipaddress
import json
import random
import time

import pytest
from aiosmtpd.controller import Controller
from fhir.resources.R4B.bundle import Bundle
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from sinks.email import Mailer
from sinks.sql.email_notices import MAX_ATTEMPTS
from sinks.sql.sealing import Sealer
from sinks.sql.store import Store
from sinks.sql.subscriptions import Spec, SubscriptionError
from sinks.webhooks.dispatcher import Dispatcher
from sinks.webhooks.egress import Egress, EgressRefused, forbidden
from sinks.webhooks.retries import DEFAULT_SCHEDULE_S, Result, decide, retry_after_s
from sinks.webhooks.signing import new_secret, signed_headers
from streams.kafka.broker import free_port
from streams.models import Alert, Diagnosis, Patient
from tests.helpers import Receiver

FAST = (0, 0.05, 0.1, 0.1)


def test_signature_verifies_with_the_reference_library():
    secret = new_secret()
    headers = signed_headers(secret, "msg_1", '{"a":1}')
    assert Webhook(secret).verify('{"a":1}', headers) == {"a": 1}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify('{"a":2}', headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify('{"a":1}', headers)


def test_during_rotation_either_secret_verifies():
    old, new = new_secret(), new_secret()
    headers = signed_headers([new, old], "msg_1", '{"a":1}')
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(old).verify('{"a":1}', headers) == Webhook(new).verify('{"a":1}', headers) == {"a": 1}
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify('{"a":1}', headers)


# -- the retry schedule, without a network --------------------------------------------------------
def test_the_default_schedule_and_its_jitter():
    rng = random.Random(7)
    assert DEFAULT_SCHEDULE_S == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    for made, base in enumerate(DEFAULT_SCHEDULE_S[1:], start=1):
        d = decide(Result(status_code=500), made, 1000.0, rng=rng)
        assert d.outcome == "retry" and base * 0.8 <= d.retry_at - 1000.0 <= base * 1.2
    assert decide(Result(status_code=500), len(DEFAULT_SCHEDULE_S), 0.0).outcome == "exhausted"


@pytest.mark.parametrize("result,outcome", [
    (Result(status_code=204), "delivered"), (Result(status_code=410), "gone"), (Result(status_code=302), "retry"),
    (Result(status_code=400), "retry"), (Result(error="timeout"), "retry"), (Result(error="refused"), "retry")])
def test_what_an_answer_means(result, outcome):
    assert decide(result, 1, 0.0).outcome == outcome


def test_retry_after_is_honoured_on_429_and_503_only():
    assert decide(Result(status_code=429, retry_after="120"), 1, 0.0).retry_at == 120
    http_date = email.utils.formatdate(1000.0 + 60, usegmt=True)
    assert decide(Result(status_code=503, retry_after=http_date), 1, 1000.0).retry_at == pytest.approx(1060.0)
    assert decide(Result(status_code=500, retry_after="120"), 1, 0.0).retry_at < 10
    assert retry_after_s("10000000", 0) == 24 * 3600  # capped
    assert retry_after_s("soon", 0) is None


# -- SSRF ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                                     "100.64.0.1", "224.0.0.1", "0.0.0.0", "::1", "fd00::1", "fe80::1",
                                     "::ffff:10.0.0.1"])
def test_non_public_addresses_are_refused(address):
    assert forbidden(ipaddress.ip_address(address)) is not None


def test_public_addresses_pass():
    assert forbidden(ipaddress.ip_address("93.184.216.34")) is None
    assert forbidden(ipaddress.ip_address("2606:2800:220:1::1")) is None


def resolver(table):
    return lambda host, port: table[host]


@pytest.mark.parametrize("url,why", [
    ("http://example.org/hook", "only https"),
    ("https://127.0.0.1/hook", "loopback"),
    ("https://10.0.0.5/hook", "private"),
    ("https://169.254.169.254/latest/meta-data", "link-local"),
    ("https://[::1]/hook", "loopback"),
    ("https://[fd00::5]/hook", "unique-local"),
    ("https://100.64.1.1/hook", "carrier-grade NAT"),
    ("https://internal.example/hook", "private"),
    ("https://user:pw@example.org/hook", "credentials"),
])
def test_registration_refuses_urls_that_reach_inside(url, why):
    egress = Egress([], resolver({"internal.example": ["10.9.8.7"], "example.org": ["93.184.216.34"]}))
    with pytest.raises(EgressRefused, match=why):
        egress.check(url)


def test_a_name_resolving_to_loopback_is_refused_unless_allow_listed():
    with pytest.raises(EgressRefused, match="loopback"):
        Egress([]).check("https://localhost/hook")  # the system resolver
    assert Egress(["localhost"]).check("http://localhost:8080/hook") == "http://localhost:8080"


async def test_send_time_resolution_is_checked_again_and_pinned():
    answers = {"hooks.example": ["93.184.216.34"]}
    egress = Egress([], resolver(answers))
    egress.check("https://hooks.example/h")
    target = await egress.target("https://hooks.example/h?x=1")
    assert (target.connect_url, target.host_header) == ("https://93.184.216.34:443/h?x=1", "hooks.example")
    answers["rebound.example"] = ["10.0.0.1"]  # a name that now points inside
    with pytest.raises(EgressRefused, match="private"):
        await egress.target("https://rebound.example/h")


# -- delivery to real endpoints --------------------------------------------------------------------
def make_alert(alert_id: str, member: str = "M1", alert_type: str = "adt.ed_visit", **fields) -> Alert:
    now = int(time.time() * 1000)
    return Alert(alert_id=alert_id, alert_type=alert_type, facility="F", event_type="A04",
                 received_at_ms=now, created_at_ms=now, member_id=member, organization_id="ORG1", **fields)


def new_store(tmp_path, allowed=("127.0.0.1",)) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'g.db'}", Sealer.generate(), egress=Egress(allowed))
    store.subscriptions.add_organization("ORG1", "One", "test")
    return store


def subscribe(store, receiver: Receiver, **spec) -> str:
    described, receiver.secret = store.subscriptions.create("ORG1", Spec(url=receiver.url, **spec), "test")
    return described["id"]


async def run_until(store: Store, done, wait_s: float = 20.0, schedule=FAST, request_timeout_s: float = 2.0,
                    poll_interval_s: float = 0.05, grace_s: float = 1.0, **kwargs) -> None:
    dispatcher = Dispatcher(store.outbox, store.subscriptions.egress, request_timeout_s, schedule,
                            poll_interval_s=poll_interval_s, **kwargs)
    task = asyncio.create_task(dispatcher.run())
    try:
        deadline = time.monotonic() + wait_s
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"the dispatcher did not get there in {wait_s:g} s")
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await dispatcher.close(grace_s)


def settled(store):
    return lambda: all(d.status != "pending" for d in store.deliveries())


async def test_500_then_200_is_retried_under_the_same_webhook_id(tmp_path):
    receiver = Receiver(script=[500, 503]).start()
    store = new_store(tmp_path)
    subscribe(store, receiver)
    store.outbox.save_alerts([make_alert("a1")])
    await run_until(store, settled(store))
    [delivery] = store.deliveries()
    assert delivery.status == "delivered" and delivery.attempts == 3
    assert {r.headers["webhook-id"] for r in receiver.requests} == {delivery.webhook_id}
    for r in receiver.requests:  # every attempt is signed anew and verifies
        Webhook(receiver.secret).verify(r.body, r.headers)
    assert [a.status_code for a in store.outbox.attempts(delivery.webhook_id)] == [500, 503, 200]


@pytest.mark.parametrize("slots", [1, 4])
async def test_what_a_finished_delivery_makes_due_goes_out_at_once_not_at_the_next_poll(tmp_path, slots):
    """The dispatcher claims again after a delivery only when that can find something: the endpoint
    was at its limit, the member's next event waited behind it, or the attempt failed with an
    immediate retry. Each of these is sent at once here; the poll, once a minute, would be too late."""
    receiver = Receiver(script=[(503, {"Retry-After": "0"})]).start()
    store = new_store(tmp_path)
    subscribe(store, receiver)
    store.outbox.save_alerts([make_alert("a1"), make_alert("a2"), make_alert("a3", member="M2")])
    await run_until(store, settled(store), wait_s=10, poll_interval_s=60, endpoint_concurrency=slots)
    assert sorted(d.attempts for d in store.deliveries()) == [1, 1, 2]
    assert len(receiver.requests) == 4


async def test_429_waits_as_long_as_retry_after_says(tmp_path):
    receiver = Receiver(script=[(429, {"Retry-After": "1"})]).start()
    store = new_store(tmp_path)
    subscribe(store, receiver)
    store.outbox.save_alerts([make_alert("a1")])
    await run_until(store, settled(store))
    first, second = receiver.requests
    assert second.at - first.at >= 0.95  # the schedule alone would have retried after 0.05 s


async def test_410_disables_the_endpoint_and_a_redirect_is_not_followed(tmp_path):
    gone = Receiver(script=[410]).start()
    moved = Receiver(script=[(302, {"Location": "http://10.0.0.1/steal"})] * 10).start()
    store = new_store(tmp_path)
    gone_id, moved_id = subscribe(store, gone), subscribe(store, moved)
    store.outbox.save_alerts([make_alert("a1")])
    store.outbox.save_alerts([make_alert("a2")])  # the same member's: sent after the first
    store.outbox.save_alerts([make_alert("a3", member="M2")])  # another member's: claimed while a1 is sent
    await run_until(store, lambda: len(moved.requests) >= 3, wait_s=10, endpoint_concurrency=1)
    assert len(gone.requests) == 1 and store.outbox.status(gone_id)["status"] == "disabled"
    assert store.outbox.status(gone_id)["pending"] == 3  # kept for when the organization enables it again
    outcomes = {a.outcome for d in store.deliveries() if d.subscription_id == moved_id
                for a in store.outbox.attempts(d.webhook_id)}
    assert outcomes == {"http_3xx"}  # a failure, retried; the Location was never requested


class Mailbox:
    """An SMTP server on loopback (aiosmtpd) keeping what it is sent."""

    def __init__(self):
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's handler protocol
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@contextlib.contextmanager
def smtp_server():
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, f"smtp://127.0.0.1:{port}"
    finally:
        controller.stop()


async def test_a_disabled_endpoint_is_told_by_email_without_member_data(tmp_path):
    gone = Receiver(script=[410]).start()
    store = new_store(tmp_path)
    store.subscriptions.set_notice_email("ORG1", "integration@org1.example", "test")
    sub = subscribe(store, gone)
    store.outbox.save_alerts([make_alert("a1", member="MEMBER-7")])
    with smtp_server() as (mailbox, url):
        await run_until(store, lambda: [e.status for e in store.emails.all()] == ["sent"], heartbeat_check_s=0.1,
                        emails=store.emails, mailer=Mailer(url, "gapstream@plan.example"))
    [message] = mailbox.messages
    assert (message["To"], message["From"]) == ("integration@org1.example", "gapstream@plan.example")
    assert sub in message["Subject"]
    text = message.get_payload()
    assert "410" in text and f"/subscriptions/{sub}/resume" in text and "MEMBER-7" not in text
    assert [(e.status, e.attempts) for e in store.emails.all()] == [("sent", 1)]


def test_an_email_the_server_refuses_is_retried_later_then_given_up(tmp_path):
    store = new_store(tmp_path)
    store.subscriptions.set_notice_email("ORG1", "ops@org1.example", "test")
    with store.emails._session.begin() as s:
        assert store.emails.queue(s, "ORG1", "subject", "body", 0.0)
    now = 1000.0
    for attempt in range(1, MAX_ATTEMPTS + 1):
        due = store.emails.claim(now)
        assert store.emails.claim(now) is None  # leased: not sent twice meanwhile
        store.emails.record(due, "SMTPRecipientsRefused", now)
        [kept] = store.emails.all()
        assert kept.attempts == attempt and kept.next_attempt_at >= now + 60  # a minute at least
        now = kept.next_attempt_at
    assert (kept.status, kept.last_error) == ("failed", "SMTPRecipientsRefused")
    store.subscriptions.add_organization("ORG2", "Two", "test")
    with store.emails._session.begin() as s:
        assert not store.emails.queue(s, "ORG2", "subject", "body", 0.0)  # no address: nothing queued
    with pytest.raises(SubscriptionError):
        store.subscriptions.set_notice_email("ORG1", "not an address", "test")


async def test_a_410_disables_its_own_subscription_not_the_others_on_the_endpoint(tmp_path):
    shared = Receiver(script=[410]).start()  # the first request of either subscription is refused
    store = new_store(tmp_path)
    first, second = (subscribe(store, shared, event_types=("adt.*",)) for _ in range(2))  # alerts only
    store.outbox.save_alerts([make_alert(f"a{i}", member=f"M{i}") for i in range(3)])

    def statuses():
        return {sid: store.outbox.status(sid) for sid in (first, second)}

    # Within less than a lease: the other subscription's deliveries are not held back by the 410.
    await run_until(store, lambda: sorted(s["delivered"] for s in statuses().values()) == [0, 3], wait_s=5,
                    endpoint_concurrency=1)
    gone, kept = sorted(statuses().values(), key=lambda s: s["delivered"])
    assert (gone["status"], kept["status"]) == ("disabled", "active")
    assert len(shared.requests) == 4  # the refused one, then the other subscription's three


async def test_exhausted_deliveries_are_kept_and_reported(tmp_path):
    down = Receiver(script=[500] * 10).start()
    ops = Receiver().start()
    store = new_store(tmp_path)
    down_id = subscribe(store, down, event_types=("adt.*",))
    subscribe(store, ops, event_types=("delivery.exhausted",))
    store.outbox.save_alerts([make_alert("a1")])
    await run_until(store, lambda: len(ops.requests) >= 1)
    assert len(down.requests) == len(FAST)
    assert store.outbox.status(down_id)["exhausted"] == 1
    notice = json.loads(ops.requests[0].body)
    Webhook(ops.secret).verify(ops.requests[0].body, ops.requests[0].headers)
    assert notice["type"] == "delivery.exhausted" and notice["data"]["attempts"] == len(FAST)


async def test_a_notice_that_runs_out_itself_is_not_told_in_turn(tmp_path):
    # Two subscriptions on one dead endpoint, each told when the other's deliveries run out.
    down = Receiver(script=[500] * 100).start()
    store = new_store(tmp_path)
    for _ in range(2):
        subscribe(store, down, event_types=("adt.*", "delivery.exhausted"))
    store.outbox.save_alerts([make_alert("a1")])
    settled = lambda: len(store.deliveries()) >= 4 and all(d.status == "exhausted" for d in store.deliveries())  # noqa: E731
    await run_until(store, settled, wait_s=10.0)
    # The alert to each, and to each the notice that the other's ran out: then nothing more.
    assert sorted(d.event_type for d in store.deliveries()) == ["adt.ed_visit"] * 2 + ["delivery.exhausted"] * 2
    assert len(down.requests) == 4 * len(FAST)


async def test_a_stop_lets_a_request_in_flight_finish_so_it_is_not_sent_again(tmp_path):
    receiver = Receiver(delay_s=1.0).start()
    store = new_store(tmp_path)
    subscribe(store, receiver)
    store.outbox.save_alerts([make_alert("a1")])
    await run_until(store, lambda: receiver.requests, grace_s=5.0)  # stopped while the receiver answers
    [delivery] = store.deliveries()
    assert delivery.status == "delivered" and len(receiver.requests) == 1


async def test_a_hanging_endpoint_does_not_hold_up_a_healthy_one(tmp_path):
    hanging = Receiver(delay_s=30).start()
    healthy = Receiver().start()
    store = new_store(tmp_path)
    subscribe(store, hanging)
    healthy_id = subscribe(store, healthy)
    for i in range(40):
        store.outbox.save_alerts([make_alert(f"a{i}", member=f"M{i}")])
    healthy_done = lambda: store.outbox.status(healthy_id)["delivered"] == 40  # noqa: E731
    await run_until(store, healthy_done, endpoint_concurrency=4, request_timeout_s=15.0)
    assert healthy_done()
    # The hanging endpoint got only its own slots' worth, and none of them has answered yet.
    assert len(hanging.requests) == 4
    assert all(not store.outbox.attempts(d.webhook_id) for d in store.deliveries() if d.subscription_id != healthy_id)


async def test_a_failing_subscription_rests_instead_of_being_sent_every_waiting_delivery(tmp_path):
    down = Receiver(script=[503] * 100).start()
    healthy = Receiver().start()
    store = new_store(tmp_path)
    down_id, healthy_id = subscribe(store, down), subscribe(store, healthy)
    for i in range(12):
        store.outbox.save_alerts([make_alert(f"a{i}", member=f"M{i}")])
    dispatcher = Dispatcher(store.outbox, store.subscriptions.egress, 2.0, (0, 2.0, 2.0, 2.0), poll_interval_s=0.05)
    task = asyncio.create_task(dispatcher.run())
    try:
        until = time.monotonic() + 10
        while store.outbox.status(healthy_id)["delivered"] < 12 and time.monotonic() < until:
            await asyncio.sleep(0.05)
        # Its first answers put the subscription to rest: of the deliveries waiting for it, none was
        # sent meanwhile, nor did waiting spend any of their attempts.
        assert len(down.requests) == 4
        assert sorted(d.attempts for d in store.deliveries() if d.subscription_id == down_id) == [0] * 8 + [1] * 4
        while len(down.requests) < 8 and time.monotonic() < until:
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await dispatcher.close()
    # After the rest (as long as a first retry waits), sending resumes and finds the endpoint still down.
    assert len(down.requests) == 8 and down.requests[4].at - down.requests[3].at >= 1.8


async def test_an_endless_answer_is_read_only_up_to_the_bound(tmp_path):
    """A 200 whose body never ends counts as delivered once the bound is read, well before the timeout."""
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            while True:
                writer.write(b"4000\r\n" + b"x" * 0x4000 + b"\r\n")
                await writer.drain()
                await asyncio.sleep(0.01)

    server = await asyncio.start_server(endless, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = new_store(tmp_path)
    store.subscriptions.create("ORG1", Spec(url=f"http://127.0.0.1:{port}/hook"), "test")
    store.outbox.save_alerts([make_alert("a1")])
    async with server:
        await run_until(store, settled(store), wait_s=10, request_timeout_s=5.0)
    [delivery] = store.deliveries()
    [attempt] = store.outbox.attempts(delivery.webhook_id)
    assert delivery.status == "delivered" and attempt.duration_ms < 2_000


async def test_sends_are_signed_with_both_secrets_during_rotation(tmp_path):
    receiver = Receiver().start()
    store = new_store(tmp_path)
    sub = subscribe(store, receiver)
    old = receiver.secret
    new, _ = store.subscriptions.rotate_secret("ORG1", sub, "test", overlap_s=3600)
    store.outbox.save_alerts([make_alert("a1")])
    await run_until(store, settled(store))
    [request] = receiver.requests
    assert Webhook(old).verify(request.body, request.headers) == Webhook(new).verify(request.body, request.headers)


async def test_a_refused_address_at_send_time_is_a_failed_attempt(tmp_path):
    receiver = Receiver().start()
    store = new_store(tmp_path)
    sub = subscribe(store, receiver)
    store.subscriptions.egress = Egress([])  # the operator took loopback off the allow-list
    store.outbox.save_alerts([make_alert("a1")])
    await run_until(store, lambda: any(store.outbox.attempts(d.webhook_id) for d in store.deliveries()),
                    wait_s=5, schedule=(0, 30))
    [delivery] = store.deliveries()
    [attempt] = store.outbox.attempts(delivery.webhook_id)
    assert attempt.outcome == "refused" and "only https" in attempt.error
    assert receiver.requests == [] and store.outbox.status(sub)["pending"] == 1


async def test_a_dispatcher_without_the_key_holds_deliveries_back_for_one_that_has_it(tmp_path):
    from prometheus_client import REGISTRY

    def unsignable() -> float:
        return REGISTRY.get_sample_value("gapstream_webhook_unsignable_total") or 0.0

    receiver = Receiver().start()
    store = new_store(tmp_path)
    subscribe(store, receiver)
    store.outbox.save_alerts([make_alert("a1")])
    # A worker whose GAPSTREAM_SECRET_KEYS lacks the key (midway through a rolling key rotation, say).
    wrong_keys = Store(f"sqlite:///{tmp_path / 'g.db'}", Sealer.generate(), migrate=False,
                       egress=Egress(["127.0.0.1"]))
    held = unsignable()
    await run_until(wrong_keys, lambda: unsignable() > held, wait_s=10)  # counted for the operator
    [delivery] = store.deliveries()
    # Nothing sent unsigned, no attempt spent: the delivery keeps its whole retry schedule.
    assert receiver.requests == [] and delivery.status == "pending" and delivery.attempts == 0
    assert store.outbox.attempts(delivery.webhook_id) == []
    # Not even leased: a dispatcher with the key takes it at once.
    [job] = store.outbox.claim_due(time.time(), 30, {}, 4).jobs
    assert job.webhook_id == delivery.webhook_id


async def test_fhir_notifications_are_valid_da_vinci_bundles(tmp_path):
    receiver = Receiver().start()
    store = new_store(tmp_path)
    subscribe(store, receiver, event_types=("adt.*",), payload_format="fhir")
    store.outbox.save_alerts([make_alert("a1", patient_class="E", occurred_at="2026-11-20T08:15:00-05:00",
                                       visit_number="V1", patient=Patient(family_name="Doe", birth_date="1950-02-03",
                                                                          sex="F"),
                                       diagnoses=[Diagnosis(code="I10", description="Hypertension")])])
    await run_until(store, settled(store))
    [request] = receiver.requests
    assert request.headers["Content-Type"] == "application/fhir+json"
    Webhook(receiver.secret).verify(request.body, request.headers)
    bundle = Bundle.model_validate_json(request.body)
    header, patient, encounter, *_ = [e.resource for e in bundle.entry]
    assert bundle.type == "message" and header.eventCoding.code == "notification-admit"
    assert header.focus[0].reference == bundle.entry[2].fullUrl and encounter.class_fhir.code == "EMER"
    assert patient.birthDate.isoformat() == "1950-02-03" and header.extension[0].valueInteger == 1
    assert encounter.status == "in-progress"
    store.outbox.save_alerts([make_alert("a2", alert_type="adt.cancelled", patient_class="E", visit_number="V1",
                                         cancels_alert_id="a1", cancels_alert_type="adt.ed_visit")])
    await run_until(store, settled(store))
    withdrawn = Bundle.model_validate_json(receiver.requests[1].body)  # the hospital's A11
    header, _, encounter, *_ = [e.resource for e in withdrawn.entry]
    assert (header.eventCoding.code, encounter.status) == ("notification-admit", "entered-in-error")
    with pytest.raises(SubscriptionError, match="ADT events only"):
        store.subscriptions.create("ORG1", Spec(url=receiver.url, event_types=("gap.*",), payload_format="fhir"), "t")


async def test_heartbeats_reach_an_idle_subscriber(tmp_path):
    receiver = Receiver().start()
    store = new_store(tmp_path)
    subscribe(store, receiver, heartbeat_period_s=1)
    await run_until(store, lambda: len(receiver.requests) >= 2, wait_s=10, heartbeat_check_s=0.1)
    beats = [json.loads(r.body) for r in receiver.requests]
    assert {b["type"] for b in beats} == {"heartbeat"}
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == len(beats)  # each beat its own message
