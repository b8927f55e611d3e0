"""Consumer lag, measured from outside the consumers.

Each consumer group's committed offsets are compared with the partitions' ends. This is asked of
the broker at scrape time, not taken from the consumers themselves, so a consumer that is stuck or
dead shows its lag growing instead of the last figure it reported. A probe consumer, which never
joins a group, fetches from each committed offset: the first message there gives the lag in
seconds (its broker timestamp), and the fetch answer gives the end. The end is not asked with a
ListOffsets query, which the embedded broker answers short (see streams/kafka/reading.py). Offsets
are what the delivery contract commits after the work is stored, so this is the backlog a restart
would process again.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from prometheus_client.core import GaugeMetricFamily

from streams.kafka.reading import eof_consumer
from streams.metrics import Measured


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
    seconds: float | None  # None when the oldest uncommitted message could not be read in time


class LagProbe:
    """Prometheus collector of ``gapstream_consumer_lag_messages`` and ``_seconds`` per group, topic
    and partition. Measured at most every ``max_age_s``, off the scrape (see Measured): a scrape
    should not cost a round of fetches each time, nor wait for one."""

    def __init__(self, bootstrap: str, groups: list[Group], partitions: int, max_age_s: float = 10.0,
                 timeout_s: float = 5.0):
        self._bootstrap, self._groups, self._partitions = bootstrap, groups, partitions
        self._timeout_s = timeout_s
        self._lock = threading.Lock()  # the probe's consumers serve one measurement at a time
        self._consumers: dict[str, Consumer] = {}
        self._served = Measured("consumer lag", self.measure, max_age_s, empty=[])

    def _consumer(self, group_id: str) -> Consumer:
        # A group's consumer that never subscribes reads the group's commits without joining it; the
        # probe's own id commits nothing.
        if group_id not in self._consumers:
            # A fetch at a partition's end answers at once rather than waiting for data to arrive:
            # a scrape should not wait half a second per group.
            self._consumers[group_id] = eof_consumer(self._bootstrap, group_id, **{"fetch.wait.max.ms": 10})
        return self._consumers[group_id]

    def measure(self) -> list[PartitionLag]:
        """The lag now, asking the broker."""
        with self._lock:
            return [lag for group in self._groups for lag in self._measure(group)]

    def _measure(self, group: Group) -> list[PartitionLag]:
        wanted = [TopicPartition(t, p) for t in group.topics for p in range(self._partitions)]
        committed = self._consumer(group.group_id).committed(wanted, timeout=self._timeout_s)
        # Nothing committed yet: the group starts from the beginning.
        starts = [TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING)
                  for tp in committed]
        probe = self._consumer("gapstream-lag-probe")
        heads = self._heads(probe, starts)
        found = []
        for (topic, partition), (position, age) in heads.items():
            _, end = probe.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            lag = max(0, end - position)
            found.append(PartitionLag(group.group_id, topic, partition, lag, age if lag else 0.0))
        return found

    def _heads(self, probe: Consumer, starts: list[TopicPartition]) -> dict[tuple[str, int], tuple[int, float | None]]:
        """Per partition, the first offset not yet committed and the age of the message there (None
        at the end). Each partition is paused once answered, so a long backlog on one does not
        crowd out the others; partitions not answered in time are left out."""
        heads: dict[tuple[str, int], tuple[int, float | None]] = {}
        probe.assign(starts)
        try:
            deadline = time.monotonic() + self._timeout_s
            while len(heads) < len(starts) and time.monotonic() < deadline:
                for message in probe.consume(len(starts), timeout=0.2):
                    key = (message.topic(), message.partition())
                    if key in heads:
                        continue
                    error = message.error()
                    if error is None:
                        heads[key] = (message.offset(), max(0.0, time.time() - message.timestamp()[1] / 1000))
                    elif error.code() == KafkaError._PARTITION_EOF:
                        heads[key] = (message.offset(), None)
                    else:
                        continue
                    probe.pause([TopicPartition(*key)])
        finally:
            # librdkafka keeps a partition paused across assignments: resume before letting go.
            probe.resume([TopicPartition(topic, partition) for topic, partition in heads])
            probe.unassign()
        return heads

    def collect(self):
        messages = GaugeMetricFamily("gapstream_consumer_lag_messages",
                                     "Messages not yet committed by the consumer group",
                                     labels=["group", "topic", "partition"])
        seconds = GaugeMetricFamily("gapstream_consumer_lag_seconds",
                                    "Age of the oldest message not yet committed by the consumer group",
                                    labels=["group", "topic", "partition"])
        for lag in self._served.get():
            labels = [lag.group, lag.topic, str(lag.partition)]
            messages.add_metric(labels, lag.messages)
            if lag.seconds is not None:
                seconds.add_metric(labels, lag.seconds)
        yield messages
        yield seconds

    def close(self) -> None:
        with self._lock:  # not under a measurement running in the background
            for consumer in self._consumers.values():
                consumer.close()
            self._consumers.clear()
