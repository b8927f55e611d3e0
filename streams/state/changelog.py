"""A compacted topic holding the latest value of every key of a processor's state.

Its partitions mirror the input partitions: the state of input partition ``p`` is written to and
recovered from changelog partition ``p``, so whichever worker is assigned ``p`` can rebuild it.
"""
from __future__ import annotations

from confluent_kafka import Producer

from streams.kafka.admin import ensure_topics
from streams.kafka.clients import produce
from streams.kafka.reading import read_to_end


class Changelog:
    def __init__(self, bootstrap: str, topic: str, partitions: int):
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions

    def ensure(self) -> None:
        ensure_topics(self.bootstrap, [self.topic], self.partitions, config={"cleanup.policy": "compact"})

    def write(self, producer: Producer, partition: int, key: str, value: bytes) -> None:
        produce(producer, self.topic, key.encode(), value, partition)

    def read(self, partitions: list[int], timeout_s: float = 60.0) -> dict[int, dict[str, bytes]]:
        """The latest value per key of each partition, up to its end as it is now."""
        values: dict[int, dict[str, bytes]] = {p: {} for p in partitions}
        for m in read_to_end(self.bootstrap, self.topic, partitions, timeout_s):
            values[m.partition()][m.key().decode()] = m.value()
        return values
