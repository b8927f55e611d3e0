"""A flow run in a child process of the worker, with its own interpreter lock.

The claims flow is CPU-bound Python; in the worker's process it would take the lock from the ADT
agents (whose alerts are latency-sensitive) and from itself. The child is started and stopped with
the worker, dies with it, and answers calls (an explanation, counts, its metrics) over a pipe.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, generate_latest

from streams.kafka.broker import die_with_parent

log = logging.getLogger(__name__)


class ChildError(RuntimeError):
    pass


def calm_collector() -> None:
    """Once a flow is built and started: what it built (modules, compiled statements, clients) lives as
    long as the process, so it is left out of the cyclic collector's work, and the collector runs less
    often. At the default threshold (700) the collector ran every few messages and cost ~15% of a
    flow's time; and each full collection walked the whole heap, 80-120 ms for the sink process's
    130,000 objects, a stall of every webhook in flight (README, "Webhook delivery")."""
    gc.set_threshold(10_000, 20, 10)
    gc.freeze()


def _serve(name: str, factory: Callable[..., Any], args: tuple, conn: Connection, log_level: str, nice: int) -> None:
    die_with_parent()
    os.nice(nice)
    with contextlib.suppress(OSError):  # named in ps and top (Linux; at most 15 characters)
        Path("/proc/self/comm").write_text(name[:15])
    # Ctrl-C reaches the whole process group; the worker stops its children in order instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=log_level.upper(), format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
    flow = factory(*args)
    try:
        flow.start()
        calm_collector()
        conn.send(("ok", None))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    while True:
        method, call_args = conn.recv()
        if method == "stop":
            conn.send(("ok", flow.stop(*call_args)))
            return
        try:
            result = generate_latest(REGISTRY) if method == "metrics" else getattr(flow, method)(*call_args)
            conn.send(("ok", result))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class ChildProcess:
    """``factory(*args)`` builds the flow in the child: an object with start() and stop() whose other
    public methods the parent may :meth:`call`."""

    def __init__(self, name: str, factory: Callable[..., Any], args: tuple, log_level: str = "info", nice: int = 0):
        self.name, self._factory, self._args, self._log_level, self._nice = name, factory, args, log_level, nice
        self._conn: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._lock = threading.Lock()  # one call at a time on the pipe
        self._late = 0  # calls that timed out, whose answers will still arrive

    def start(self, timeout_s: float = 120.0) -> None:
        context = multiprocessing.get_context("spawn")  # not fork: the worker has threads and an event loop
        self._conn, child_end = context.Pipe()
        self._process = context.Process(target=_serve, name=f"gapstream-{self.name}", daemon=True,
                                        args=(self.name, self._factory, self._args, child_end, self._log_level,
                                              self._nice))
        self._process.start()
        child_end.close()
        if not self._conn.poll(timeout_s):
            raise ChildError(f"{self.name} process did not start within {timeout_s:.0f} s")
        self._result()

    def exited(self) -> bool:
        """Started, not stopped, and no longer running (killed, out of memory, a crash)."""
        return self._process is not None and not self._process.is_alive()

    def restart(self) -> None:
        assert self._process is not None and self._conn is not None
        with self._lock:  # a call meanwhile waits for the new process rather than fail on the old pipe
            self._process.join(1)
            self._conn.close()
            self._late = 0
            self.start()

    def call(self, method: str, *args: Any, timeout_s: float = 30.0) -> Any:
        if self._conn is None:
            raise ChildError(f"{self.name} process is not running")
        with self._lock:
            # Answers to calls that timed out are still on their way: skip them, or every later call
            # would read the answer to the one before.
            while self._late:
                if not self._conn.poll(timeout_s):
                    raise ChildError(f"{self.name} process is still busy with an earlier call")
                self._conn.recv()
                self._late -= 1
            self._conn.send((method, args))
            if not self._conn.poll(timeout_s):
                self._late += 1
                raise ChildError(f"{self.name} process did not answer {method} within {timeout_s:.0f} s")
            return self._result()

    def stop(self, *args: Any, timeout_s: float = 60.0) -> Any:
        """Stop the flow (``flow.stop(*args)``) and the process; return what ``flow.stop`` returned."""
        if self._process is None:
            return None
        result = None
        try:
            result = self.call("stop", *args, timeout_s=timeout_s)
        except (ChildError, OSError, EOFError) as exc:
            log.warning("%s process did not stop cleanly: %s", self.name, exc)
        self._process.join(5)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
        self._process = self._conn = None
        return result

    def _result(self) -> Any:
        assert self._conn is not None
        try:
            status, value = self._conn.recv()
        except EOFError as exc:
            raise ChildError(f"{self.name} process exited") from exc
        if status == "error":
            raise ChildError(f"{self.name}: {value}")
        return value
