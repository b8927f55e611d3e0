"""The Faust app: one worker runs every group of agents.

Flows (see README): ADT (streams/adt/agents.py) and the HTTP API (streams/web.py) in the worker's
process; attribution and care gaps (streams/attribution/processor.py, a stateful processor rather
than a Faust agent: it is the high-volume flow) and the sinks (sinks/process.py: routing and storage
of alerts, the tables; the webhook dispatchers) each in child processes of their own.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import faust
import mode

from sinks.process import SinkProcesses
from sinks.sql.gauges import StoreGauges
from sinks.sql.store import open_store
from streams import api, topics, web
from streams.adt import agents as adt_agents
from streams.attribution.processor import AttributionProcesses
from streams.child import ChildError
from streams.config import Settings
from streams.kafka.lag import Group, LagProbe
from streams.metrics import PARTITIONS_ASSIGNED, REBALANCES
from streams.pipeline import Pipeline
from streams.serialization.codec import codec_for

log = logging.getLogger(__name__)


class ThreadService(mode.Service):
    """Runs something that consumes on processes of its own (the sinks, the processors) with the
    worker, and starts again any of those processes that dies: until then its share of the work (a
    dispatcher's endpoints, the sinks' topics, partitions of claims) would wait for the worker's
    restart. What it had taken and not finished is taken up again as after a restart."""

    def __init__(self, runner: SinkProcesses | AttributionProcesses, **kwargs: Any):
        super().__init__(**kwargs)
        self.runner = runner
        self._changing = threading.Lock()  # a restart never overlaps the stop

    async def on_start(self) -> None:
        await asyncio.to_thread(self.runner.start)

    @mode.Service.task
    async def _restart_exited(self) -> None:
        while not self.should_stop:
            await self.sleep(1.0)
            await asyncio.to_thread(self._restart)

    def _restart(self) -> None:
        with self._changing:
            for child in self.runner.children:
                if child.exited() and not self.should_stop:
                    log.error("the %s process exited, starting it again", child.name)
                    try:
                        child.restart()
                    except ChildError as exc:
                        log.error("could not start the %s process again: %s", child.name, exc)

    async def on_stop(self) -> None:
        def stop() -> None:
            with self._changing:
                self.runner.stop()
        await asyncio.to_thread(stop)


class ClosingService(mode.Service):
    """Closes, when the worker stops, the broker clients opened for it outside the services above
    (the lag probe's)."""

    def __init__(self, *closing: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.closing = closing

    async def on_stop(self) -> None:
        for thing in self.closing:
            await asyncio.to_thread(thing.close)


def build(settings: Settings, bootstrap: str) -> Pipeline:
    app = faust.App(
        settings.app_id,
        broker=f"gapstream://{bootstrap}",  # streams/kafka/faust_transport.py
        store="memory://",
        datadir=str(settings.data_dir / "faust"),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        # Short group timeouts: the embedded broker holds the first join for the whole rebalance timeout.
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=6.0,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_enabled=True,
    )
    store = open_store(settings)
    codec = codec_for(settings.schema_registry_url)
    sinks, attribution = SinkProcesses(settings, bootstrap), AttributionProcesses(settings, bootstrap)
    pipeline = Pipeline(app=app, settings=settings, codec=codec, store=store, sinks=sinks, attribution=attribution,
                        services=[ThreadService(sinks), ThreadService(attribution)])
    pipeline.topic(topics.DLQ)  # declared up front: the first dead letter should not wait for it
    adt_agents.register(pipeline)
    web.register(pipeline)
    api.register(pipeline)
    groups = [Group(settings.app_id, tuple(sorted(pipeline.consumed))), *sinks.consumer_groups,
              attribution.consumer_group]
    lag = LagProbe(bootstrap, groups, settings.topic_partitions)
    pipeline.collectors += [lag, StoreGauges(store)]
    pipeline.services.append(ClosingService(lag))

    @app.on_partitions_assigned.connect
    async def _assigned(_app: faust.App, assigned: set, **_: Any) -> None:
        REBALANCES.labels(consumer="worker").inc()
        PARTITIONS_ASSIGNED.labels(consumer="worker").set(len(assigned))
    return pipeline


def run_worker(settings: Settings, bootstrap: str) -> None:
    pipeline = build(settings, bootstrap)
    worker = faust.Worker(pipeline.app, *pipeline.services, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()
