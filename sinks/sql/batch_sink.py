"""Topics → SQL, in batches: attribution changes (current answer and history), the provider
directory (for reports), member cohorts (for alerts), and the alerts themselves, routed into the
outbox (sinks/routing.py).

A consumer of its own (not a Faust agent): it commits offsets only after a batch is written, so
the tables are at-least-once, and the idempotent writes make a replayed batch harmless. Batching
is why it exists: one consumer call and one commit per few hundred messages instead of per message.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from sqlalchemy.exc import InterfaceError, OperationalError

from sinks.routing import record_attribution, route
from sinks.sql.store import Store
from streams import topics
from streams.deadletters import BadInput, dead_letter, where
from streams.kafka.admin import ensure_topics
from streams.kafka.clients import group_consumer_config, producer_config
from streams.metrics import MESSAGES_IN, PROCESSING
from streams.models import Alert, AttributionChange, CohortMembership, Provider
from streams.serialization.codec import AvroCodec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Feed:
    topic: str
    record: type
    # Idempotent, in order, one transaction.
    write_many: Callable[[Store, list[Any]], object]
    # A compacted topic whose tombstones (no value) delete: write_many then takes (key, record or
    # None) pairs. Elsewhere a message without a value is bad input.
    keyed: bool = False


# The bulk: tables the member processor's decisions feed, and its gap alerts.
TABLE_FEEDS = (Feed(topics.ATTRIBUTION_CHANGES, AttributionChange, record_attribution),
               Feed(topics.PROVIDERS, Provider, lambda s, rows: s.directory.apply_many(rows), keyed=True),
               Feed(topics.COHORTS, CohortMembership, lambda s, rows: s.cohorts.record_many(rows)),
               Feed(topics.GAP_ALERTS, Alert, route))
# ADT alerts, latency-sensitive: a consumer of their own, so they do not queue behind bulk batches.
ALERT_FEEDS = (Feed(topics.ALERTS, Alert, route),)


class SqlBatchSink:
    def __init__(self, bootstrap: str, group_id: str, feeds: tuple[Feed, ...], store: Store, codec: AvroCodec,
                 partitions: int, batch_size: int = 500):
        self._bootstrap, self._partitions = bootstrap, partitions
        self._consumer = Consumer(group_consumer_config(bootstrap, group_id, max_poll_interval_s=15))
        self._producer = Producer(producer_config(bootstrap))
        self._feeds, self._store = {f.topic: f for f in feeds}, store
        self._codec, self._batch = codec, batch_size
        self._timer = PROCESSING.labels(agent=group_id)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sql-sink-{group_id}", daemon=True)

    def start(self) -> None:
        # Subscribing to a topic that does not exist yet would wait for librdkafka's next metadata
        # refresh (minutes); the worker may not have created it yet.
        ensure_topics(self._bootstrap, list(self._feeds), self._partitions)
        self._consumer.subscribe(list(self._feeds))
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
        self._consumer.close()
        self._producer.flush(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            # What is there now, at once; else the first message to arrive (a batch call would sit
            # out its whole timeout waiting for the batch to fill).
            batch = self._consumer.consume(self._batch, timeout=0) or self._consumer.consume(1, timeout=0.2)
            messages = [m for m in batch if not m.error()]
            if not messages:
                continue
            started = time.perf_counter()
            try:
                self._store_batch(messages)
            except Exception as exc:  # the database is down, or a bug: retry the same batch, never skip it
                log.error("could not store a batch of %d messages, retrying: %s", len(messages), where(exc))
                self._rewind(messages)
                self._stop.wait(2.0)
                continue
            try:
                self._consumer.commit(asynchronous=False)
            except KafkaException as exc:  # partitions moved to another worker: it stores them again, harmlessly
                log.warning("could not commit a stored batch: %s", exc)
            per_message = (time.perf_counter() - started) / len(messages)
            for _ in messages:
                self._timer.observe(per_message)

    def _store_batch(self, messages: list[Message]) -> None:
        """Writes each feed's messages."""
        batches: dict[str, list[tuple[Message, Any]]] = {topic: [] for topic in self._feeds}
        for message in messages:
            feed = self._feeds[message.topic()]
            MESSAGES_IN.labels(topic=feed.topic + ":sql").inc()
            try:
                batches[feed.topic].append((message, self._decode(feed, message)))
            except BadInput as exc:
                if feed.topic != topics.PROVIDERS:  # providers: dead-lettered by the attribution flow
                    self._dead_letter(message, exc.reason, exc.detail)
        for topic, pairs in batches.items():
            if pairs:
                self._write(self._feeds[topic], pairs)
        if len(self._producer):
            self._producer.flush(30)  # dead letters stored before the offsets move past them

    def _write(self, feed: Feed, pairs: list[tuple[Message, Any]]) -> None:
        try:
            feed.write_many(self._store, [record for _, record in pairs])
        except (OperationalError, InterfaceError):
            raise  # the database is unreachable or locked: the whole batch is tried again
        except Exception as exc:
            if len(pairs) > 1:  # find the message that fails: the writes are idempotent, so again is harmless
                for pair in pairs:
                    self._write(feed, [pair])
                return
            log.error("could not store a message from %s: %s", feed.topic, where(exc))
            self._dead_letter(pairs[0][0], "processing_error", f"{type(exc).__name__}: {exc}")

    def _dead_letter(self, message: Message, reason: str, detail: str) -> None:
        record = dead_letter(message.topic(), reason, detail, message.value())
        self._producer.produce(topics.DLQ, self._codec.encode(record))

    def _rewind(self, messages: list[Message]) -> None:
        first: dict[tuple[str, int], int] = {}
        for message in messages:
            first.setdefault((message.topic(), message.partition()), message.offset())
        for (topic, partition), offset in first.items():
            try:
                self._consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException:  # no longer ours: its new owner reads on from the committed offset
                pass

    def _decode(self, feed: Feed, message: Message) -> Any:
        value = message.value()
        if value is None and not feed.keyed:
            raise BadInput("missing_value", f"a {feed.topic} message must have a value")
        record = self._codec.decode(value, feed.record) if value is not None else None
        return ((message.key() or b"").decode(), record) if feed.keyed else record
