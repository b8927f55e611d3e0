"""What every group of agents shares: the Faust app, settings, codec, SQL store and dead letters."""
from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import faust
import mode

from sinks.process import SinkProcesses
from sinks.sql.store import Store
from streams import topics
from streams.attribution.processor import AttributionProcesses
from streams.config import Settings
from streams.deadletters import BadInput, dead_letter, where
from streams.metrics import MESSAGES_IN, PROCESSING
from streams.serialization.codec import AvroCodec

log = logging.getLogger(__name__)
Handler = Callable[[faust.EventT, "Batch"], Awaitable[None]]


@dataclass
class Pipeline:
    app: faust.App
    settings: Settings
    codec: AvroCodec
    store: Store
    sinks: SinkProcesses  # routing, SQL tables and webhooks, in processes of their own
    attribution: AttributionProcesses  # likewise
    services: list[mode.Service] = field(default_factory=list)
    tables: dict[str, faust.TableT] = field(default_factory=dict)
    consumed: set[str] = field(default_factory=set)  # the topics the worker's agents read
    collectors: list[Any] = field(default_factory=list)  # read when /metrics is scraped
    _topics: dict[tuple[str, ...], faust.TopicT] = field(default_factory=dict)

    def topic(self, *names: str) -> faust.TopicT:
        """Raw-bytes topics: decoding happens in the agents, where a failure becomes a dead letter."""
        if names not in self._topics:
            self._topics[names] = self.app.topic(*names, key_serializer="raw", value_serializer="raw",
                                                 partitions=self.settings.topic_partitions)
        return self._topics[names]

    def table(self, name: str, global_: bool = False) -> faust.TableT:
        factory = self.app.GlobalTable if global_ else self.app.Table
        self.tables[name] = factory(name, default=None, partitions=self.settings.topic_partitions)
        return self.tables[name]

    async def to_dlq(self, source: str, reason: str, detail: str, payload: bytes) -> None:
        """Returns once the broker has the dead letter: only then may the input's offset move on.
        A failed write raises, so the agent restarts and the input is read again, not lost."""
        sent = await self.topic(topics.DLQ).send(value=self.codec.encode(dead_letter(source, reason, detail, payload)))
        await sent

    def agent(self, source: faust.TopicT, handle: Handler, max_batch: int = 500) -> None:
        """Run ``handle`` per event, one at a time (faust-streaming can commit past an in-flight
        message otherwise), in batches: the events waiting when one is handled join its batch, which
        is committed (sends confirmed, table writes applied, events acknowledged) when no more wait.
        Bad input and unexpected errors become dead letters; the agent goes on."""
        timer = PROCESSING.labels(agent=handle.__name__)

        async def run(stream: faust.StreamT) -> None:
            # Acked by hand once committed: Faust's own ack sits in a ``finally`` around the ``yield``,
            # so a worker stopping mid-message would commit that message unprocessed (found by
            # tests/test_scale_out.py: one ED alert lost in the hand-over).
            stream = stream.noack()
            batches: dict[Any, Batch] = {}  # one per partition: see Batch
            async for event in stream.events():
                batch = batches.setdefault(event.message.tp, Batch())
                if not batch.events:
                    batch.started = time.perf_counter()
                source_topic = event.message.topic
                MESSAGES_IN.labels(topic=source_topic).inc()
                try:
                    await handle(event, batch)
                except BadInput as exc:
                    await self.to_dlq(source_topic, exc.reason, exc.detail, event.value)
                except Exception as exc:
                    log.error("unexpected error processing a message from %s: %s", source_topic, where(exc))
                    await self.to_dlq(source_topic, "processing_error", f"{type(exc).__name__}: {exc}", event.value)
                batch.add(event)
                if sum(len(b.events) for b in batches.values()) >= max_batch or stream.channel.empty():
                    await commit(stream, list(batches.values()), timer)
                    batches = {}

        # Named by handler and topic: one handler may serve several topics, each with its own agent.
        self.consumed.update(source.topics)
        self.app.agent(source, concurrency=1, name=f"gapstream.{handle.__name__}.{'+'.join(source.topics)}")(run)


@dataclass
class Batch:
    """Consecutive events of one agent and partition, committed with the other partitions' batches
    (see :func:`commit`). Reads see the batch's own writes."""
    events: list[faust.EventT] = field(default_factory=list)
    started: float = 0.0  # when its first event was taken up
    sends: list[Awaitable[Any]] = field(default_factory=list)
    writes: dict[tuple[int, str], tuple[faust.TableT, str, Any]] = field(default_factory=dict)
    confirmed: list[Callable[[], None]] = field(default_factory=list)
    # Faust's context as the batch's last event left it: that event is "current" in it, and a table
    # write goes to the changelog partition of the current event, so the writes are made in it.
    context: contextvars.Context | None = None

    async def send(self, topic: faust.TopicT, key: bytes, value: bytes) -> None:
        self.sends.append(await topic.send(key=key, value=value))

    def get(self, table: faust.TableT, key: str) -> Any:
        pending = self.writes.get((id(table), key))
        return pending[2] if pending else table.get(key)

    def set(self, table: faust.TableT, key: str, value: Any) -> None:
        self.writes[(id(table), key)] = (table, key, value)

    def on_confirmed(self, callback: Callable[[], None]) -> None:
        self.confirmed.append(callback)

    def add(self, event: faust.EventT) -> None:
        self.events.append(event)
        self.context = contextvars.copy_context()

    async def apply(self, stream: faust.StreamT) -> None:
        for table, key, value in self.writes.values():
            table[key] = value
        for callback in self.confirmed:
            callback()
        for event in self.events:
            await stream.ack(event)


async def commit(stream: faust.StreamT, batches: list[Batch], timer: Any) -> None:
    """The messages the batches sent are confirmed by the broker, all at once; only then are their
    table writes applied and their events acknowledged, so a crash in between handles the events
    again (alerts keep their ids) instead of keeping state that says an unconfirmed alert was raised."""
    await asyncio.gather(*(send for batch in batches for send in batch.sends))
    for batch in batches:
        await asyncio.create_task(batch.apply(stream), context=batch.context)
        # The batch's mean per event: what a message cost, not how long one waited in the batch.
        per_event = (time.perf_counter() - batch.started) / len(batch.events)
        for _ in batch.events:
            timer.observe(per_event)
