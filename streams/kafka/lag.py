"""Consumer lag, measured from outside the consumers.

Each consumer group's committed offsets are compared with the partitions' high watermarks. This is
asked of the broker at scrape time, not taken from the consumers themselves, so a consumer that is
stuck or dead shows its lag growing instead of the last figure it reported. Lag in seconds is the
age of the oldest message not yet committed (its broker timestamp), read by a probe consumer that
never joins a group. Offsets are what the delivery contract commits after the work is stored, so
this is the backlog a restart would process again.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaException, TopicPartition
from prometheus_client.core import GaugeMetricFamily

from streams.kafka.clients import SilentLogger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Group:
    group_id: str
    topics: tuple[str, ...]


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    messages: int
    seconds: float


class LagProbe:
    """Prometheus collector of ``gapstream_consumer_lag_messages`` and ``_seconds`` per group, topic
    and partition. Measured at most every ``max_age_s``: a scrape should not cost a round of broker
    requests per partition each time."""

    def __init__(self, bootstrap: str, groups: list[Group], partitions: int, max_age_s: float = 10.0,
                 timeout_s: float = 5.0):
        self._bootstrap, self._groups, self._partitions = bootstrap, groups, partitions
        self._max_age_s, self._timeout_s = max_age_s, timeout_s
        self._lock = threading.Lock()
        self._measured_at = 0.0
        self._last: list[PartitionLag] = []
        self._consumers: dict[str, Consumer] = {}

    def _consumer(self, group_id: str) -> Consumer:
        # A consumer with the group's id that never subscribes: it reads the group's commits without joining.
        if group_id not in self._consumers:
            self._consumers[group_id] = Consumer({
                "bootstrap.servers": self._bootstrap, "group.id": group_id, "enable.auto.commit": False,
                "enable.partition.eof": False, "logger": SilentLogger()})
        return self._consumers[group_id]

    def measure(self) -> list[PartitionLag]:
        with self._lock:
            if time.monotonic() - self._measured_at < self._max_age_s:
                return self._last
            try:
                self._last = self._measure()
            except KafkaException as exc:  # the broker is briefly away: report nothing rather than stale figures
                log.warning("measuring consumer lag failed: %s", exc)
                self._last = []
            self._measured_at = time.monotonic()
            return self._last

    def _measure(self) -> list[PartitionLag]:
        found: list[tuple[str, TopicPartition, int]] = []  # group, partition at its position, lag
        for group in self._groups:
            consumer = self._consumer(group.group_id)
            wanted = [TopicPartition(t, p) for t in group.topics for p in range(self._partitions)]
            for tp in consumer.committed(wanted, timeout=self._timeout_s):
                low, high = consumer.get_watermark_offsets(tp, timeout=self._timeout_s)
                # Nothing committed yet: the group starts from the earliest offset.
                position = low if tp.offset == OFFSET_INVALID or tp.offset < low else tp.offset
                at = TopicPartition(tp.topic, tp.partition, position)
                found.append((group.group_id, at, max(0, high - position)))
        ages = self._ages([tp for _, tp, lag in found if lag > 0])
        return [PartitionLag(g, tp.topic, tp.partition, lag, ages.get((tp.topic, tp.partition, tp.offset), 0.0))
                for g, tp, lag in found]

    def _ages(self, positions: list[TopicPartition]) -> dict[tuple[str, int, int], float]:
        """Seconds since the broker stored the message at each position."""
        if not positions:
            return {}
        probe = self._consumer("gapstream-lag-probe")
        wanted = {(tp.topic, tp.partition, tp.offset) for tp in positions}
        ages: dict[tuple[str, int, int], float] = {}
        probe.assign(positions)
        try:
            deadline = time.monotonic() + self._timeout_s
            while len(ages) < len(wanted) and time.monotonic() < deadline:
                for message in probe.consume(len(wanted), timeout=0.2):
                    key = (message.topic(), message.partition(), message.offset())
                    if message.error() is None and key in wanted:
                        ages[key] = max(0.0, time.time() - message.timestamp()[1] / 1000)
        finally:
            probe.unassign()
        return ages

    def collect(self):
        messages = GaugeMetricFamily("gapstream_consumer_lag_messages",
                                     "Messages not yet committed by the consumer group",
                                     labels=["group", "topic", "partition"])
        seconds = GaugeMetricFamily("gapstream_consumer_lag_seconds",
                                    "Age of the oldest message not yet committed by the consumer group",
                                    labels=["group", "topic", "partition"])
        for lag in self.measure():
            labels = [lag.group, lag.topic, str(lag.partition)]
            messages.add_metric(labels, lag.messages)
            seconds.add_metric(labels, lag.seconds)
        yield messages
        yield seconds

    def close(self) -> None:
        for consumer in self._consumers.values():
            consumer.close()
        self._consumers.clear()
