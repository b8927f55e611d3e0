"""`gapstream bench pipeline`: the whole pipeline on the embedded default under a plan's load.

A generated population with its provider directory and coverage; then a backlog of medical claims and
pharmacy fills that one worker drains while the HIE's ADT feed streams over MLLP at a steady rate and
the ED-visit alerts go out as signed webhooks to a local receiver, as in the demo. Reported: each
stage's rate, the ED alerts' latency from MLLP receipt to the receiver (while the backlog drained, and
over the whole feed) and where it went (ADT agents, routing, the dispatcher's wait, the request), the
peak memory of each process, and the raw confluent-kafka consume + decode rate of the same claims and
fills in the same run, the ceiling of the drain.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import subprocess
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

from sqlalchemy import create_engine, text

from sinks.webhooks.signing import new_secret
from streams import topics
from streams.adt.mllp_client import SendReport, send_messages
from streams.bench.claims_feed import medical_claims, pharmacy_claims
from streams.bench.harness import (
    BenchError,
    metric,
    peak_rss_mb,
    raw_consume,
    timed_share,
    wait_for_count,
    wait_for_first,
    worker,
)
from streams.config import load
from streams.kafka.admin import ensure_topics
from streams.kafka.broker import embedded_broker, free_ports
from streams.models import MedicalClaim, PharmacyClaim
from streams.sources.publish import publish
from streams.tools.demo import percentile, spawn, subscribe, wait_listening
from streams.tools.generate import Population, adt_feed, ed_visits, eligibility, population, providers

BACKLOG = [topics.CLAIMS_MEDICAL, topics.CLAIMS_PHARMACY]


def _adt(pop: Population, seed: int, messages: int, ed: int) -> list[str]:
    """About ``ed`` ED visits among ``messages`` ADT messages, the other visits admissions; the feed is
    cut at ``messages``, as a live feed is at any moment."""
    per_ed, per_admission = (len(adt_feed(pop, seed, 1000, ed_share=share)) / 1000 for share in (1.0, 0.0))
    visits = ed + max(0, round((messages - ed * per_ed) / per_admission))
    return adt_feed(pop, seed, visits, ed_share=ed / visits)[:messages]


class _Receipts(threading.Thread):
    """The receiver's accepted alerts, each with the wall-clock time it was read."""

    def __init__(self, receiver: subprocess.Popen):
        super().__init__(daemon=True)
        self.receiver = receiver
        self.alerts: list[tuple[float, dict]] = []

    def run(self) -> None:
        assert self.receiver.stdout is not None
        for line in self.receiver.stdout:
            with contextlib.suppress(ValueError):
                self.alerts.append((time.time(), json.loads(line)))


def _latencies(receipts: list[tuple[float, dict]], prefix: str) -> dict:
    values = sorted(alert["latency_ms"] for _, alert in receipts if alert.get("latency_ms") is not None)
    out: dict = {f"{prefix}_alerts": len(values)}
    for q in (50, 95, 99):
        value = percentile(values, q)
        out[f"{prefix}_ms_p{q}"] = round(value) if value is not None else None
    out[f"{prefix}_ms_max"] = round(values[-1]) if values else None
    return out


def _stages(database_url: str) -> dict:
    """Where the ED alerts' time went, from the store: MLLP receipt to the alert raised by the ADT
    agents, to its deliveries queued by routing, to the dispatcher's first attempt, and that attempt."""
    # An attempt is recorded when its answer came: it started its duration earlier.
    query = text("""select a.created_at_ms - a.received_at_ms, d.created_at * 1000 - a.created_at_ms,
                           t.at * 1000 - t.duration_ms - d.created_at * 1000, t.duration_ms
                    from alerts a join deliveries d on d.alert_id = a.alert_id
                    join delivery_attempts t on t.webhook_id = d.webhook_id and t.attempt = 1
                    where a.alert_type = 'adt.ed_visit'""")
    engine = create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    engine.dispose()
    out = {}
    for i, stage in enumerate(("adt_agents", "routing", "dispatch_wait", "webhook_request")):
        values = sorted(row[i] for row in rows)
        for q in (50, 95):
            value = percentile(values, q)
            out[f"ed_stage_{stage}_ms_p{q}"] = round(value) if value is not None else None
    return out


def _settle(port: int, receipts: _Receipts, quiet_s: float = 3.0, timeout_s: float = 180.0) -> None:
    """Until no delivery is pending and the receiver has taken nothing new for ``quiet_s``."""
    deadline, seen, since = time.monotonic() + timeout_s, -1, time.monotonic()
    while time.monotonic() < deadline:
        if len(receipts.alerts) != seen:
            seen, since = len(receipts.alerts), time.monotonic()
        elif time.monotonic() - since > quiet_s and metric(port, "gapstream_webhook_pending_deliveries") == 0:
            return
        time.sleep(0.5)
    raise BenchError(f"deliveries still pending after {timeout_s:.0f} s")


def run(members: int, lines: int, fills: int, adt: int, ed: int, adt_rate: float, seed: int = 1) -> dict:
    began = time.perf_counter()
    today = dt.date.today()
    rng = random.Random(seed)
    pop = population(seed, members, today)
    member_ids = [m.member_id for m in pop.members]
    claims = medical_claims(member_ids, [n for o in pop.organizations for n in o.pcp_npis], lines, today, rng)
    backlog = [*claims, *pharmacy_claims(member_ids, fills, today, rng)]
    reference = [*providers(pop), *eligibility(pop, today)]
    texts = _adt(pop, seed, adt, ed)
    feed = [t.encode() for t in texts]
    claim_lines = sum(len(c.lines) for c in claims)
    result: dict = {"members": members, "organizations": len(pop.organizations), "claims": len(claims),
                    "claim_lines": claim_lines, "fills": fills, "adt_messages": len(feed),
                    "ed_visits": len(ed_visits(texts)), "generate_s": round(time.perf_counter() - began, 1)}

    with tempfile.TemporaryDirectory() as tmp, embedded_broker(Path(tmp) / "broker.log") as broker:
        ensure_topics(broker.bootstrap, topics.INGRESS_TOPICS, 4)
        receiver_port, mllp_port, metrics_port = free_ports(3)
        secret = new_secret()
        settings = replace(load(), data_dir=Path(tmp), database_url=None, webhook_allowed_hosts=("127.0.0.1",))
        subscribe(settings, pop.organizations, f"http://127.0.0.1:{receiver_port}/alerts", ("adt.ed_visit",), secret)
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "GAPSTREAM_DATA_DIR": tmp,
               "GAPSTREAM_MLLP_PORT": str(mllp_port), "GAPSTREAM_MLLP_METRICS_PORT": str(metrics_port),
               "GAPSTREAM_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1", "GAPSTREAM_LOG_LEVEL": "info"}
        env.pop("DATABASE_URL", None)
        log = Path(tmp) / "worker.log"
        receiver = spawn(["receiver", "--port", str(receiver_port), "--secret", secret], env, subprocess.PIPE)
        mllp = spawn(["mllp"], env)
        receipts = _Receipts(receiver)
        receipts.start()
        try:
            wait_listening(mllp_port)
            # Directory and coverage first, processed, and the screening gaps they open routed, so
            # the timed stages below start from a plan's standing state.
            with worker(env, log) as running:
                started = time.perf_counter()
                asyncio.run(publish(broker.bootstrap, reference))
                wait_for_count(running.port, [topics.PROVIDERS, topics.ELIGIBILITY], len(reference), log)
                result["reference_records_per_s"] = round(len(reference) / (time.perf_counter() - started))
                wait_for_count(running.port, topics.GAP_ALERTS + ":sql",
                               int(metric(running.port, "gapstream_gap_events_total")), log)
            # The backlog is published with no worker running, so that the drain is measured alone
            # on the cores, not next to the publisher.
            started = time.perf_counter()
            asyncio.run(publish(broker.bootstrap, backlog))
            result["publish_backlog_per_s"] = round(len(backlog) / (time.perf_counter() - started))
            with worker(env, log) as running:
                # Timed from the first backlog message processed: recovery and group join are not in it.
                first_at, first = wait_for_first(running.port, BACKLOG, log)
                report = SendReport()
                sending_from = time.perf_counter()
                sender = threading.Thread(target=lambda: _send(mllp_port, feed, adt_rate, report), daemon=True)
                sender.start()
                drained_at, _ = wait_for_count(running.port, BACKLOG, len(backlog), log)
                drained_wall = time.time()
                drain_s = drained_at - first_at
                share = timed_share(len(backlog), first)
                result.update({
                    "backlog_drain_s": round(drain_s, 1),
                    "backlog_events_per_s": round(len(backlog) * share / drain_s),
                    "claims_per_s": round(len(claims) * share / drain_s),
                    "claim_lines_per_s": round(claim_lines * share / drain_s),
                    "fills_per_s": round(fills * share / drain_s),
                })
                sender.join(len(feed) / adt_rate * 3 + 120)
                if sender.is_alive() or report.seconds == 0:
                    raise BenchError("the ADT feed did not finish sending")
                accepted = report.acks.count("AA")
                adt_done_at, _ = wait_for_count(running.port, topics.ADT_RAW, accepted, log)
                # How far the worker's ADT agents trailed the feed when it ended: 0 when they kept pace.
                result["adt_consumed_after_feed_end_s"] = round(adt_done_at - sending_from - report.seconds, 1)
                _settle(running.port, receipts)
                # By MLLP receipt: an alert received during the drain counts however late it arrived.
                during = [r for r in receipts.alerts if r[0] - (r[1]["latency_ms"] or 0) / 1000 <= drained_wall]
                result.update({
                    "adt_acks": {code: report.acks.count(code) for code in sorted(set(report.acks))},
                    "mllp_messages_per_s": round(len(feed) / report.seconds, 1),
                    "ed_alerts_raised": metric(running.port, "gapstream_alerts_total", 'alert_type="adt.ed_visit"'),
                    "ed_alerts_routed": metric(running.port, "gapstream_alerts_routed_total",
                                               'alert_type="adt.ed_visit",routed="yes"'),
                    "webhooks_received": len(receipts.alerts),
                    **_latencies(during, "ed_latency_during_backlog"),
                    **_latencies(receipts.alerts, "ed_latency"),
                    **_stages(settings.sqlalchemy_url),
                    "peak_rss_mb_worker": peak_rss_mb(running.pid),
                    "peak_rss_mb_mllp": peak_rss_mb(mllp.pid),
                    "peak_rss_mb_receiver": peak_rss_mb(receiver.pid),
                    "peak_rss_mb_broker": peak_rss_mb(broker.process.pid),
                })
        finally:
            for child in (receiver, mllp):
                child.terminate()
                child.wait(10)
        result["peak_rss_mb_total"] = round(sum(v for k, v in result.items() if k.startswith("peak_rss_mb_")), 1)
        raw_s, _ = raw_consume(broker.bootstrap, {topics.CLAIMS_MEDICAL: MedicalClaim,
                                                  topics.CLAIMS_PHARMACY: PharmacyClaim}, len(backlog))
        result["raw_consume_decode_events_per_s"] = round(len(backlog) / raw_s)
        result["worker_vs_raw"] = round(result["backlog_events_per_s"] / result["raw_consume_decode_events_per_s"], 3)
    result["total_s"] = round(time.perf_counter() - began)
    return result


def _send(port: int, feed: list[bytes], rate: float, report: SendReport) -> None:
    # Two connections, so that one slow answer does not hold the pace.
    sent = asyncio.run(send_messages("127.0.0.1", port, feed, connections=2, rate_per_s=rate))
    report.acks, report.seconds = sent.acks, sent.seconds
