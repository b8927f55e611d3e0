"""`gapstream bench delivery`: the dispatcher a worker runs, sending from a SQLite outbox to 200
subscriptions over 50 loopback endpoints, first with every endpoint healthy, then with a fifth of
them failing (503) or hanging (no answer before the timeout), side by side in one run.

Each condition is measured twice:
- drain: a backlog queued beforehand, sent as fast as the dispatcher can; deliveries a second to
  the healthy endpoints;
- paced: alerts queued at a steady rate while the dispatchers send, each alert ringing their
  doorbells as the worker's sink process does; latency from queueing to the receiver, healthy
  endpoints only. The two conditions take turns in rounds, and each one's latencies are pooled over
  its rounds.
The dispatchers are the worker's own (``GAPSTREAM_WEBHOOK_DISPATCHERS`` processes, sinks/process.py),
started afresh for each phase; the receivers run in a process of their own.
"""
from __future__ import annotations

import asyncio
import json
import multiprocessing
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from aiohttp import web
from cryptography.fernet import Fernet
from prometheus_client.parser import text_string_to_metric_families

from sinks.process import DispatcherProcesses
from sinks.sql.sealing import Sealer
from sinks.sql.store import Store
from sinks.sql.subscriptions import Spec
from sinks.webhooks.doorbell import Ringer
from sinks.webhooks.egress import Egress
from streams.child import ChildProcess
from streams.config import load
from streams.kafka.broker import free_ports
from streams.models import Alert
from streams.tools.demo import percentile

ENDPOINTS, SUBS_PER_ENDPOINT = 50, 4
HANG_S = 60.0


def _serve(ports: dict[int, str], conn) -> None:
    """Receivers: ``ok`` answers 204, ``fail`` 503, ``hang`` never before the sender gives up.
    Healthy receipts are reported when asked: the latency in ms from the event's timestamp of each
    first receipt, and how many were receipts again of a ``webhook-id`` already seen (a delivery cut
    off by a dispatcher's stop is sent again once its lease ends; it is not a new sample)."""
    received: list[float] = []
    seen: set[str] = set()
    repeats = 0

    async def handle(request: web.Request) -> web.Response:
        nonlocal repeats
        mode = ports[request.url.port]
        body = await request.read()
        if mode == "hang":  # the sender gave up long before; this answer is no receipt
            await asyncio.sleep(HANG_S)
            return web.Response(status=204)
        if mode == "fail":
            return web.Response(status=503)
        webhook_id = request.headers["webhook-id"]
        if webhook_id in seen:
            repeats += 1
        else:
            seen.add(webhook_id)
            received.append(time.time() * 1000 - json.loads(body)["data"]["created_at_ms"])
        return web.Response(status=204)

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        for port in ports:
            await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        conn.send("ready")
        while True:
            await asyncio.sleep(3600)

    def answer() -> None:
        nonlocal repeats
        while True:
            conn.recv()
            taken, repeated = received[:], repeats
            del received[:len(taken)]
            repeats -= repeated
            conn.send((taken, repeated))

    threading.Thread(target=answer, daemon=True).start()
    asyncio.run(main())


def _alert(i: int, org: str, now_ms: int) -> Alert:
    return Alert(alert_id=f"bench-{i}", alert_type="adt.ed_visit", facility="HOSP", event_type="A04",
                 received_at_ms=now_ms, created_at_ms=now_ms, member_id=f"M{i}", organization_id=org)


@dataclass
class _Condition:
    """One outbox with its subscriptions, all healthy or with some unhealthy endpoints."""
    store: Store
    url: str
    key: str  # the key sealing its signing secrets, for the dispatcher processes
    orgs: list[tuple[str, str]]  # (organization, mode of its endpoint), one per endpoint
    queued: int = 0  # alerts queued so far

    def queue(self, now_ms: int) -> bool:
        """One more alert; whether its endpoint is healthy."""
        org, mode = self.orgs[self.queued % len(self.orgs)]
        self.store.outbox.save_alerts([_alert(self.queued, org, now_ms)])
        self.queued += 1
        return mode == "ok"


def _condition(data_dir: Path, name: str, modes: list[str], ports: list[int]) -> _Condition:
    (data_dir / name).mkdir()
    url, key = f"sqlite:///{data_dir / name / 'bench.db'}", Fernet.generate_key().decode()
    store = Store(url, Sealer([key]), egress=Egress(["127.0.0.1"]))
    orgs = []
    for e, (port, mode) in enumerate(zip(ports, modes, strict=True)):
        org = f"ORG{e:02d}-{mode}"
        store.subscriptions.add_organization(org, org, "bench")
        for s in range(SUBS_PER_ENDPOINT):
            store.subscriptions.create(org, Spec(url=f"http://127.0.0.1:{port}/s{s}"), "bench")
        orgs.append((org, mode))
    return _Condition(store, url, key, orgs)


class _Dispatchers:
    """The worker's dispatcher processes on a condition's outbox, with a short retry schedule so
    failing endpoints come back during the run; alerts queued meanwhile ring their doorbells, as the
    sink process's do."""

    def __init__(self, condition: _Condition, count: int, concurrency: int, timeout_s: float):
        settings = replace(load(), database_url=condition.url, secret_keys=(condition.key,),
                           webhook_allowed_hosts=("127.0.0.1",), webhook_timeout_s=timeout_s,
                           webhook_schedule_s=(0, 5, 300), webhook_endpoint_concurrency=concurrency,
                           webhook_dispatchers=count, smtp_url=None)
        self._processes = DispatcherProcesses(settings)
        self._outbox = condition.store.outbox
        self._ringer, self._quiet = Ringer(self._processes.bells), self._outbox.on_queued

    def __enter__(self) -> _Dispatchers:
        # Started together (each takes a second or two) from threads that outlive them: a child dies
        # with the thread that started it (streams/kafka/broker.py, die_with_parent).
        children = self._processes.children
        self._starters = ThreadPoolExecutor(len(children))
        list(self._starters.map(ChildProcess.start, children))
        self._outbox.on_queued = self._ringer.ring
        return self

    def __exit__(self, *exc: object) -> None:
        self._outbox.on_queued = self._quiet
        self._processes.stop()
        self._starters.shutdown()

    def counts(self) -> Counter[str]:
        """Attempts by outcome and claims by whether they found work, so far."""
        counts: Counter[str] = Counter()
        for child in self._processes.children:
            for family in text_string_to_metric_families(child.call("metrics").decode()):
                if family.name in ("gapstream_webhook_attempts", "gapstream_webhook_claims"):
                    prefix = family.name.rsplit("_", 1)[1]
                    for sample in family.samples:
                        if sample.name.endswith("_total"):
                            counts[f"{prefix}_{next(iter(sample.labels.values()))}"] += int(sample.value)
        return counts


def _drain(condition: _Condition, backlog: int, conn, dispatchers: Callable[[], _Dispatchers]) -> dict:
    """A backlog queued first (not timed), then sent as fast as the dispatchers can. Timed from the
    first receipt to the last: the backlog's alerts share one timestamp, so their latencies are
    their receipt times."""
    now_ms = int(time.time() * 1000)
    expected = sum(condition.queue(now_ms) for _ in range(backlog)) * SUBS_PER_ENDPOINT
    with dispatchers() as running:
        got, repeated = _collect(conn, expected, time.monotonic() + 300)
        counts = running.counts()
    seconds = (max(got) - min(got)) / 1000 if len(got) > 1 else 0.0
    return {"deliveries": len(got), "seconds": round(seconds, 2),
            "per_s": round((len(got) - 1) / seconds) if seconds else None, "received_again": repeated, **counts}


def _paced(condition: _Condition, conn, rate: float, seconds: float,
           dispatchers: Callable[[], _Dispatchers]) -> tuple[list[float], dict]:
    """Alerts queued at ``rate`` (to healthy and unhealthy endpoints alike) while the dispatchers
    send; the healthy endpoints' latencies (ms) and what was sent and claimed."""
    with dispatchers() as running:
        time.sleep(1.0)
        _ask(conn)  # what was sent before does not count
        started, sent, healthy = time.monotonic(), 0, 0
        while (elapsed := time.monotonic() - started) < seconds:
            while sent < int(elapsed * rate):
                healthy += condition.queue(int(time.time() * 1000))
                sent += 1
            time.sleep(0.002)
        expected = healthy * SUBS_PER_ENDPOINT
        got, repeated = _collect(conn, expected, started + seconds + 60)
        counts = running.counts()
    return got, {"healthy_delivered": len(got), "healthy_expected": expected, "received_again": repeated, **counts}


def _ask(conn) -> tuple[list[float], int]:
    conn.send("report")
    return conn.recv()


def _collect(conn, expected: int, deadline: float) -> tuple[list[float], int]:
    """First receipts' latencies until ``expected`` of them (or the deadline), and receipts again."""
    got: list[float] = []
    repeated = 0
    while len(got) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
        new, again = _ask(conn)
        got += new
        repeated += again
    return got, repeated


def _r(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


def run(backlog: int, rate: float, seconds: float, unhealthy: float, concurrency: int, timeout_s: float,
        rounds: int = 4, dispatchers: int = 1) -> dict:
    bad = round(ENDPOINTS * unhealthy)
    ports = free_ports(ENDPOINTS + bad)
    healthy_ports, bad_ports = ports[:ENDPOINTS], ports[ENDPOINTS:]
    modes_by_port = {**dict.fromkeys(healthy_ports, "ok"),
                     **{p: "fail" if k % 2 == 0 else "hang" for k, p in enumerate(bad_ports)}}
    # With unhealthy endpoints: as many endpoints in all, a fifth of them replaced by bad ones, spread out.
    mixed = healthy_ports[:ENDPOINTS - bad]
    for k, port in enumerate(bad_ports):
        mixed.insert((k * ENDPOINTS) // max(bad, 1), port)
    parent, child = multiprocessing.Pipe()
    receiver = multiprocessing.get_context("spawn").Process(target=_serve, args=(modes_by_port, child), daemon=True)
    receiver.start()
    if not parent.poll(30):
        raise RuntimeError("the receivers did not start")
    parent.recv()
    names = ("all_healthy", "with_unhealthy")
    detail: dict[str, dict] = {name: {"paced_rounds": []} for name in names}
    latencies: dict[str, list[float]] = {name: [] for name in names}
    try:
        with tempfile.TemporaryDirectory(prefix="gapstream-bench-delivery-") as tmp:
            conditions = {"all_healthy": _condition(Path(tmp), "healthy", ["ok"] * ENDPOINTS, healthy_ports),
                          "with_unhealthy": _condition(Path(tmp), "failing", [modes_by_port[p] for p in mixed], mixed)}
            started = {name: partial(_Dispatchers, condition, dispatchers, concurrency, timeout_s)
                       for name, condition in conditions.items()}
            for name, condition in conditions.items():
                detail[name]["drain"] = _drain(condition, backlog, parent, started[name])
            # The paced phase alternates between the two in rounds (ABBA...), so that a slow spell of
            # this shared machine falls on both rather than on whichever ran then.
            for k in range(rounds):
                for name in names if k % 2 == 0 else reversed(names):
                    got, counts = _paced(conditions[name], parent, rate, seconds / rounds, started[name])
                    latencies[name] += got
                    detail[name]["paced_rounds"].append({**counts, "p99_ms": _r(percentile(got, 99))})
    finally:
        receiver.kill()
    p50 = {name: _r(percentile(latencies[name], 50)) for name in names}
    p99 = {name: _r(percentile(latencies[name], 99)) for name in names}
    return {
        "endpoints": ENDPOINTS, "subscriptions": ENDPOINTS * SUBS_PER_ENDPOINT, "dispatchers": dispatchers,
        "unhealthy_endpoints": f"{bad} ({bad - bad // 2} answer 503, {bad // 2} hang past the {timeout_s:g}s timeout)",
        "drain_healthy_per_s_all_healthy": detail["all_healthy"]["drain"]["per_s"],
        "drain_healthy_per_s_with_unhealthy": detail["with_unhealthy"]["drain"]["per_s"],
        "paced_offered_per_s": round(rate * SUBS_PER_ENDPOINT),
        "paced_rounds": rounds,
        "paced_p50_ms_all_healthy": p50["all_healthy"], "paced_p99_ms_all_healthy": p99["all_healthy"],
        "paced_p50_ms_with_unhealthy": p50["with_unhealthy"], "paced_p99_ms_with_unhealthy": p99["with_unhealthy"],
        "p99_ratio": round(p99["with_unhealthy"] / p99["all_healthy"], 2)
        if p99["with_unhealthy"] and p99["all_healthy"] else None,
        "detail": detail,
    }
