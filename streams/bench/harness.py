"""What the benchmarks share: a worker under test in a subprocess, its /metrics, waiting for it to
consume a topic, and the raw confluent-kafka rate of the same topics as the ceiling."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from streams.kafka.admin import ensure_topics
from streams.kafka.broker import die_with_parent, free_port
from streams.kafka.clients import producer_config
from streams.models import MedicalClaim, Record
from streams.serialization.codec import AvroCodec


def _scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return r.read().decode()
    except OSError:
        return None


def metric(port: int, name: str, labels: str | list[str] | None = None) -> float:
    """A metric of the worker (and its child processes): the sum of the samples with ``labels`` (one
    label set or several), or with none given of every label set; -1 when the worker does not answer."""
    text = _scrape(port)
    if text is None:
        return -1.0
    sets = [labels] if isinstance(labels, str) else labels
    selector = "|".join(re.escape(f"{{{s}}}") for s in sets) if sets else r"(?:\{[^}]*\})?"
    return sum(float(v) for v in re.findall(rf"^{name}(?:{selector}) ([0-9.e+]+)$", text, re.M))


def cpu_by_process(exposition: str) -> dict[str, float]:
    """CPU seconds used so far by each process of a worker's exposition: the worker itself
    ("worker") and its child processes by name (``process`` label)."""
    return {name or "worker": float(value) for name, value in re.findall(
        r'^process_cpu_seconds_total(?:\{process="([^"]+)"\})? ([0-9.e+]+)$', exposition, re.M)}


def cpu_seconds(port: int, broker_pid: int) -> dict[str, float]:
    """CPU seconds used so far by the worker's processes and the embedded broker: where a bench's
    two cores went, so that a rate comes with what limits it."""
    found = cpu_by_process(_scrape(port) or "")
    with open(f"/proc/{broker_pid}/stat") as stat:  # utime and stime, in clock ticks
        fields = stat.read().rpartition(")")[2].split()
    found["broker"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


def cpu_us_per(count: int, before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    """CPU µs per processed item of each process between two readings of :func:`cpu_seconds`."""
    spent = {name: (after[name] - before.get(name, 0.0)) * 1e6 / max(count, 1) for name in after}
    return {**{name: round(us) for name, us in spent.items()}, "all": round(sum(spent.values()))}


@dataclass(frozen=True)
class Worker:
    port: int  # of its web server
    pid: int


@contextlib.contextmanager
def worker(env: dict[str, str], log: Path) -> Iterator[Worker]:
    port = free_port()
    with open(log, "ab") as out:
        worker = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"],
                                  env={**env, "GAPSTREAM_WEB_PORT": str(port)},
                                  stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    try:
        yield Worker(port, worker.pid)
    finally:
        worker.terminate()
        worker.wait(60)


class BenchError(RuntimeError):
    pass


WARM_UP_TOPIC = "bench.warm-up"


def warm_producer(bootstrap: str) -> Producer:
    """A producer that has already had a write acknowledged. A new one first fetches metadata and
    its idempotent producer id, and holds its writes meanwhile: on the embedded broker the first
    half second or more of messages waits, which a latency measured from the first send would count
    against the pipeline, though a long-running producer never pays it."""
    ensure_topics(bootstrap, [WARM_UP_TOPIC], 1)
    producer = Producer(producer_config(bootstrap))
    producer.produce(WARM_UP_TOPIC, value=b"")
    if producer.flush(30) > 0:
        raise BenchError("the broker did not acknowledge a first write within 30 s")
    return producer


def wait_for_count(port: int, topic: str | list[str], count: int, log: Path, stall_s: float = 180.0,
                   every_s: float = 0.5) -> tuple[float, float]:
    """When the worker had consumed at least ``count`` messages of ``topic`` (or of the topics
    together), and how many exactly."""
    names = [topic] if isinstance(topic, str) else topic
    labels = [f'topic="{t}"' for t in names]
    done = _poll(lambda: metric(port, "gapstream_messages_in_total", labels), lambda n: n >= count,
                 f"messages consumed of {topic} (of {count})", log, stall_s, every_s)
    return time.perf_counter(), done


def wait_for_first(port: int, topic: str | list[str], log: Path) -> tuple[float, float]:
    """When a drain started (its first message consumed), and how much of it was consumed by then.
    Looked for every 50 ms: a small backlog can drain within one 0.5 s look and leave nothing to
    time (see :func:`timed_share`)."""
    return wait_for_count(port, topic, 1, log, every_s=0.05)


def timed_share(total: int, first: float) -> float:
    """The share of a drain of ``total`` messages that was timed, the first look having seen
    ``first`` of them consumed. None of it timed is an error, not a rate of zero."""
    if first >= total:
        raise BenchError(f"all {total} messages were consumed before the first look: too few to time")
    return (total - first) / total


def wait_for_stored(port: int, log: Path, stall_s: float = 300.0) -> float:
    """When every consumer group of the worker (its SQL sinks above all) had committed everything
    written to its topics: the processor's outputs are stored, not only produced. Returns then."""
    # The lag is measured at most every 10 s, asking the broker: no use asking more often.
    _poll(lambda: metric(port, "gapstream_consumer_lag_messages"), lambda lag: lag == 0,
          "consumer lag", log, stall_s, every_s=2.0)
    return time.perf_counter()


def _poll(read: Callable[[], float], reached: Callable[[float], bool], what: str, log: Path, stall_s: float,
          every_s: float) -> float:
    """Read a worker's figure until it is ``reached``; fail when it has not moved for ``stall_s``
    (-1, the worker not answering, is no move). Not more often than ``every_s``: /metrics is not
    free for the worker."""
    last, moved_at = None, time.monotonic()
    while not reached(value := read()):
        if value >= 0 and value != last:
            last, moved_at = value, time.monotonic()
        elif time.monotonic() - moved_at > stall_s:
            # The whole log outlives the bench's temporary directory: a stall's cause is often far
            # above its tail (a consumer group that never assigned a process its partitions).
            kept = Path.cwd() / f"gapstream-bench-stalled-{time.strftime('%Y%m%dT%H%M%S')}.log"
            shutil.copyfile(log, kept)
            tail = log.read_text(errors="replace")[-4000:]
            raise BenchError(f"{what} stuck at {value:.0f} for {stall_s:.0f} s; worker log in {kept}, its end:\n{tail}")
        time.sleep(every_s)
    return value


def raw_consume(bootstrap: str, types: dict[str, type[Record]], expected: int) -> tuple[float, int]:
    """Seconds to consume and decode ``expected`` messages of the topics in ``types`` (topic →
    message class) with confluent-kafka: the ceiling a worker's rate is compared with. Also returns
    the claim lines seen."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-raw-{time.time_ns()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, p, 0) for topic in types
                     for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions])
    codec, seen, lines = AvroCodec(), 0, 0
    # Timed from the first message read, as the workers' rates are: the wait for the first fetch is
    # no part of the rate, and at a small size it would be most of the time.
    started, first = time.perf_counter(), None
    while seen < expected:
        if time.perf_counter() - started > 600:
            raise BenchError(f"raw consume read {seen} of {expected} messages in 600 s")
        batch = consumer.consume(1000, timeout=1.0)
        if batch and first is None:
            first = time.perf_counter()
        for msg in batch:
            if not msg.error():
                decoded = codec.decode(msg.value(), types[msg.topic()])
                lines += len(decoded.lines) if isinstance(decoded, MedicalClaim) else 0
                seen += 1
    elapsed = time.perf_counter() - (first or started)
    consumer.close()
    return elapsed, lines


def processes() -> dict[int, tuple[str, int]]:
    """Every process on this machine: pid -> (name, parent pid), from /proc."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The command name may hold spaces and parentheses; the fields after its last ")" do not.
            name, after = stat.read_text().split("(", 1)[1].rsplit(")", 1)
            found[int(stat.parent.name)] = (name, int(after.split()[1]))
    return found


def peak_rss_mb(pid: int) -> float:
    """The peak resident memory (VmHWM) of a process and of each of its descendants, summed, in MiB:
    an upper bound of what the tree held at once. Read it before the processes exit."""
    parents = {child: parent for child, (_, parent) in processes().items()}
    tree, frontier = set(), {pid}
    while frontier:
        tree |= frontier
        frontier = {child for child, parent in parents.items() if parent in frontier} - tree
    total_kb = 0
    for member in tree:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total_kb += int(line.split()[1])
    return round(total_kb / 1024, 1)
