"""gapstream's Faust transport: Faust's aiokafka transport with a short fetch wait.

Faust 0.15 hard-codes ``fetch_max_wait_ms=1500`` for its consumer. The embedded broker does not
always answer a fetch early when data arrives, so each hop of the pipeline could sit out that
wait; ADT alerts cross three hops. Registered under the ``faust.transports`` entry point as
``gapstream://``.
"""
from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

FETCH_MAX_WAIT_MS = 100


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by aiokafka's Fetcher when it starts
        return consumer


class Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer
