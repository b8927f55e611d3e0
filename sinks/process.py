"""The worker's sink process: what writes the streams into SQL and sends webhooks, in a child process
of the worker (streams/child.py). Its database work, Python on the interpreter lock, would otherwise
take that lock from the ADT agents, whose alerts are latency-sensitive: measured with
`gapstream bench pipeline`, each SQL thread in the worker's process delayed the agents' event loop.

- alerts: ADT alerts, routed into the outbox by a consumer of their own, so that no bulk batch is
  written ahead of them;
- tables: attribution changes, the provider directory, cohorts and gap alerts, in large batches;
- the webhook dispatcher, on an event loop of its own thread, woken whenever alerts were stored.
"""
from __future__ import annotations

import asyncio
import logging
import threading

from sinks.email import Mailer
from sinks.sql.batch_sink import ALERT_FEEDS, TABLE_FEEDS, Feed, SqlBatchSink
from sinks.sql.store import open_store
from sinks.webhooks.dispatcher import Dispatcher, event_loop
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
    def __init__(self, settings: Settings, bootstrap: str):
        store, codec = open_store(settings), codec_for(settings.schema_registry_url)
        self._loop = event_loop()
        mailer = Mailer(settings.smtp_url, settings.email_from) if settings.smtp_url else None
        self._dispatcher = Dispatcher(store.outbox, store.subscriptions.egress, settings.webhook_timeout_s,
                                      settings.webhook_schedule_s, settings.webhook_endpoint_concurrency,
                                      emails=store.emails, mailer=mailer)
        self.sinks = [SqlBatchSink(bootstrap, group.group_id, feeds, store, codec, settings.topic_partitions,
                                   batch_size=batch, on_written=self.wake) for group, feeds, batch in _sinks(settings)]
        self._stopping = asyncio.Event()
        self._thread = threading.Thread(target=self._serve, name="dispatcher", daemon=True)

    def start(self) -> None:
        self._thread.start()
        for sink in self.sinks:
            sink.start()

    def _serve(self) -> None:
        try:
            self._loop.run_until_complete(self._dispatch())
        finally:
            self._loop.close()

    async def _dispatch(self) -> None:
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

    def wake(self) -> None:
        """Deliveries were queued (by the sinks, or by the worker's API: a ping, a resend)."""
        self._loop.call_soon_threadsafe(self._dispatcher.wake)

    def stop(self) -> None:
        for sink in self.sinks:
            sink.stop()
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(30)


class SinkProcess(ChildProcess):
    def __init__(self, settings: Settings, bootstrap: str):
        super().__init__("sinks", SinkFlow, (settings, bootstrap), settings.log_level)
        self.consumer_groups = [group for group, _, _ in _sinks(settings)]

    def wake(self) -> None:
        """Best effort: the dispatcher also looks for due deliveries every half second."""
        try:
            self.call("wake", timeout_s=1.0)
        except ChildError as exc:
            log.warning("could not wake the dispatcher: %s", exc)
