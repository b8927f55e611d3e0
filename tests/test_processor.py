"""The stateful processor on the real broker: state and outputs survive a worker killed between
checkpoints, and reads to the end of a partition see every record of a batched write."""
from __future__ import annotations

import subprocess
import sys
import time

import orjson
import pytest
from confluent_kafka import Producer

from streams.kafka.admin import ensure_topics
from streams.kafka.reading import read_to_end
from streams.processor import StatefulProcessor
from streams.serialization.codec import AvroCodec
from streams.state.changelog import Changelog
from streams.state.partitions import PartitionState
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e
INPUT, OUTPUT = "proc.input", "proc.output"


class SeenIds:
    """State per key: the message ids seen, which re-processing cannot change (idempotent)."""

    def encode(self, value: list[str]) -> bytes:
        return orjson.dumps(value)

    def decode(self, raw: bytes) -> list[str]:
        return orjson.loads(raw)

    def assigned(self, state: PartitionState) -> None: ...

    def revoked(self, state: PartitionState) -> None: ...

    def process(self, message, state: PartitionState, out) -> None:
        key, seen = message.key().decode(), state.get(message.key().decode()) or []
        if message.value() == b"poison":
            raise ValueError("cannot process this")
        state.set(key, sorted({*seen, message.value().decode()}))
        out.send(OUTPUT, message.key(), message.value())

    def tick(self, states, out) -> None: ...


def processor(bootstrap: str, group: str, interval_s: float) -> StatefulProcessor:
    p = StatefulProcessor("seen", bootstrap, group, [INPUT], 4, SeenIds(), AvroCodec(), commit_interval_s=interval_s)
    p.ensure_topics()
    return p


def run_until_killed(bootstrap: str, group: str) -> None:
    """Entry point of the process the test kills: checkpoints rarely, so most work is not saved."""
    processor(bootstrap, group, 1.5).start()
    time.sleep(600)


def send(bootstrap: str, messages: list[tuple[str, str]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "partitioner": "murmur2_random"})
    for key, value in messages:
        producer.produce(INPUT, key=key.encode(), value=value.encode())
    producer.flush(10)


def test_a_processor_killed_between_checkpoints_loses_nothing(broker):
    group = f"proc-{time.time_ns()}"
    ensure_topics(broker.bootstrap, [INPUT, OUTPUT, "dlq"], 4)
    first = [(f"k{i % 10}", f"a{i}") for i in range(200)]
    send(broker.bootstrap, first)
    child = subprocess.Popen([sys.executable, "-c", f"from tests.test_processor import run_until_killed as r; "
                              f"r({broker.bootstrap!r}, {group!r})"])
    changelog = f"{group}-seen-changelog"
    try:
        # A checkpoint has saved the first messages; then more arrive and the worker dies mid-way.
        wait_for(lambda: len(list(read_to_end(broker.bootstrap, changelog))) >= 10, 60, message="a checkpoint")
        second = [(f"k{i % 10}", f"b{i}") for i in range(300)] + [("k1", "poison")]
        send(broker.bootstrap, second)
        time.sleep(0.8)
    finally:
        child.kill()
        child.wait()

    survivor = processor(broker.bootstrap, group, 0.2)
    survivor.start()
    try:
        expected = {f"k{k}": sorted(v for key, v in first + second[:-1] if key == f"k{k}") for k in range(10)}

        def caught_up() -> bool:
            with survivor.lock:
                values = {k: v for s in survivor.states.values() for k, v in s.values.items()}
            return values == expected

        wait_for(caught_up, 60, message="state of every message, after the crash")
    finally:
        survivor.stop()
    outputs = {m.value().decode() for m in read_to_end(broker.bootstrap, OUTPUT)}
    assert outputs == {v for _, v in first + second[:-1]}  # at least once: repeats allowed, gaps not
    # The checkpointed state, as the next owner of each partition would recover it.
    recovered = Changelog(broker.bootstrap, changelog, 4).read([0, 1, 2, 3])
    assert {k: orjson.loads(v) for p in recovered.values() for k, v in p.items()} == expected
    dead = [m for m in read_to_end(broker.bootstrap, "dlq") if b"cannot process this" in m.value()]
    assert dead, "the poison message is dead-lettered, not retried forever or dropped"


def test_a_processor_that_keeps_up_sends_its_outputs_at_once(broker):
    """Outputs linger while a backlog drains, to travel in few requests; a message on its own (a
    claim closing a gap) must not wait for that, nor for the next checkpoint."""
    ensure_topics(broker.bootstrap, [INPUT, OUTPUT, "dlq"], 4)
    p = StatefulProcessor("seen", broker.bootstrap, f"proc-{time.time_ns()}", [INPUT], 4, SeenIds(), AvroCodec(),
                          commit_interval_s=120, linger_ms=60_000)
    p.ensure_topics()
    p.start()
    try:
        value = f"alone-{time.time_ns()}"
        send(broker.bootstrap, [("k1", value)])
        wait_for(lambda: any(m.value() == value.encode() for m in read_to_end(broker.bootstrap, OUTPUT)), 20,
                 message="the output, long before the linger or a checkpoint would send it")
    finally:
        p.stop()


def test_reading_to_the_end_sees_every_record_of_a_batched_write(broker):
    """The embedded broker's ListOffsets answer undercounts batched records; reads must not stop there."""
    ensure_topics(broker.bootstrap, ["proc.batched"], 4)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 50})
    for i in range(300):
        producer.produce("proc.batched", key=b"k", value=str(i).encode(), partition=i % 4)
    producer.flush(10)
    assert sorted(int(m.value()) for m in read_to_end(broker.bootstrap, "proc.batched")) == list(range(300))
    latest = Changelog(broker.bootstrap, "proc.batched", 4).read([1])
    assert latest == {1: {"k": b"297"}}


def test_sibling_processors_stopped_in_turn_leave_a_group_the_next_pair_can_join(broker):
    """A worker stops its attribution processes one after the other, then starts new ones. Tansu
    kept a member that left mid-rebalance as the group's leader, and the new members' joins never
    completed: the restarted worker consumed nothing (2 of 6 restarts of two plain consumers).
    Each round: a new pair shares the partitions and processes what arrives; then it is stopped
    as the worker stops it."""
    ensure_topics(broker.bootstrap, [INPUT, OUTPUT, "dlq"], 4)
    group = f"proc-{time.time_ns()}"
    for round_ in range(3):
        pair = [processor(broker.bootstrap, group, 0.2) for _ in range(2)]
        for p in pair:
            p.start()
        try:
            wait_for(lambda: all(p.states for p in pair), 45, message=f"partitions for both members, round {round_}")
            value = f"round-{round_}-{time.time_ns()}"
            send(broker.bootstrap, [(f"k{i}", value) for i in range(12)])
            wait_for(lambda: sum(m.value() == value.encode() for m in read_to_end(broker.bootstrap, OUTPUT)) >= 12,
                     30, message=f"round {round_}'s messages processed")
        finally:
            first, second = pair
            first.stop()
            time.sleep(1.0)  # the worker waits for the first process to exit; the second meanwhile rejoins
            second.stop(peer_left_at=first.left_at)
