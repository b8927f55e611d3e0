"""Wakes a dispatcher in another process when deliveries were queued: a pipe per dispatcher, on
which the sink process writes a byte and the dispatcher's event loop reads. Best effort: a ring
lost (the pipe full of rings not yet read, or the dispatcher restarting) costs at most the
dispatcher's poll interval, since it also looks for due deliveries on its own."""
from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection

from sinks.sql.outbox import Shard


def doorbell() -> tuple[Connection, Connection]:
    """(the dispatcher's end, the ringing end); both may be passed to a child process."""
    return multiprocessing.get_context("spawn").Pipe(duplex=False)


class Ringer:
    """The ringing ends of the dispatchers' bells, in the process that queues deliveries."""

    def __init__(self, bells: list[Connection]):
        self._bells = bells  # kept: a connection closes its pipe when collected
        for bell in bells:
            os.set_blocking(bell.fileno(), False)

    def ring(self, endpoint_hashes: Iterable[int] | None = None) -> None:
        """Rings the dispatchers of these endpoints (``Subscription.endpoint_hash``), or every one.
        A dispatcher rung for nothing claims nothing, but at a cost: each claim reads its queues."""
        count = len(self._bells)
        rung = range(count) if endpoint_hashes is None else {Shard.of(h, count) for h in endpoint_hashes}
        for index in rung:
            try:
                os.write(self._bells[index].fileno(), b"\x01")
            except OSError:  # full (it will wake anyway) or closed (it is restarting)
                pass


def listen(loop: asyncio.AbstractEventLoop, bell: Connection, wake: Callable[[], None]) -> None:
    """Call ``wake`` on ``loop`` whenever the bell rings."""
    fd = bell.fileno()
    os.set_blocking(fd, False)

    def rung() -> None:
        try:
            if not os.read(fd, 4096):  # the ringing process is gone: the poll carries on alone
                loop.remove_reader(fd)
                return
        except BlockingIOError:
            return
        wake()

    loop.add_reader(fd, rung)
