"""The worker's sink and dispatcher processes: what writes the streams into SQL and what sends
webhooks, in child processes of the worker (streams/child.py). Their database work and requests,
Python on the interpreter lock, would otherwise take that lock from the ADT agents, whose alerts are
latency-sensitive: measured with `gapstream bench pipeline`, each SQL thread in the worker's process
delayed the agents' event loop.

- The sink process:
  - alerts: ADT alerts, routed into the outbox by a consumer of their own, so that no bulk batch is
    written ahead of them;
  - tables: attribution changes, the provider directory, cohorts and gap alerts, in large batches.
- ``GAPSTREAM_WEBHOOK_DISPATCHERS`` dispatcher processes, each sending to its share of the endpoints
  (a dispatcher is CPU-bound), woken through a doorbell whenever the sink process stored alerts.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from multiprocessing.connection import Connection

from sinks.email import Mailer
from sinks.sql.batch_sink import ALERT_FEEDS, TABLE_FEEDS, Feed, SqlBatchSink
from sinks.sql.outbox import Shard
from sinks.sql.store import open_store
from sinks.webhooks.dispatcher import Dispatcher, event_loop
from sinks.webhooks.doorbell import Ringer, doorbell, listen
from streams.child import ChildError, ChildProcess
from streams.config import Settings
from streams.deadletters import where
from streams.kafka.lag import Group
from streams.serialization.codec import codec_for

log = logging.getLogger(__name__)


def _sinks(settings: Settings) -> list[tuple[Group, tuple[Feed, ...], int]]:
    """Each sink's consumer group, feeds and batch size. Gap alerts share the table sink's small
    batches: on SQLite every writer waits for one lock, and an ED alert should not wait long."""
    return [(Group(f"{settings.app_id}-sql-{name}", tuple(f.topic for f in feeds)), feeds, batch)
            for name, feeds, batch in (("alerts", ALERT_FEEDS, 50), ("attribution", TABLE_FEEDS, 100))]


class SinkFlow:
    def __init__(self, settings: Settings, bootstrap: str, bells: list[Connection]):
        store, codec = open_store(settings), codec_for(settings.schema_registry_url)
        self._dispatchers = Ringer(bells)
        store.outbox.on_queued = self._dispatchers.ring
        self.sinks = [SqlBatchSink(bootstrap, group.group_id, feeds, store, codec, settings.topic_partitions,
                                   batch_size=batch) for group, feeds, batch in _sinks(settings)]

    def start(self) -> None:
        for sink in self.sinks:
            sink.start()

    def wake(self) -> None:
        """Deliveries were queued by the worker's API (a ping, a resend); the sinks' own ring as
        they are stored (``Outbox.on_queued``)."""
        self._dispatchers.ring()

    def stop(self) -> None:
        for sink in self.sinks:
            sink.stop()


class DispatchFlow:
    """One webhook dispatcher, on an event loop of its own thread."""

    def __init__(self, settings: Settings, shard: Shard, bell: Connection):
        store = open_store(settings)
        self._loop, self._bell = event_loop(), bell
        mailer = Mailer(settings.smtp_url, settings.email_from) if settings.smtp_url else None
        self._dispatcher = Dispatcher(store.outbox, store.subscriptions.egress, settings.webhook_timeout_s,
                                      settings.webhook_schedule_s, settings.webhook_endpoint_concurrency,
                                      emails=store.emails, mailer=mailer, shard=shard)
        self._stopping = asyncio.Event()
        self._thread = threading.Thread(target=self._serve, name="dispatcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        try:
            self._loop.run_until_complete(self._dispatch())
        finally:
            self._loop.close()

    async def _dispatch(self) -> None:
        listen(self._loop, self._bell, self._dispatcher.wake)
        while not self._stopping.is_set():
            running = asyncio.create_task(self._dispatcher.run())
            stopping = asyncio.create_task(self._stopping.wait())
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if running.done():  # it only ends on a bug: say so, and send on
                log.error("the webhook dispatcher stopped, restarting it: %s",
                          where(running.exception()) if running.exception() else "no error")
                await asyncio.sleep(1.0)
            running.cancel()
            stopping.cancel()
            await asyncio.gather(running, stopping, return_exceptions=True)
        await self._dispatcher.close()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(30)


class DispatcherProcesses:
    """``GAPSTREAM_WEBHOOK_DISPATCHERS`` dispatcher processes, one shard of the endpoints each, and
    the ringing ends of their doorbells, for whichever process queues deliveries."""

    def __init__(self, settings: Settings):
        count = settings.webhook_dispatchers
        bells = [doorbell() for _ in range(count)]
        self.bells = [ringing for _, ringing in bells]
        self.children = [ChildProcess(f"dispatcher-{i}", DispatchFlow, (settings, Shard(i, count), listening),
                                      settings.log_level) for i, (listening, _) in enumerate(bells)]

    def stop(self) -> None:
        for child in self.children:
            child.stop()


class SinkProcesses:
    """The sink process and the dispatcher processes, started and stopped together."""

    def __init__(self, settings: Settings, bootstrap: str):
        self.dispatchers = DispatcherProcesses(settings)
        self.sink = ChildProcess("sinks", SinkFlow, (settings, bootstrap, self.dispatchers.bells), settings.log_level)
        self.consumer_groups = [group for group, _, _ in _sinks(settings)]

    @property
    def children(self) -> list[ChildProcess]:
        return [*self.dispatchers.children, self.sink]

    def start(self) -> None:
        for child in self.children:
            child.start()

    def stop(self) -> None:
        # The sinks first: what they still store is sent by the dispatchers after a restart.
        self.sink.stop()
        self.dispatchers.stop()

    def wake(self) -> None:
        """Best effort: the dispatchers also look for due deliveries every half second."""
        try:
            self.sink.call("wake", timeout_s=1.0)
        except ChildError as exc:
            log.warning("could not wake the dispatchers: %s", exc)

    def metrics(self) -> dict[str, bytes]:
        return {child.name: child.call("metrics") for child in self.children}
