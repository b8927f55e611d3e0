"""Attribution changes → SQL, in batches.

A consumer of its own (not a Faust agent): it commits offsets only after a batch is written, so
the history is at-least-once, and the idempotent writes make a replayed batch harmless. Batching
is why it exists: one transaction per few hundred changes instead of one per change, and none of
that work on the worker's event loop.
"""
from __future__ import annotations

import logging
import threading

from confluent_kafka import Consumer, Producer, TopicPartition

from sinks.sql.store import Store
from streams import topics
from streams.deadletters import BadInput, dead_letter, where
from streams.kafka.admin import ensure_topics
from streams.kafka.clients import group_consumer_config, producer_config
from streams.metrics import MESSAGES_IN
from streams.models import AttributionChange
from streams.serialization.codec import AvroCodec

log = logging.getLogger(__name__)


class AttributionChangesSink:
    def __init__(self, bootstrap: str, group_id: str, store: Store, codec: AvroCodec, partitions: int,
                 batch_size: int = 500):
        self._bootstrap, self._partitions = bootstrap, partitions
        self._consumer = Consumer(group_consumer_config(bootstrap, group_id, max_poll_interval_s=15))
        self._producer = Producer(producer_config(bootstrap))
        self._store, self._codec, self._batch = store, codec, batch_size
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sql-attribution-sink", daemon=True)

    def start(self) -> None:
        # Subscribing to a topic that does not exist yet would wait for librdkafka's next metadata
        # refresh (minutes); the worker may not have created it yet.
        ensure_topics(self._bootstrap, [topics.ATTRIBUTION_CHANGES], self._partitions)
        self._consumer.subscribe([topics.ATTRIBUTION_CHANGES])
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
        self._consumer.close()
        self._producer.flush(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            messages = [m for m in self._consumer.consume(self._batch, timeout=0.5) if not m.error()]
            if not messages:
                continue
            changes = []
            for message in messages:
                MESSAGES_IN.labels(topic=topics.ATTRIBUTION_CHANGES + ":sql").inc()
                try:
                    changes.append(self._codec.decode(message.value(), AttributionChange))
                except BadInput as exc:
                    record = dead_letter(topics.ATTRIBUTION_CHANGES, exc.reason, exc.detail, message.value())
                    self._producer.produce(topics.DLQ, self._codec.encode(record))
            try:
                self._store.attribution.record_many(changes)
            except Exception as exc:  # the database is down: retry the same batch, never skip it
                log.error("could not store %d attribution changes, retrying: %s", len(changes), where(exc))
                first: dict[tuple[str, int], int] = {}
                for message in messages:
                    first.setdefault((message.topic(), message.partition()), message.offset())
                for (topic, partition), offset in first.items():
                    self._consumer.seek(TopicPartition(topic, partition, offset))
                self._stop.wait(2.0)
                continue
            self._consumer.commit(asynchronous=False)
