"""`gapstream bench delivery`: the dispatcher a worker runs, sending from a SQLite outbox to 200
subscriptions over 50 loopback endpoints, first with every endpoint healthy, then with a fifth of
them failing (503) or hanging (no answer before the timeout), side by side in one run.

Each condition is measured twice:
- drain: a backlog queued beforehand, sent as fast as the dispatcher can; deliveries a second to
  the healthy endpoints;
- paced: alerts queued at a steady rate while the dispatcher sends (queueing shares the process, as
  routing does in a worker); latency from queueing to the receiver, healthy endpoints only.
The receivers run in a process of their own so they do not share the dispatcher's interpreter.
"""
from __future__ import annotations

import asyncio
import json
import multiprocessing
import tempfile
import threading
import time
from pathlib import Path

from aiohttp import web

from sinks.sql.sealing import Sealer
from sinks.sql.store import Store
from sinks.sql.subscriptions import Spec
from sinks.webhooks.dispatcher import Dispatcher
from sinks.webhooks.egress import Egress
from streams.kafka.broker import free_port
from streams.models import Alert
from streams.tools.demo import percentile

ENDPOINTS, SUBS_PER_ENDPOINT = 50, 4
HANG_S = 60.0


def _serve(ports: dict[int, str], conn) -> None:
    """Receivers: ``ok`` answers 204, ``fail`` 503, ``hang`` never before the sender gives up.
    Healthy receipts are reported (latency in ms from the event's timestamp) when asked."""
    received: list[float] = []

    async def handle(request: web.Request) -> web.Response:
        mode = ports[request.url.port]
        body = await request.read()
        if mode == "hang":
            await asyncio.sleep(HANG_S)
        if mode == "fail":
            return web.Response(status=503)
        created = json.loads(body)["data"]["created_at_ms"]
        received.append(time.time() * 1000 - created)
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
        while True:
            conn.recv()
            taken = received[:]
            del received[:len(taken)]
            conn.send(taken)

    threading.Thread(target=answer, daemon=True).start()
    asyncio.run(main())


def _alert(i: int, org: str, now_ms: int) -> Alert:
    return Alert(alert_id=f"bench-{i}", alert_type="adt.ed_visit", facility="HOSP", event_type="A04",
                 received_at_ms=now_ms, created_at_ms=now_ms, member_id=f"M{i}", organization_id=org)


def _condition(data_dir: Path, name: str, modes: list[str], ports: list[int], conn, backlog: int, rate: float,
               seconds: float, concurrency: int, timeout_s: float) -> dict:
    store = Store(f"sqlite:///{data_dir / name / 'bench.db'}", Sealer.generate(), egress=Egress(["127.0.0.1"]))
    orgs = []
    for e, (port, mode) in enumerate(zip(ports, modes, strict=True)):
        org = f"ORG{e:02d}-{mode}"
        store.subscriptions.add_organization(org, org, "bench")
        for s in range(SUBS_PER_ENDPOINT):
            store.subscriptions.create(org, Spec(url=f"http://127.0.0.1:{port}/s{s}"), "bench")
        orgs.append((org, mode))

    # Drain: the backlog is queued first (not timed), then sent.
    now_ms = int(time.time() * 1000)
    for i in range(backlog):
        store.outbox.save_alerts([_alert(i, orgs[i % len(orgs)][0], now_ms)])
    expected = sum(1 for i in range(backlog) if orgs[i % len(orgs)][1] == "ok") * SUBS_PER_ENDPOINT
    drain = asyncio.run(_drain(store, conn, expected, concurrency, timeout_s))

    # Paced: alerts queued at ``rate`` (to healthy and unhealthy alike) while sending.
    paced = asyncio.run(_paced(store, conn, orgs, backlog, rate, seconds, concurrency, timeout_s))
    return {"drain": drain, "paced": paced}


async def _drain(store: Store, conn, expected: int, concurrency: int, timeout_s: float) -> dict:
    dispatcher = _dispatcher(store, concurrency, timeout_s)
    started = time.monotonic()
    task = asyncio.create_task(dispatcher.run())
    got: list[float] = []
    while len(got) < expected and time.monotonic() - started < 300:
        await asyncio.sleep(0.2)
        got += await asyncio.to_thread(_ask, conn)
    seconds = time.monotonic() - started
    task.cancel()
    await dispatcher.close()
    return {"deliveries": len(got), "seconds": round(seconds, 2), "per_s": round(len(got) / seconds)}


async def _paced(store: Store, conn, orgs, offset: int, rate: float, seconds: float,
                 concurrency: int, timeout_s: float) -> dict:
    dispatcher = _dispatcher(store, concurrency, timeout_s)
    task = asyncio.create_task(dispatcher.run())
    await asyncio.sleep(1.0)
    await asyncio.to_thread(_ask, conn)  # what the drain left behind does not count
    loop = asyncio.get_running_loop()

    def produce() -> int:
        started, sent = time.monotonic(), 0
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate)
            while sent < due:
                i = offset + sent
                store.outbox.save_alerts([_alert(i, orgs[i % len(orgs)][0], int(time.time() * 1000))])
                loop.call_soon_threadsafe(dispatcher.wake)  # as routing does, from the event loop
                sent += 1
            time.sleep(0.002)
        return sent

    started = time.monotonic()
    sent = await asyncio.to_thread(produce)
    expected = sum(1 for k in range(sent) if orgs[(offset + k) % len(orgs)][1] == "ok") * SUBS_PER_ENDPOINT
    got: list[float] = []
    while len(got) < expected and time.monotonic() - started < seconds + 60:
        await asyncio.sleep(0.2)
        got += await asyncio.to_thread(_ask, conn)
    task.cancel()
    await dispatcher.close()
    return {"offered_deliveries_per_s": round(rate * SUBS_PER_ENDPOINT), "healthy_delivered": len(got),
            "healthy_expected": expected, "p50_ms": _r(percentile(got, 50)), "p99_ms": _r(percentile(got, 99))}


def _dispatcher(store: Store, concurrency: int, timeout_s: float) -> Dispatcher:
    """As a worker runs it, with a short retry schedule so failing endpoints come back during the run."""
    return Dispatcher(store.outbox, store.subscriptions.egress, timeout_s, (0, 5, 300),
                      endpoint_concurrency=concurrency, poll_interval_s=0.05)


def _ask(conn) -> list[float]:
    conn.send("report")
    return conn.recv()


def _r(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


def run(backlog: int, rate: float, seconds: float, unhealthy: float, concurrency: int, timeout_s: float) -> dict:
    bad = round(ENDPOINTS * unhealthy)
    healthy_ports = [free_port() for _ in range(ENDPOINTS)]
    bad_ports = [free_port() for _ in range(bad)]
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
    try:
        with tempfile.TemporaryDirectory(prefix="gapstream-bench-delivery-") as tmp:
            data_dir = Path(tmp)
            for sub in ("healthy", "failing"):
                (data_dir / sub).mkdir()
            baseline = _condition(data_dir, "healthy", ["ok"] * ENDPOINTS, healthy_ports, parent, backlog, rate,
                                  seconds, concurrency, timeout_s)
            failing = _condition(data_dir, "failing", [modes_by_port[p] for p in mixed], mixed, parent, backlog,
                                 rate, seconds, concurrency, timeout_s)
    finally:
        receiver.kill()
    b, f = baseline, failing
    return {
        "endpoints": ENDPOINTS, "subscriptions": ENDPOINTS * SUBS_PER_ENDPOINT,
        "unhealthy_endpoints": f"{bad} ({bad - bad // 2} answer 503, {bad // 2} hang past the {timeout_s:g}s timeout)",
        "drain_healthy_per_s_all_healthy": b["drain"]["per_s"],
        "drain_healthy_per_s_with_unhealthy": f["drain"]["per_s"],
        "paced_offered_per_s": b["paced"]["offered_deliveries_per_s"],
        "paced_p50_ms_all_healthy": b["paced"]["p50_ms"], "paced_p99_ms_all_healthy": b["paced"]["p99_ms"],
        "paced_p50_ms_with_unhealthy": f["paced"]["p50_ms"], "paced_p99_ms_with_unhealthy": f["paced"]["p99_ms"],
        "p99_ratio": round(f["paced"]["p99_ms"] / b["paced"]["p99_ms"], 2)
        if f["paced"]["p99_ms"] and b["paced"]["p99_ms"] else None,
        "detail": {"all_healthy": b, "with_unhealthy": f},
    }
