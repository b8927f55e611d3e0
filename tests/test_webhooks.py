"""Signed webhook delivery to a real HTTP endpoint on loopback, with retries."""
import asyncio
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from sinks.sql.store import Store
from sinks.webhooks.dispatcher import Dispatcher
from sinks.webhooks.payloads import alert_body
from sinks.webhooks.signing import new_secret, signed_headers
from streams.models import Alert
from tests.helpers import Receiver


def test_signature_verifies_with_the_reference_library():
    secret = new_secret()
    headers = signed_headers(secret, "msg_1", '{"a":1}')
    assert Webhook(secret).verify('{"a":1}', headers) == {"a": 1}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify('{"a":2}', headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify('{"a":1}', headers)


def make_alert(alert_id: str) -> Alert:
    now = int(time.time() * 1000)
    return Alert(alert_id=alert_id, alert_type="adt.ed_visit", facility="F", event_type="A04",
                 received_at_ms=now, created_at_ms=now, member_id="M1", organization_id="ORG1")


async def deliver(tmp_path, receiver: Receiver, alerts: int = 1, **kwargs) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'g.db'}")
    secret = new_secret()
    store.add_subscription("ORG1", receiver.url, secret)
    receiver.secret = secret
    for i in range(alerts):
        store.save_alert(make_alert(f"a{i}"), alert_body)
    dispatcher = Dispatcher(store, kwargs.pop("timeout_s", 2.0), kwargs.pop("max_attempts", 4), (0.1, 0.2),
                            poll_interval_s=0.05, **kwargs)
    task = asyncio.create_task(dispatcher.run())
    try:
        for _ in range(200):
            if all(d.status != "pending" for d in store.deliveries()):
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await dispatcher.close()
    return store


async def test_500_then_200_is_retried_under_the_same_webhook_id(tmp_path):
    receiver = Receiver(script=[500, 503]).start()
    store = await deliver(tmp_path, receiver)
    [delivery] = store.deliveries()
    assert delivery.status == "delivered" and delivery.attempts == 3
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert ids == {delivery.webhook_id}
    for r in receiver.requests:  # every attempt is signed anew and verifies
        Webhook(receiver.secret).verify(r.body, r.headers)
    assert [a.status_code for a in store.attempts(delivery.webhook_id)] == [500, 503, 200]


async def test_a_4xx_answer_is_not_retried(tmp_path):
    receiver = Receiver(script=[400]).start()
    store = await deliver(tmp_path, receiver)
    [delivery] = store.deliveries()
    assert (delivery.status, delivery.attempts, len(receiver.requests)) == ("failed", 1, 1)


async def test_a_timeout_is_retried_and_the_attempts_give_up_at_the_limit(tmp_path):
    receiver = Receiver(delay_s=1.0).start()
    store = await deliver(tmp_path, receiver, timeout_s=0.2, max_attempts=2)
    [delivery] = store.deliveries()
    assert (delivery.status, delivery.attempts) == ("failed", 2)
    assert [a.outcome for a in store.attempts(delivery.webhook_id)] == ["timeout", "timeout"]


async def test_refused_connection_is_recorded(tmp_path):
    receiver = Receiver()  # never started: nothing listens on its port
    store = await deliver(tmp_path, receiver, max_attempts=1)
    [delivery] = store.deliveries()
    assert delivery.status == "failed"
    assert store.attempts(delivery.webhook_id)[0].outcome == "connection_error"
