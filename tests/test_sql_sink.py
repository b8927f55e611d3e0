"""The SQL batch sinks on a real broker and SQLite: a provider tombstone removes the provider and
the sink goes on writing attribution changes (it used to stop at the first tombstone); an alert that
cannot be stored is dead-lettered with its reason and the alerts after it are stored."""
import time

from confluent_kafka import Producer
from sqlalchemy import update

from sinks.sql.batch_sink import ALERT_FEEDS, TABLE_FEEDS, SqlBatchSink
from sinks.sql.models import Subscription
from sinks.sql.sealing import Sealer
from sinks.sql.store import Store
from sinks.sql.subscriptions import Spec
from sinks.webhooks.egress import Egress
from streams import topics
from streams.kafka.clients import producer_config
from streams.models import Alert, AttributionChange, DeadLetter, Provider
from streams.serialization.codec import codec_for
from tests.helpers import read_topic, wait_for


def test_a_provider_tombstone_deletes_it_and_later_changes_are_still_stored(broker, tmp_path):
    store, codec = Store(f"sqlite:///{tmp_path / 'g.db'}", Sealer.generate()), codec_for(None)
    sink = SqlBatchSink(broker.bootstrap, "sink-test", TABLE_FEEDS, store, codec, partitions=1)
    sink.start()
    try:
        producer = Producer(producer_config(broker.bootstrap))
        for npi in ("1000000001", "1000000002"):
            producer.produce(topics.PROVIDERS, codec.encode(Provider(npi=npi, name=npi, role="SPECIALIST")),
                             key=npi.encode())
        producer.produce(topics.PROVIDERS, None, key=b"1000000001")  # removed from the directory
        producer.flush(10)
        wait_for(lambda: sorted(store.directory.all()) == ["1000000002"], 60, message="the tombstone applied")
        producer.produce(topics.ATTRIBUTION_CHANGES, codec.encode(AttributionChange(
            member_id="M1", new_organization_id="ORG-A", rule="plurality", reason="r", effective_date="2026-01-01",
            explanation="{}", changed_at_ms=int(time.time() * 1000))), key=b"M1")
        producer.flush(10)
        wait_for(lambda: store.attribution.current("M1"), 60, message="the change after the tombstone stored")
    finally:
        sink.stop()


def test_an_alert_that_cannot_be_stored_is_dead_lettered_and_the_next_ones_are_stored(broker, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'g.db'}", Sealer.generate(), egress=Egress(["127.0.0.1"]))
    codec = codec_for(None)
    for org in ("ORG-A", "ORG-B"):
        store.subscriptions.add_organization(org, org, "test")
        store.subscriptions.create(org, Spec(url="http://127.0.0.1:9/hook"), "test")
    with store.engine.begin() as connection:  # a subscription row someone broke by hand
        connection.execute(update(Subscription).where(Subscription.organization_id == "ORG-B")
                           .values(filters="{broken"))
    sink = SqlBatchSink(broker.bootstrap, "alert-sink-test", ALERT_FEEDS, store, codec, partitions=1)
    sink.start()
    try:
        producer = Producer(producer_config(broker.bootstrap))
        for alert_id, org in (("a1", "ORG-A"), ("a2", "ORG-B"), ("a3", "ORG-A")):
            producer.produce(topics.ALERTS, codec.encode(Alert(
                alert_id=alert_id, alert_type="adt.ed_visit", facility="F", event_type="A04", received_at_ms=1,
                created_at_ms=1, member_id="M1", organization_id=org)), key=b"M1")
        producer.flush(10)
        wait_for(lambda: {d.alert_id for d in store.deliveries()} == {"a1", "a3"}, 60,
                 message="the alerts before and after the broken one queued")
        letters = [codec.decode(m.value(), DeadLetter) for m in read_topic(broker.bootstrap, topics.DLQ)]
        assert [(d.source, d.reason) for d in letters] == [(topics.ALERTS, "processing_error")]
    finally:
        sink.stop()
