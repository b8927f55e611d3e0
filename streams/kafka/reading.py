"""Reading partitions to their end.

The end is where the consumer's fetch reports it (librdkafka's partition EOF), not what a
ListOffsets query returns: the embedded Tansu broker answers that query with the base offset of the
last record batch plus one, so a batch of several records looks like one, and a reader stopping
there misses the rest.
"""
from __future__ import annotations

import time
from collections.abc import Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from streams.kafka.broker import SilentLogger


class ReadTimeout(RuntimeError):
    pass


def eof_consumer(bootstrap: str, group_id: str, **extra: object) -> Consumer:
    """A consumer outside any group's offsets that reports reaching the end of each partition."""
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group_id, "enable.auto.commit": False,
                     "enable.partition.eof": True, "logger": SilentLogger(), **extra})


def read_to_end(bootstrap: str, topic: str, partitions: list[int] | None = None,
                timeout_s: float = 60.0) -> Iterator[Message]:
    """Every message of ``partitions`` (default all) from the beginning to the end as it is now."""
    consumer = eof_consumer(bootstrap, f"{topic}-reader")
    try:
        if partitions is None:
            partitions = list(consumer.list_topics(topic, timeout=timeout_s).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        remaining, deadline = set(partitions), time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                raise ReadTimeout(f"{topic} partitions {sorted(remaining)} not read to the end in {timeout_s:.0f} s")
            for message in consumer.consume(5000, timeout=0.2):
                error = message.error()
                if error is None:
                    yield message
                elif error.code() == KafkaError._PARTITION_EOF:
                    remaining.discard(message.partition())
                else:
                    raise ReadTimeout(f"{topic}[{message.partition()}]: {error.str()}")
    finally:
        consumer.close()
