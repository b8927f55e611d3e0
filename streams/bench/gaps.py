"""`gapstream bench gaps`: a year of claims, fills and ED visits through care-gap evaluation on one
worker, next to the raw consume rate of the same topics; then, with the worker caught up, the time
from a follow-up claim arriving to its gap.closed alert.

Every member is in FMC's denominator (Medicare Advantage, two chronic conditions on claims), so each
ED visit opens a follow-up gap that a later claim can close.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import create_engine, func, select

from sinks.sql.models import CareGap
from streams import topics
from streams.bench.claims_feed import claims_feed, pharmacy_claims
from streams.bench.harness import (
    BenchError,
    cpu_seconds,
    cpu_us_per,
    metric,
    raw_consume,
    timed_share,
    wait_for_count,
    wait_for_first,
    wait_for_stored,
    warm_producer,
    worker,
)
from streams.codesets import codeset
from streams.kafka.admin import ensure_topics
from streams.kafka.broker import embedded_broker
from streams.models import Alert, ClaimLine, Encounter, MedicalClaim, PharmacyClaim
from streams.serialization.codec import AvroCodec
from streams.sources.publish import publish
from streams.tools.demo import percentile

AS_OF = dt.date(2026, 6, 30)


def _conditions(member_ids: list[str], npi: str) -> list[MedicalClaim]:
    """Heart failure and COPD on a claim of each member: two FMC condition groups."""
    day = (AS_OF - dt.timedelta(days=200)).isoformat()
    return [MedicalClaim(claim_id=f"H{m}", frequency_code="1", member_id=m, claim_type="PROFESSIONAL",
                         rendering_npi=npi, diagnosis_codes=["I509", "J449"], received_at_ms=0,
                         lines=[ClaimLine(line_number=1, service_date=day, procedure_code="99213",
                                          allowed_amount=90.0)]) for m in member_ids]


def _follow_up(member_id: str, npi: str, n: int) -> MedicalClaim:
    return MedicalClaim(claim_id=f"FU{n:07d}", frequency_code="1", member_id=member_id, claim_type="PROFESSIONAL",
                        rendering_npi=npi, diagnosis_codes=["I509"], received_at_ms=0,
                        lines=[ClaimLine(line_number=1, service_date=AS_OF.isoformat(), procedure_code="99214",
                                         allowed_amount=120.0)])


class _ClosedWatch(threading.Thread):
    """Notes when each gap.closed alert naming a follow-up claim reaches its topic."""

    def __init__(self, bootstrap: str):
        super().__init__(daemon=True)
        self.seen: dict[str, float] = {}  # closing claim id -> time the alert was read
        self.stop = threading.Event()
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-gaps-{time.time_ns()}",
                                   "enable.auto.commit": False, "fetch.wait.max.ms": 10})
        topic = topics.GAP_ALERTS
        partitions = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        # From explicit offsets: OFFSET_END is resolved only at the first fetch, after which claims
        # sent meanwhile would be skipped. Starting a little early (see streams/kafka/reading.py) only
        # re-reads alerts no follow-up claim names.
        self._consumer.assign([TopicPartition(topic, p, self._consumer.get_watermark_offsets(
            TopicPartition(topic, p), timeout=10)[1]) for p in partitions])

    def run(self) -> None:
        codec = AvroCodec()
        while not self.stop.is_set():
            # What is there now, else the next message as soon as it comes: a batch call waits out
            # its whole timeout for a full batch, which would add up to that much to every latency.
            batch = self._consumer.consume(500, timeout=0) or self._consumer.consume(1, timeout=0.1)
            for msg in batch:
                if msg.error():
                    continue
                alert = codec.decode(msg.value(), Alert)
                if alert.alert_type == "gap.closed" and alert.gap and "evidence" in alert.gap.detail:
                    self.seen.setdefault(alert.gap.detail["evidence"], time.time())
        self._consumer.close()


def _still_open(visited: list[str], claims: list[MedicalClaim]) -> list[str]:
    """The visited members no backlog claim has already followed up (a service of FMC's numerator
    in the last days), whose gap a live claim will close."""
    services, recent = codeset("ed_follow_up_services"), (AS_OF - dt.timedelta(days=3)).isoformat()
    followed = {c.member_id for c in claims for line in c.lines
                if line.service_date >= recent and line.procedure_code in services}
    return [m for m in visited if m not in followed]


def _stored_gaps(database: Path, measure_id: str) -> dict[str, int]:
    """The measure's gaps in the worker's store, by status. Counted there rather than by gap.opened
    alerts: a visit read after the claim that follows it up is announced once, as closed."""
    engine = create_engine(f"sqlite:///{database}")
    with engine.connect() as connection:
        rows = connection.execute(select(CareGap.status, func.count()).where(CareGap.measure_id == measure_id)
                                  .group_by(CareGap.status)).all()
    engine.dispose()
    return dict(sorted((status, count) for status, count in rows))


def _trickle(bootstrap: str, claims: list[MedicalClaim], rate: float) -> dict[str, float]:
    """Send the claims at ``rate`` a second; return when each was handed to the client."""
    producer, codec, sent_at = warm_producer(bootstrap), AvroCodec(), {}
    started = time.time()
    for n, claim in enumerate(claims):
        time.sleep(max(0.0, started + n / rate - time.time()))
        claim.received_at_ms = int(time.time() * 1000)
        sent_at[claim.claim_id] = time.time()
        producer.produce(topics.CLAIMS_MEDICAL, key=claim.member_id.encode(), value=codec.encode(claim))
        producer.poll(0)
    producer.flush(30)
    return sent_at


def run(members: int, lines: int, fills: int, ed_visits: int, closing: int, rate: float, seed: int = 1) -> dict:
    rng = random.Random(seed)
    feed = claims_feed(members, lines, AS_OF, seed)
    for span in feed.spans:  # in FMC's denominator: Medicare Advantage, aged 76
        span.product_line, span.birth_date = "MEDICARE_ADVANTAGE", "1950-01-01"
    member_ids = [s.member_id for s in feed.spans]
    npi = feed.providers[0].npi
    visited = rng.sample(member_ids, ed_visits)
    encounters = [Encounter(encounter_id=f"BENCHED|V{i}", member_id=m, kind="ed_visit",
                            day=(AS_OF - dt.timedelta(days=rng.randrange(3))).isoformat(), facility="BENCHED",
                            received_at_ms=0) for i, m in enumerate(visited)]
    backlog = {topics.CLAIMS_MEDICAL: [*_conditions(member_ids, npi), *feed.claims],
               topics.CLAIMS_PHARMACY: pharmacy_claims(member_ids, fills, AS_OF, rng), topics.ENCOUNTERS: encounters}
    events = sum(len(v) for v in backlog.values())
    result: dict = {"members": members, "claims": len(backlog[topics.CLAIMS_MEDICAL]), "claim_lines": feed.lines,
                    "fills": fills, "ed_visits": ed_visits, "events": events}
    with tempfile.TemporaryDirectory() as tmp, embedded_broker(Path(tmp) / "broker.log") as broker:
        ensure_topics(broker.bootstrap, [*topics.INGRESS_TOPICS, topics.ENCOUNTERS, topics.GAP_ALERTS], 4)
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "GAPSTREAM_DATA_DIR": tmp,
               "GAPSTREAM_ATTRIBUTION_CLOCK": AS_OF.isoformat(), "GAPSTREAM_LOG_LEVEL": "info"}
        env.pop("DATABASE_URL", None)
        log = Path(tmp) / "worker.log"
        with worker(env, log) as running:
            asyncio.run(publish(broker.bootstrap, [*feed.providers, *feed.spans]))
            wait_for_count(running.port, topics.ELIGIBILITY, members, log)
        asyncio.run(publish(broker.bootstrap, [r for records in backlog.values() for r in records]))
        with worker(env, log) as running:
            first_at, first = wait_for_first(running.port, list(backlog), log)
            cpu_before = cpu_seconds(running.port, broker.process.pid)
            wait_for_count(running.port, list(backlog), events, log)
            elapsed = time.perf_counter() - first_at
            result["worker_events_per_s"] = round(events * timed_share(events, first) / elapsed)
            result["cpu_us_per_event"] = cpu_us_per(events - first, cpu_before,
                                                    cpu_seconds(running.port, broker.process.pid))
            # The SQL sinks store the backlog's alerts and changes after the processor has made them,
            # sharing the two cores; live claims sent meanwhile would be timed against that.
            result["stored_s_after_processed"] = round(wait_for_stored(running.port, log) - first_at - elapsed, 1)
            result["fmc_gaps_stored"] = _stored_gaps(Path(tmp) / "gapstream.db", "FMC")
            # Live: the worker has caught up; follow-up claims arrive at ``rate`` a second.
            targets = _still_open(visited, feed.claims)[:closing]
            claims = [_follow_up(member, npi, n) for n, member in enumerate(targets)]
            watch = _ClosedWatch(broker.bootstrap)
            watch.start()
            sent_at = _trickle(broker.bootstrap, claims, rate)
            deadline = time.monotonic() + 120
            # Counted by claim: the watcher may also have read a backlog claim's gap.closed.
            while (closed := len(sent_at.keys() & watch.seen.keys())) < len(claims) and time.monotonic() < deadline:
                time.sleep(0.2)
            watch.stop.set()
            if closed < len(claims):
                raise BenchError(f"only {closed} of {len(claims)} follow-up claims closed a gap in time")
            latencies = sorted(watch.seen[c] - sent_at[c] for c in sent_at)
            for q in (50, 95, 99):
                result[f"gap_closed_latency_ms_p{q}"] = round(percentile(latencies, q) * 1000)
            result["gap_closed_latency_ms_max"] = round(latencies[-1] * 1000)
            result["worker_rss_mb_at_end"] = round(metric(running.port, "process_resident_memory_bytes") / 2**20)
        raw_s, _ = raw_consume(broker.bootstrap, {topics.CLAIMS_MEDICAL: MedicalClaim,
                                                  topics.CLAIMS_PHARMACY: PharmacyClaim,
                                                  topics.ENCOUNTERS: Encounter}, events)
        result["raw_consume_decode_events_per_s"] = round(events / raw_s)
        result["worker_vs_raw"] = round(result["worker_events_per_s"] / result["raw_consume_decode_events_per_s"], 3)
    return result
