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
import threading

from sinks.sql.batch_sink import ALERT_FEEDS, TABLE_FEEDS, SqlBatchSink
from sinks.sql.store import open_store
from sinks.webhooks.dispatcher import Dispatcher
from streams.child import ChildProcess
from streams.config import Settings
from streams.kafka.lag import Group
from streams.serialization.codec import codec_for


def _group_ids(settings: Settings) -> tuple[str, str]:
    return f"{settings.app_id}-sql-alerts", f"{settings.app_id}-sql-attribution"


class SinkFlow:
    def __init__(self, settings: Settings, bootstrap: str):
        store, codec = open_store(settings), codec_for(settings.schema_registry_url)
        self._loop = asyncio.new_event_loop()
        self._dispatcher = Dispatcher(store.outbox, store.subscriptions.egress, settings.webhook_timeout_s,
                                      settings.webhook_schedule_s, settings.webhook_endpoint_concurrency)
        alerts_group, tables_group = _group_ids(settings)
        partitions = settings.topic_partitions
        self.sinks = [SqlBatchSink(bootstrap, alerts_group, ALERT_FEEDS, store, codec, partitions, batch_size=50,
                                   on_written=self.wake),
                      SqlBatchSink(bootstrap, tables_group, TABLE_FEEDS, store, codec, partitions, batch_size=100,
                                   on_written=self.wake)]
        self._stopping = asyncio.Event()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._dispatch(),),
                                        name="dispatcher", daemon=True)

    def start(self) -> None:
        self._thread.start()
        for sink in self.sinks:
            sink.start()

    async def _dispatch(self) -> None:
        running = asyncio.create_task(self._dispatcher.run())
        await self._stopping.wait()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
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
        alerts, tables = _group_ids(settings)
        self.consumer_groups = [Group(alerts, tuple(f.topic for f in ALERT_FEEDS)),
                                Group(tables, tuple(f.topic for f in TABLE_FEEDS))]
