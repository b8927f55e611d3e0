"""A full copy of a small, keyed topic (the provider directory) on every worker.

Read from the beginning by a consumer outside any group; :meth:`catch_up` returns once the copy
holds everything the topic held when it was called, so a processor can wait for it before acting.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from streams.kafka.reading import ReadTimeout, eof_consumer


class GlobalTable:
    def __init__(self, bootstrap: str, topic: str, decode: Callable[[bytes], tuple[str, Any] | None]):
        """``decode`` turns a message into (key, value), or None to leave it out (invalid input is
        dead-lettered by whoever owns the topic's partitions, not by every copy). A tombstone (no
        value) removes its key."""
        self.topic, self._decode = topic, decode
        self.values: dict[str, Any] = {}
        self._consumer = eof_consumer(bootstrap, f"{topic}-global")
        parts = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        self._not_at_end = set(parts)

    def poll(self, timeout_s: float = 0.0) -> list[str]:
        """Read what has arrived; return the keys that changed."""
        changed = []
        for message in self._consumer.consume(1000, timeout=timeout_s):
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    self._not_at_end.discard(message.partition())
                continue
            if message.value() is None:
                if message.key() is not None and self.values.pop(message.key().decode(), None) is not None:
                    changed.append(message.key().decode())
                continue
            item = self._decode(message.value())
            if item is not None:
                self.values[item[0]] = item[1]
                changed.append(item[0])
        return changed

    def catch_up(self, timeout_s: float = 60.0) -> None:
        """Return once every partition has been read to its end (as of the first time it was reached)."""
        deadline = time.monotonic() + timeout_s
        while self._not_at_end:
            if time.monotonic() > deadline:
                raise ReadTimeout(f"{self.topic} not read to its end in {timeout_s:.0f} s")
            self.poll(0.2)

    def close(self) -> None:
        self._consumer.close()
