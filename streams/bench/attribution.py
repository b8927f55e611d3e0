"""`gapstream bench attribution`: claim lines through decoding, corrections and attribution on one
worker, next to the raw confluent-kafka consume + decode rate of the same topic in the same run."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from streams import topics
from streams.bench.claims_feed import claims_feed
from streams.kafka.admin import ensure_topics
from streams.kafka.broker import die_with_parent, embedded_broker, free_port
from streams.models import MedicalClaim
from streams.serialization.codec import AvroCodec
from streams.sources.publish import publish

AS_OF = dt.date(2026, 6, 30)


def _metric(port: int, name: str, labels: str | None = None) -> float:
    """A metric of the worker (and its child processes): the sample with ``labels``, or with none
    given the sum over every label set; -1 when the worker does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return -1.0
    selector = re.escape(f"{{{labels}}}") if labels is not None else r"(?:\{[^}]*\})?"
    return sum(float(v) for v in re.findall(rf"^{name}{selector} ([0-9.e+]+)$", text, re.M))


@contextlib.contextmanager
def _worker(env: dict[str, str], log: Path) -> Iterator[int]:
    port = free_port()
    with open(log, "ab") as out:
        worker = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"],
                                  env={**env, "GAPSTREAM_WEB_PORT": str(port)},
                                  stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    try:
        yield port
    finally:
        worker.terminate()
        worker.wait(60)


class BenchError(RuntimeError):
    pass


def _wait_for_count(port: int, topic: str, count: int, log: Path, stall_s: float = 180.0) -> tuple[float, float]:
    """When the worker had consumed at least ``count`` messages of ``topic``, and how many exactly."""
    last, last_progress = -1.0, time.monotonic()
    while (done := _metric(port, "gapstream_messages_in_total", f'topic="{topic}"')) < count:
        if done > last:
            last, last_progress = done, time.monotonic()
        elif time.monotonic() - last_progress > stall_s:
            tail = log.read_text(errors="replace")[-4000:]
            raise BenchError(f"no progress on {topic} for {stall_s:.0f} s at {done:.0f}/{count}; worker log:\n{tail}")
        time.sleep(0.5)  # /metrics is not free for the worker
    return time.perf_counter(), done


def raw_consume(bootstrap: str, topic: str, expected: int) -> tuple[float, int]:
    """Seconds to consume and decode ``expected`` messages with confluent-kafka, and lines seen."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-raw-{time.time_ns()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    codec, seen, lines = AvroCodec(), 0, 0
    started = time.perf_counter()
    while seen < expected:
        for msg in consumer.consume(1000, timeout=1.0):
            if not msg.error():
                lines += len(codec.decode(msg.value(), MedicalClaim).lines)
                seen += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    return elapsed, lines


def run(members: int, lines: int, seed: int = 1, processes: int = 1) -> dict:
    feed = claims_feed(members, lines, AS_OF, seed)
    result: dict = {"attribution_processes": processes, "members": members, "claims": len(feed.claims),
                    "claim_lines": feed.lines, "providers": len(feed.providers)}
    with tempfile.TemporaryDirectory() as tmp, embedded_broker(Path(tmp) / "broker.log") as broker:
        ensure_topics(broker.bootstrap, topics.INGRESS_TOPICS, 4)
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "GAPSTREAM_DATA_DIR": tmp,
               "GAPSTREAM_ATTRIBUTION_CLOCK": AS_OF.isoformat(), "GAPSTREAM_LOG_LEVEL": "info",
               "GAPSTREAM_ATTRIBUTION_PROCESSES": str(processes)}
        env.pop("DATABASE_URL", None)
        # Coverage first, and processed, so that claims meet known members.
        log = Path(tmp) / "worker.log"
        with _worker(env, log) as port:
            asyncio.run(publish(broker.bootstrap, [*feed.providers, *feed.spans]))
            _wait_for_count(port, topics.ELIGIBILITY, members, log)
            # Coverage opens screening gaps; their alerts are routed before the claims are timed,
            # so that routing them does not share the cores with the drain.
            result["coverage_gap_alerts"] = _metric(port, "gapstream_gap_events_total")
            _wait_for_count(port, topics.ALERTS, int(result["coverage_gap_alerts"]), log)
        # Then the claims as a backlog, with no worker running: the worker is measured draining it
        # alone, not sharing the two cores with the publisher.
        started = time.perf_counter()
        asyncio.run(publish(broker.bootstrap, feed.claims))
        result["publish_claims_per_s"] = round(len(feed.claims) / (time.perf_counter() - started))
        with _worker(env, log) as port:
            # Timed from the first claim processed: the restart (state recovery, group join) is not in it.
            first_at, first_count = _wait_for_count(port, topics.CLAIMS_MEDICAL, 1, log)
            _wait_for_count(port, topics.CLAIMS_MEDICAL, len(feed.claims), log)
            elapsed = time.perf_counter() - first_at
            share = (len(feed.claims) - first_count) / len(feed.claims)
            result["worker_claims_per_s"] = round(len(feed.claims) * share / elapsed)
            result["worker_lines_per_s"] = round(feed.lines * share / elapsed)
            result["worker_rss_mb_at_end"] = round(_metric(port, "process_resident_memory_bytes") / 2**20)
            result["attribution_changes"] = _metric(port, "gapstream_attribution_changes_total")
        raw_s, raw_lines = raw_consume(broker.bootstrap, topics.CLAIMS_MEDICAL, len(feed.claims))
        result["raw_consume_decode_claims_per_s"] = round(len(feed.claims) / raw_s)
        result["raw_consume_decode_lines_per_s"] = round(raw_lines / raw_s)
        result["worker_vs_raw"] = round(result["worker_lines_per_s"] / result["raw_consume_decode_lines_per_s"], 3)
    return result
