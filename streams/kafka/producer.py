"""An asyncio face for confluent-kafka's Producer: ``await send(...)`` returns once the broker has
acknowledged the write (acks=all), or raises :class:`ProduceError`."""
from __future__ import annotations

import asyncio
import threading

from confluent_kafka import KafkaError, Producer

from streams.kafka.clients import producer_config


class ProduceError(RuntimeError):
    pass


class AsyncProducer:
    def __init__(self, bootstrap: str, timeout_s: float = 10.0):
        self._producer = Producer(producer_config(bootstrap, **{"message.timeout.ms": int(timeout_s * 1000),
                                                                "linger.ms": 1}))
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-producer-poll", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def send(self, topic: str, value: bytes, key: bytes | None = None, timestamp_ms: int | None = None) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def on_delivery(err: KafkaError | None, _msg) -> None:
            def settle() -> None:
                if done.done():
                    return
                if err is not None:
                    done.set_exception(ProduceError(err.str()))
                else:
                    done.set_result(None)
            loop.call_soon_threadsafe(settle)

        try:
            self._producer.produce(topic, value=value, key=key, on_delivery=on_delivery,
                                   **({"timestamp": timestamp_ms} if timestamp_ms else {}))
        except BufferError as exc:
            raise ProduceError(f"producer queue full: {exc}") from exc
        await done

    def close(self, timeout_s: float = 5.0) -> None:
        self._producer.flush(timeout_s)
        self._stop.set()
        self._poller.join(timeout_s)
