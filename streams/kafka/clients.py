"""Settings every confluent-kafka client of gapstream shares, in one place."""
from __future__ import annotations

from typing import Any

from confluent_kafka import Producer

from streams.kafka.broker import SilentLogger


def producer_config(bootstrap: str, **extra: Any) -> dict[str, Any]:
    """Acknowledged by every replica, never duplicated by a retry, partitioned like Faust."""
    return {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        # murmur2 is what the Java client and aiokafka (Faust) use: the same key lands on the same
        # partition whichever client wrote it, which co-partitioned state depends on.
        "partitioner": "murmur2_random",
        "logger": SilentLogger(),
        **extra,
    }


def group_consumer_config(bootstrap: str, group_id: str, max_poll_interval_s: float, **extra: Any) -> dict[str, Any]:
    """A consumer-group member that commits its own offsets after its work is stored.

    librdkafka joins with ``max.poll.interval.ms`` as the rebalance timeout, and the embedded broker
    holds a first join that long (300 s by default), so callers set it just above the longest gap
    between two polls (a batch, a partition's recovery)."""
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "max.poll.interval.ms": int(max_poll_interval_s * 1000),
        # The broker answers a fetch at once when data is there; with none, a message arriving at a
        # trickle waits out this long-poll, librdkafka's 500 ms by default.
        "fetch.wait.max.ms": 50,
        "logger": SilentLogger(),
        **extra,
    }


def produce(producer: Producer, topic: str, key: bytes | None, value: bytes, partition: int | None = None) -> None:
    """Hand a write to librdkafka, waiting for room when its local queue is full."""
    extra = {} if partition is None else {"partition": partition}
    while True:
        try:
            producer.produce(topic, key=key, value=value, **extra)
            return
        except BufferError:  # let librdkafka deliver some first
            producer.poll(0.05)
