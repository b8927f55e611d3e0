"""What every group of agents shares: the Faust app, settings, codec, SQL store and dead letters."""
from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import faust
import mode

from sinks.sql.store import Store
from sinks.webhooks.dispatcher import Dispatcher
from streams import topics
from streams.attribution.processor import AttributionProcesses
from streams.config import Settings
from streams.deadletters import BadInput, dead_letter, where
from streams.metrics import MESSAGES_IN, PROCESSING
from streams.serialization.codec import AvroCodec

log = logging.getLogger(__name__)
Handler = Callable[[faust.EventT], Awaitable[None]]


@dataclass
class Pipeline:
    app: faust.App
    settings: Settings
    codec: AvroCodec
    store: Store
    dispatcher: Dispatcher
    attribution: AttributionProcesses  # in processes of their own
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

    def agent(self, source: faust.TopicT, handle: Handler) -> None:
        """Run ``handle`` per event with concurrency 1 (faust-streaming can commit past an in-flight
        message otherwise). Bad input and unexpected errors become dead letters; the agent goes on."""
        timer = PROCESSING.labels(agent=handle.__name__)

        async def run(stream: faust.StreamT) -> None:
            # Acked by hand once handled: Faust's own ack sits in a ``finally`` around the ``yield``,
            # so a worker stopping mid-message would commit that message unprocessed (found by
            # tests/test_scale_out.py: one ED alert lost in the hand-over).
            stream = stream.noack()
            async for event in stream.events():
                source_topic = event.message.topic
                MESSAGES_IN.labels(topic=source_topic).inc()
                started = time.perf_counter()
                try:
                    await handle(event)
                except BadInput as exc:
                    await self.to_dlq(source_topic, exc.reason, exc.detail, event.value)
                except Exception as exc:
                    log.error("unexpected error processing a message from %s: %s", source_topic, where(exc))
                    await self.to_dlq(source_topic, "processing_error", f"{type(exc).__name__}: {exc}", event.value)
                await stream.ack(event)
                timer.observe(time.perf_counter() - started)

        # Named by handler and topic: one handler may serve several topics, each with its own agent.
        self.consumed.update(source.topics)
        self.app.agent(source, concurrency=1, name=f"gapstream.{handle.__name__}.{'+'.join(source.topics)}")(run)
