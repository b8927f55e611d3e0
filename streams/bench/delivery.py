"""`gapstream bench delivery`: the dispatcher a worker runs, sending from a SQLite outbox to 200
subscriptions over 50 loopback endpoints, first with every endpoint healthy, then with a fifth of
them failing (503) or hanging (no answer before the timeout), side by side in one run.

Each condition is measured twice:
- drain: a backlog queued beforehand, sent as fast as the dispatcher can; deliveries a second to
  the healthy endpoints;
- paced: alerts queued at a steady rate while the dispatcher sends (queueing shares the process, as
  routing does in a worker); latency from queueing to the receiver, healthy endpoints only. The two
  conditions take turns in rounds, and each one's latencies are pooled over its rounds.
The receivers run in a process of their own so they do not share the dispatcher's interpreter.
"""
from __future__ import annotations

import asyncio
import gc
import json
import multiprocessing
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from sinks.sql.sealing import Sealer
from sinks.sql.store import Store
from sinks.sql.subscriptions import Spec
from sinks.webhooks.dispatcher import Dispatcher, event_loop
from sinks.webhooks.egress import Egress
from streams.child import calm_collector
from streams.kafka.broker import free_ports
from streams.metrics import WEBHOOK_ATTEMPTS, WEBHOOK_CLAIMS
from streams.models import Alert
from streams.tools.demo import percentile

ENDPOINTS, SUBS_PER_ENDPOINT = 50, 4
HANG_S = 60.0
CLOSE_GRACE_S = 1.0  # a healthy request finishes within it; waiting out the hanging ones would only slow the run


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
    store = Store(f"sqlite:///{data_dir / name / 'bench.db'}", Sealer.generate(), egress=Egress(["127.0.0.1"]))
    orgs = []
    for e, (port, mode) in enumerate(zip(ports, modes, strict=True)):
        org = f"ORG{e:02d}-{mode}"
        store.subscriptions.add_organization(org, org, "bench")
        for s in range(SUBS_PER_ENDPOINT):
            store.subscriptions.create(org, Spec(url=f"http://127.0.0.1:{port}/s{s}"), "bench")
        orgs.append((org, mode))
    return _Condition(store, orgs)


def _counts() -> Counter[str]:
    """Attempts by outcome and claims by whether they found work, so far in this process."""
    counts: Counter[str] = Counter()
    for metric, prefix in ((WEBHOOK_ATTEMPTS, "attempts"), (WEBHOOK_CLAIMS, "claims")):
        for family in metric.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[f"{prefix}_{next(iter(sample.labels.values()))}"] += int(sample.value)
    return counts


async def _drain(condition: _Condition, backlog: int, conn, concurrency: int, timeout_s: float) -> dict:
    """A backlog queued first (not timed), then sent as fast as the dispatcher can."""
    now_ms = int(time.time() * 1000)
    expected = sum(condition.queue(now_ms) for _ in range(backlog)) * SUBS_PER_ENDPOINT
    before = _counts()
    dispatcher = _dispatcher(condition.store, concurrency, timeout_s)
    started = time.monotonic()
    task = asyncio.create_task(dispatcher.run())
    got, repeated = await _collect(conn, expected, started + 300)
    seconds = time.monotonic() - started
    task.cancel()
    await dispatcher.close(CLOSE_GRACE_S)
    return {"deliveries": len(got), "seconds": round(seconds, 2), "per_s": round(len(got) / seconds),
            "received_again": repeated, **(_counts() - before)}


async def _paced(condition: _Condition, conn, rate: float, seconds: float, concurrency: int,
                 timeout_s: float) -> tuple[list[float], dict]:
    """Alerts queued at ``rate`` (to healthy and unhealthy endpoints alike) while the dispatcher
    sends; the healthy endpoints' latencies (ms) and what was sent and claimed."""
    dispatcher = _dispatcher(condition.store, concurrency, timeout_s)
    task = asyncio.create_task(dispatcher.run())
    await asyncio.sleep(1.0)
    await asyncio.to_thread(_ask, conn)  # what was sent before does not count
    before = _counts()
    loop = asyncio.get_running_loop()

    def produce() -> int:
        started, sent, healthy = time.monotonic(), 0, 0
        while (elapsed := time.monotonic() - started) < seconds:
            while sent < int(elapsed * rate):
                healthy += condition.queue(int(time.time() * 1000))
                loop.call_soon_threadsafe(dispatcher.wake)  # as routing does, from the event loop
                sent += 1
            time.sleep(0.002)
        return healthy * SUBS_PER_ENDPOINT

    started = time.monotonic()
    expected = await asyncio.to_thread(produce)
    got, repeated = await _collect(conn, expected, started + seconds + 60)
    counts = _counts() - before
    task.cancel()
    await dispatcher.close(CLOSE_GRACE_S)
    return got, {"healthy_delivered": len(got), "healthy_expected": expected, "received_again": repeated, **counts}


def _dispatcher(store: Store, concurrency: int, timeout_s: float) -> Dispatcher:
    """As a worker runs it, with a short retry schedule so failing endpoints come back during the run."""
    return Dispatcher(store.outbox, store.subscriptions.egress, timeout_s, (0, 5, 300),
                      endpoint_concurrency=concurrency, poll_interval_s=0.05)


def _on_dispatcher_loop(main):
    """Run on the event loop a worker's dispatcher has."""
    with asyncio.Runner(loop_factory=event_loop) as runner:
        return runner.run(main)


def _ask(conn) -> tuple[list[float], int]:
    conn.send("report")
    return conn.recv()


async def _collect(conn, expected: int, deadline: float) -> tuple[list[float], int]:
    """First receipts' latencies until ``expected`` of them (or the deadline), and receipts again."""
    got: list[float] = []
    repeated = 0
    while len(got) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        new, again = await asyncio.to_thread(_ask, conn)
        got += new
        repeated += again
    return got, repeated


def _r(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


def run(backlog: int, rate: float, seconds: float, unhealthy: float, concurrency: int, timeout_s: float,
        rounds: int = 4) -> dict:
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
    thresholds = gc.get_threshold()
    try:
        with tempfile.TemporaryDirectory(prefix="gapstream-bench-delivery-") as tmp:
            conditions = {"all_healthy": _condition(Path(tmp), "healthy", ["ok"] * ENDPOINTS, healthy_ports),
                          "with_unhealthy": _condition(Path(tmp), "failing", [modes_by_port[p] for p in mixed], mixed)}
            calm_collector()  # as the worker's sink process does once started
            for name, condition in conditions.items():
                detail[name]["drain"] = _on_dispatcher_loop(_drain(condition, backlog, parent, concurrency,
                                                                   timeout_s))
            # The paced phase alternates between the two in rounds (ABBA...), so that a slow spell of
            # this shared machine falls on both rather than on whichever ran then.
            for k in range(rounds):
                for name in names if k % 2 == 0 else reversed(names):
                    got, counts = _on_dispatcher_loop(_paced(conditions[name], parent, rate, seconds / rounds,
                                                             concurrency, timeout_s))
                    latencies[name] += got
                    detail[name]["paced_rounds"].append({**counts, "p99_ms": _r(percentile(got, 99))})
    finally:
        receiver.kill()
        # The bench may run inside a longer-lived program (the test suite): its collector is left
        # as a fresh process has it, nothing frozen.
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    p50 = {name: _r(percentile(latencies[name], 50)) for name in names}
    p99 = {name: _r(percentile(latencies[name], 99)) for name in names}
    return {
        "endpoints": ENDPOINTS, "subscriptions": ENDPOINTS * SUBS_PER_ENDPOINT,
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
