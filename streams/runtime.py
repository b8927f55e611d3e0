"""Where the broker is: KAFKA_BOOTSTRAP_SERVERS, a running `gapstream broker`, or one we start."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

from streams.config import Settings
from streams.kafka import broker as embedded


@contextlib.contextmanager
def bootstrap_servers(settings: Settings, start_if_missing: bool = True) -> Iterator[str]:
    """Yield the bootstrap address to use. A broker started here is stopped on exit, and with it
    its in-memory data: commands that only publish pass ``start_if_missing=False``."""
    if settings.kafka_bootstrap_servers:
        yield settings.kafka_bootstrap_servers
        return
    running = embedded.running_embedded(settings.data_dir)
    if running:
        yield running
        return
    if not start_if_missing:
        raise embedded.BrokerError("no broker is running: start `gapstream broker` (or `gapstream worker`) "
                                   "first, or set KAFKA_BOOTSTRAP_SERVERS")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with embedded.embedded_broker(settings.data_dir / "broker.log") as started:
        embedded.publish_state(settings.data_dir, started)
        try:
            yield started.bootstrap
        finally:
            embedded.clear_state(settings.data_dir)
