"""The SQL batch sink on a real broker and SQLite: a provider tombstone removes the provider and
the sink goes on writing attribution changes (it used to stop at the first tombstone)."""
import time

from confluent_kafka import Producer

from sinks.sql.batch_sink import TABLE_FEEDS, SqlBatchSink
from sinks.sql.store import Store
from streams import topics
from streams.kafka.clients import producer_config
from streams.models import AttributionChange, Provider
from streams.serialization.codec import codec_for
from tests.helpers import wait_for


def test_a_provider_tombstone_deletes_it_and_later_changes_are_still_stored(broker, tmp_path):
    store, codec = Store(f"sqlite:///{tmp_path / 'g.db'}"), codec_for(None)
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
