"""`gapstream bench attribution`: claim lines through decoding, corrections and attribution on one
worker, next to the raw confluent-kafka consume + decode rate of the same topic in the same run."""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import tempfile
import time
from pathlib import Path

from streams import topics
from streams.bench.claims_feed import claims_feed
from streams.bench.harness import (
    cpu_seconds,
    cpu_us_per,
    metric,
    raw_consume,
    timed_share,
    wait_for_count,
    wait_for_first,
    worker,
)
from streams.config import load
from streams.kafka.admin import ensure_topics
from streams.kafka.broker import embedded_broker
from streams.models import MedicalClaim
from streams.sources.publish import publish

AS_OF = dt.date(2026, 6, 30)


def run(members: int, lines: int, seed: int = 1, processes: int | None = None) -> dict:
    processes = processes or load().attribution_processes
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
        with worker(env, log) as running:
            asyncio.run(publish(broker.bootstrap, [*feed.providers, *feed.spans]))
            wait_for_count(running.port, topics.ELIGIBILITY, members, log)
            # Coverage opens screening gaps; their alerts are routed before the claims are timed,
            # so that routing them does not share the cores with the drain.
            result["coverage_gap_alerts"] = metric(running.port, "gapstream_gap_events_total")
            wait_for_count(running.port, topics.GAP_ALERTS + ":sql", int(result["coverage_gap_alerts"]), log)
        # Then the claims as a backlog, with no worker running: the worker is measured draining it
        # alone, not sharing the two cores with the publisher.
        started = time.perf_counter()
        asyncio.run(publish(broker.bootstrap, feed.claims))
        result["publish_claims_per_s"] = round(len(feed.claims) / (time.perf_counter() - started))
        with worker(env, log) as running:
            # Timed from the first claim processed: the restart (state recovery, group join) is not in it.
            first_at, first_count = wait_for_first(running.port, topics.CLAIMS_MEDICAL, log)
            cpu_before = cpu_seconds(running.port, broker.process.pid)
            wait_for_count(running.port, topics.CLAIMS_MEDICAL, len(feed.claims), log)
            elapsed = time.perf_counter() - first_at
            share = timed_share(len(feed.claims), first_count)
            result["cpu_us_per_claim"] = cpu_us_per(len(feed.claims) - first_count, cpu_before,
                                                    cpu_seconds(running.port, broker.process.pid))
            result["worker_claims_per_s"] = round(len(feed.claims) * share / elapsed)
            result["worker_lines_per_s"] = round(feed.lines * share / elapsed)
            result["worker_rss_mb_at_end"] = round(metric(running.port, "process_resident_memory_bytes") / 2**20)
            result["attribution_changes"] = metric(running.port, "gapstream_attribution_changes_total")
        raw_s, raw_lines = raw_consume(broker.bootstrap, {topics.CLAIMS_MEDICAL: MedicalClaim},
                                       len(feed.claims))
        result["raw_consume_decode_claims_per_s"] = round(len(feed.claims) / raw_s)
        result["raw_consume_decode_lines_per_s"] = round(raw_lines / raw_s)
        result["worker_vs_raw"] = round(result["worker_lines_per_s"] / result["raw_consume_decode_lines_per_s"], 3)
    return result
