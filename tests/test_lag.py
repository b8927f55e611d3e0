"""Consumer lag as the broker knows it, on the embedded broker, whose ListOffsets answer is short
for batched records (streams/kafka/reading.py)."""
import time

from confluent_kafka import Consumer, Producer, TopicPartition

from streams.kafka.admin import ensure_topics
from streams.kafka.lag import Group, LagProbe


def test_lag_counts_every_uncommitted_message_and_the_age_of_the_oldest(broker):
    ensure_topics(broker.bootstrap, ["lagged"], 2)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 50})  # batches of many records
    for _ in range(300):
        producer.produce("lagged", value=b"x", partition=0)
    producer.flush(10)
    produced_at = time.time()
    probe = LagProbe(broker.bootstrap, [Group("readers", ("lagged",))], partitions=2)
    try:
        before = {lag.partition: lag for lag in probe.measure()}
        assert (before[0].messages, before[1].messages) == (300, 0)

        group = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "readers", "enable.auto.commit": False})
        group.commit(offsets=[TopicPartition("lagged", 0, 150)], asynchronous=False)
        group.close()
        time.sleep(1.0)
        [lag, idle] = sorted(probe.measure(), key=lambda lag: lag.partition)
        assert lag.messages == 150 and 1.0 <= lag.seconds <= time.time() - produced_at + 1
        assert (idle.messages, idle.seconds) == (0, 0.0)
    finally:
        probe.close()
