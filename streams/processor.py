"""A keyed, stateful stream processor on confluent-kafka, for the high-volume flows.

Faust pays two asyncio tasks and (with a table) one changelog record per message; the claims
flow needs far more than that allows (see README, "Performance"). This processor runs on a thread
of its own in the worker, consumes in batches, keeps its state in memory per input partition and
checkpoints every ``commit_interval_s``:

1. everything the handler sent (changes, dead letters) is acknowledged by the broker;
2. the state of each key changed since the last checkpoint is written to the changelog, once, and
   acknowledged;
3. only then are the input offsets committed.

A crash anywhere in between replays input from the last commit over state that is the same or
newer, so handlers must be idempotent (re-applying a message changes nothing, and a decision that
was already published is not published again). That is at-least-once, the delivery contract.
All inputs must be keyed alike and have the same partition count (co-partitioned), which the range
assignor then hands out by partition number.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections import Counter
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from streams import topics
from streams.deadletters import BadInput, dead_letter, where
from streams.kafka.admin import ensure_topics
from streams.kafka.clients import group_consumer_config, produce, producer_config
from streams.metrics import (
    MESSAGES_IN,
    PARTITIONS_ASSIGNED,
    PROCESSING,
    REBALANCES,
    RECOVERED_KEYS,
    RECOVERY_REMAINING,
    STATE_KEYS,
)
from streams.serialization.codec import AvroCodec
from streams.state.changelog import Changelog
from streams.state.partitions import PartitionState

log = logging.getLogger(__name__)
# How long a stopping member waits for a rebalance to end before it leaves anyway (see
# StatefulProcessor._may_leave); a rejoin on the embedded broker took 3-6 s.
SETTLE_S = 15.0


class CheckpointError(RuntimeError):
    """The broker did not acknowledge a write: nothing after it may be committed."""


class Output:
    """What a handler may do besides changing its state: send messages, dead-letter its input."""

    def __init__(self, producer: Producer, codec: AvroCodec):
        self._producer, self._codec = producer, codec

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        produce(self._producer, topic, key, value)

    def dead_letter(self, source: str, reason: str, detail: str, payload: bytes) -> None:
        self.send(topics.DLQ, None, self._codec.encode(dead_letter(source, reason, detail, payload)))


class Handler(Protocol):
    def encode(self, value: Any) -> bytes: ...
    def decode(self, raw: bytes) -> Any: ...
    def assigned(self, state: PartitionState) -> None:
        """State recovered for a partition: rebuild whatever the handler derives from it."""
    def revoked(self, state: PartitionState) -> None: ...
    def process(self, message: Message, state: PartitionState, out: Output) -> None: ...
    def tick(self, states: dict[int, PartitionState], out: Output) -> None:
        """Called between batches: work that time, not a message, makes due."""


class StatefulProcessor:
    def __init__(self, name: str, bootstrap: str, group_id: str, inputs: list[str], partitions: int,
                 handler: Handler, codec: AvroCodec, commit_interval_s: float = 1.0, batch_size: int = 2000,
                 linger_ms: int = 100):
        self.name, self._bootstrap, self._group_id = name, bootstrap, group_id
        self._inputs, self._partitions, self._handler, self._codec = inputs, partitions, handler, codec
        self._interval, self._batch, self._linger_ms = commit_interval_s, batch_size, linger_ms
        self.changelog = Changelog(bootstrap, f"{group_id}-{name}-changelog", partitions)
        self._timer = PROCESSING.labels(agent=name)
        self.states: dict[int, PartitionState] = {}
        # Held while the handler runs, so other threads (the HTTP API) read state between messages.
        self.lock = threading.RLock()
        self._positions: dict[tuple[str, int], int] = {}
        self._failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"processor-{name}", daemon=True)
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._healthy = False  # False after a failure: nothing may be committed on the way out
        # Membership as the rebalance callbacks report it (see _may_leave for why it matters).
        self._joining = True  # from subscribing or a revocation until the next assignment
        self._assigned_at = 0.0  # wall clock: compared with a sibling process's
        self._peer_left_at: float | None = None
        self._leaving = False
        self._leave_by = 0.0
        self.left_at: float | None = None  # when this member last left the group

    def ensure_topics(self) -> None:
        ensure_topics(self._bootstrap, self._inputs, self._partitions)
        self.changelog.ensure()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 30.0, peer_left_at: float | None = None) -> None:
        """``peer_left_at``: when another member of the group (a sibling process stopped just before)
        left it. This one then leaves only after the rebalance that started; see :meth:`_may_leave`."""
        self._peer_left_at, self._leaving = peer_left_at, True
        self._leave_by = time.monotonic() + SETTLE_S
        self._stop.set()
        self._thread.join(timeout_s)

    def _may_leave(self) -> bool:
        """Stopping, and not in the middle of a rebalance, or waited SETTLE_S for its end.

        Tansu, the embedded broker, keeps a member that leaves while the group is rebalancing as the
        group's leader: the next members' joins then never complete, and a restarted worker consumes
        nothing (its coordinator clears the leader on a leave only in a stable group; found with
        librdkafka's group debug log, `gapstream bench pipeline` with two attribution processes).
        Two siblings stopped one after the other met it whenever the second had begun to rejoin
        after the first left, or left as the leader before noticing. So a member leaves only once its
        own join is done and, when a sibling left just before, once the rebalance that caused is over."""
        if not self._stop.is_set():
            return False
        if time.monotonic() > self._leave_by:
            log.warning("%s: leaving the group after %.0f s with its rebalance still under way; the next members "
                        "may not be assigned partitions", self.name, SETTLE_S)
            return True
        return not self._joining and (self._peer_left_at is None or self._assigned_at > self._peer_left_at)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._healthy = True
                self._consume()
            except Exception as exc:
                self._healthy = False
                # Offsets past the last good checkpoint were not committed: start over from there,
                # with state recovered from the changelog, and lose nothing.
                log.error("%s processor failed, restarting from the last checkpoint: %s", self.name, where(exc))
                self._stop.wait(2.0)
            finally:
                self._close()

    def _consume(self) -> None:
        # Member state is repetitive JSON: compressed, the broker stores and serves a fraction. The
        # embedded broker's cost is per request more than per byte, so while a backlog drains, writes
        # wait (100 ms by default) to travel together (`gapstream bench attribution`, 20,000
        # members: broker CPU per claim 140-149 -> 45-50 µs, the sinks' too falls as their batches
        # fill); a flow that keeps up sends them at once (below). The delivery callback is the
        # producer's, so a failed changelog write fails the checkpoint as a failed output does.
        self._producer = Producer(producer_config(self._bootstrap, **{
            "linger.ms": self._linger_ms, "compression.type": "lz4", "on_delivery": self._delivered}))
        # Range assignment hands out co-partitioned inputs by partition number; a partition's
        # recovery must fit between two polls.
        self._consumer = Consumer(group_consumer_config(self._bootstrap, self._group_id, 60,
                                                        **{"partition.assignment.strategy": "range"}))
        out = Output(self._producer, self._codec)
        self._joining, self._leaving = True, self._stop.is_set()
        self._consumer.subscribe(self._inputs, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_lost)
        last_checkpoint = time.monotonic()
        while not self._may_leave():
            # What is fetched already, as one batch; with nothing there, the next message as soon as
            # it comes (a batch call would wait out its whole timeout for a full batch).
            batch = self._consumer.consume(self._batch, timeout=0) or self._consumer.consume(1, timeout=0.2)
            counts: Counter[str] = Counter()
            started = time.perf_counter()
            with self.lock:  # once a batch: readers wait at most one batch, the flow pays no lock per message
                for message in batch:
                    if not message.error():
                        counts[message.topic()] += 1
                        self._process(message, out)
                self._handler.tick(self.states, out)
            if counts:  # timed per batch (timers and deadlines included); each message counted at its mean
                processed = sum(counts.values())
                per_message = (time.perf_counter() - started) / processed
                for _ in range(processed):
                    self._timer.observe(per_message)
            for topic, count in counts.items():
                MESSAGES_IN.labels(topic=topic).inc(count)
            if len(batch) < self._batch // 10 and len(self._producer):
                # Keeping up: a small batch's writes (a gap closed, an attribution changed) go now
                # rather than lingering; a failure is the next checkpoint's to find.
                self._producer.flush(1.0)
            else:
                self._producer.poll(0)
            if time.monotonic() - last_checkpoint >= self._interval:
                self._checkpoint()
                last_checkpoint = time.monotonic()
        self._checkpoint()

    def _process(self, message: Message, out: Output) -> None:
        topic, partition = message.topic(), message.partition()
        state = self.states.get(partition)
        if state is None:  # a message of a partition revoked within this batch
            return
        try:
            self._handler.process(message, state, out)
        except BadInput as exc:
            out.dead_letter(topic, exc.reason, exc.detail, message.value())
        except Exception as exc:
            log.error("unexpected error processing a message from %s: %s", topic, where(exc))
            out.dead_letter(topic, "processing_error", f"{type(exc).__name__}: {exc}", message.value())
        self._positions[(topic, partition)] = message.offset() + 1

    def _delivered(self, err: KafkaError | None, _message: Any) -> None:
        if err is not None:
            self._failures.append(err.str())

    def _flush(self) -> None:
        assert self._producer is not None
        if self._producer.flush(30) > 0:
            raise CheckpointError("the broker did not acknowledge every write within 30 s")
        if self._failures:
            raise CheckpointError(f"{len(self._failures)} writes failed, first: {self._failures[0]}")

    def _checkpoint(self) -> None:
        assert self._producer is not None and self._consumer is not None
        self._flush()  # 1. outputs
        with self.lock:
            changed = {number: state.take_dirty() for number, state in self.states.items()}
            STATE_KEYS.labels(consumer=self.name).set(sum(len(state.values) for state in self.states.values()))
        for number, values in changed.items():  # 2. state
            for key, value in values.items():
                self.changelog.write(self._producer, number, key, self._handler.encode(value))
        self._flush()
        if self._positions:  # 3. offsets
            self._consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in self._positions.items()],
                                  asynchronous=False)
            self._positions.clear()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._joining, self._assigned_at = False, time.time()
        numbers = {tp.partition for tp in partitions}
        log.info("%s: assigned partitions %s", self.name, sorted(numbers))
        REBALANCES.labels(consumer=self.name).inc()
        PARTITIONS_ASSIGNED.labels(consumer=self.name).set(len(numbers))
        with self.lock:
            for number in set(self.states) - numbers:
                self._handler.revoked(self.states.pop(number))
        # Partitions taken on the way out (see _may_leave) are not worth recovering: their messages are
        # skipped and their offsets stay where they are.
        new = [] if self._leaving else sorted(numbers - set(self.states))
        started = time.monotonic()
        remaining = RECOVERY_REMAINING.labels(consumer=self.name)
        remaining.set(len(new))
        for number, raw in self.changelog.read(new).items() if new else ():
            state = PartitionState(number, {key: self._handler.decode(value) for key, value in raw.items()})
            with self.lock:
                self.states[number] = state
                self._handler.assigned(state)
            remaining.dec()
            RECOVERED_KEYS.labels(consumer=self.name).inc(len(raw))
            log.info("%s: partition %d recovered, %d keys", self.name, number, len(raw))
        remaining.set(0)
        if new:
            log.info("%s: %d partitions recovered in %.1f s", self.name, len(new), time.monotonic() - started)
            # Recovered state lives long and has no reference cycles: keep the collector off it.
            gc.freeze()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # State is kept: in the next assignment these partitions come back to us or are dropped
        # there, and nobody else can have processed them in between.
        log.info("%s: partitions %s revoked", self.name, sorted({tp.partition for tp in partitions}))
        self._joining = True
        if self._healthy:
            self._checkpoint()

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Out of the group without a clean hand-over: others may have moved on, so our state is stale.
        log.warning("%s: partitions %s lost", self.name, sorted({tp.partition for tp in partitions}))
        self._joining = True
        with self.lock:
            for number in {tp.partition for tp in partitions} & set(self.states):
                self._handler.revoked(self.states.pop(number))
        PARTITIONS_ASSIGNED.labels(consumer=self.name).set(len(self.states))
        self._positions.clear()

    def _close(self) -> None:
        if self._consumer is not None:
            # After a failure too, a rejoin under way is let finish first (see _may_leave).
            self._leaving, deadline = True, time.monotonic() + SETTLE_S
            with contextlib.suppress(KafkaException):
                while self._joining and time.monotonic() < deadline:
                    self._consumer.consume(self._batch, timeout=0.2)  # neither processed nor committed
            self.left_at = time.time()
            self._consumer.close()
        if self._producer is not None:
            self._producer.flush(10)
        self._consumer = self._producer = None
        self._failures.clear()
        self._positions.clear()
        with self.lock:
            for state in self.states.values():
                self._handler.revoked(state)
            self.states.clear()
