"""`gapstream demo`: the whole path on one machine, with alerts arriving live.

Starts the embedded broker, a worker, the MLLP ingress and a webhook receiver as child processes
(each tied to this one, so nothing outlives it), registers the receiver as every generated
organization's endpoint, publishes the provider directory and eligibility (with the members'
selected PCPs, which attribution turns into organizations), streams the generated ADT feed over MLLP and prints each
alert the receiver accepts. Ends after ``duration`` seconds or on Ctrl-C, with a summary.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import replace

import click

from sinks.sql.store import open_store
from sinks.sql.subscriptions import Spec
from sinks.webhooks.signing import new_secret
from streams.adt.mllp_client import send_messages
from streams.adt.visits import ED_VISIT
from streams.config import Settings
from streams.kafka.broker import BrokerError, die_with_parent, free_ports
from streams.runtime import bootstrap_servers
from streams.sources.publish import publish
from streams.tools.generate import Organization, adt_feed, ed_visits, eligibility, population, providers


def spawn(args: list[str], env: dict[str, str], stdout=subprocess.DEVNULL) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "streams.cli", *args], env=env, stdout=stdout,
                            stderr=subprocess.DEVNULL if stdout is subprocess.DEVNULL else None,
                            stdin=subprocess.DEVNULL, preexec_fn=die_with_parent, text=True)


def wait_ready(web_port: int, attributed: int, timeout_s: float = 90.0) -> None:
    """Until the worker has partitions and has attributed the members it should."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/health", timeout=1) as r:
                health = json.load(r)
                if health["assigned_partitions"] > 0 and health["attributed"] >= attributed:
                    return
        time.sleep(0.3)
    raise BrokerError(f"the worker did not become ready within {timeout_s:.0f}s")


def wait_listening(port: int, timeout_s: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise BrokerError(f"nothing listens on port {port} after {timeout_s:.0f}s")


def subscribe(settings: Settings, organizations: list[Organization], url: str, events: tuple[str, ...],
              secret: str) -> None:
    """Each generated organization, with one subscription of ``events`` to ``url`` (a local receiver)."""
    subs = open_store(settings).subscriptions
    for org in organizations:
        subs.add_organization(org.organization_id, org.name, "demo")
        subs.create(org.organization_id, Spec(url, events), "demo", secret)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def run_demo(settings: Settings, duration: float, seed: int, members: int, rate: float) -> dict:
    data_dir = settings.data_dir / "demo"
    shutil.rmtree(data_dir, ignore_errors=True)  # the embedded broker starts empty, so does the demo
    data_dir.mkdir(parents=True)
    settings = replace(settings, data_dir=data_dir, database_url=None)
    pop = population(seed, members)
    visits = max(10, int(duration * (rate or 200) / 3)) if rate else max(50, members // 4)
    feed = [m.encode() for m in adt_feed(pop, seed, visits)]
    expected_ed = len(ed_visits([m.decode() for m in feed]))
    attributable = sum(1 for m in pop.members if m.organization_id)

    with bootstrap_servers(settings) as bootstrap:
        secret = new_secret()
        receiver_port, web_port, mllp_port, metrics_port = free_ports(4)
        # The receiver is on loopback, which only an allow-listed host may be.
        settings = replace(settings, webhook_allowed_hosts=("127.0.0.1",))
        subscribe(settings, pop.organizations, f"http://127.0.0.1:{receiver_port}/alerts", ("adt.*",), secret)
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "GAPSTREAM_DATA_DIR": str(data_dir),
               "GAPSTREAM_WEB_PORT": str(web_port), "GAPSTREAM_MLLP_PORT": str(mllp_port),
               "GAPSTREAM_MLLP_METRICS_PORT": str(metrics_port), "GAPSTREAM_WEBHOOK_SCHEDULE_S": "0,0.2,0.5,1,2",
               "GAPSTREAM_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
               "GAPSTREAM_ATTRIBUTION_SWEEP_INTERVAL_S": "1"}
        env.pop("DATABASE_URL", None)
        click.echo(f"broker {bootstrap} | worker http://127.0.0.1:{web_port}/metrics | MLLP 127.0.0.1:{mllp_port} "
                   f"| receiver http://127.0.0.1:{receiver_port}")
        children = [spawn(["receiver", "--port", str(receiver_port), "--secret", secret], env, subprocess.PIPE),
                    spawn(["worker"], env), spawn(["mllp"], env)]
        received: list[dict] = []
        try:
            asyncio.run(publish(bootstrap, [*providers(pop), *eligibility(pop)], settings.schema_registry_url))
            wait_listening(mllp_port)
            click.echo(f"{len(pop.organizations)} organizations, {len(pop.members)} members; waiting for the worker...")
            wait_ready(web_port, attributable)
            printer = threading.Thread(target=_print_alerts, args=(children[0], received), daemon=True)
            printer.start()
            click.echo(f"streaming {len(feed)} ADT messages ({expected_ed} ED visits) over MLLP"
                       + (f" at {rate:g}/s" if rate else " as fast as the ingress answers"))
            report = asyncio.run(_stream(mllp_port, feed, rate, duration))
            sent = sum(1 for a in report.acks if a)
            # Let the last alerts through before the summary.
            deadline = time.monotonic() + 15
            ed = [r for r in received if r["type"] == ED_VISIT]
            while time.monotonic() < deadline and len(ed) < _expected_alerts(feed, sent, pop):
                time.sleep(0.2)
                ed = [r for r in received if r["type"] == ED_VISIT]
            latencies = [r["latency_ms"] for r in ed if r.get("latency_ms") is not None]
            summary = {
                "adt_messages_sent": sent,
                "acks": {code: report.acks.count(code) for code in sorted(set(report.acks) - {""})},
                "mllp_messages_per_s": round(sent / report.seconds, 1) if report.seconds else None,
                "alerts_received": {t: sum(1 for r in received if r["type"] == t) for t in sorted(
                    {r["type"] for r in received})},
                "ed_alerts_received": len(ed),
                "latency_ms_p50": percentile(latencies, 50),
                "latency_ms_p99": percentile(latencies, 99),
            }
            click.echo("summary " + json.dumps(summary))
            return summary
        finally:
            for child in children:
                child.terminate()
            for child in children:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(10)
                if child.poll() is None:
                    child.kill()


def _expected_alerts(feed: list[bytes], sent: int, pop) -> int:
    routed = {m.member_id for m in pop.members if m.organization_id}
    visits = set()
    for text in feed[:sent]:
        segments = {s[:3]: s.split("|") for s in text.decode().split("\r")}
        if segments["PV1"][2] == "E" and segments["PID"][3].split("^")[0] in routed:
            visits.add((segments["MSH"][3], segments["PV1"][19]))
    return len(visits)


async def _stream(port: int, feed: list[bytes], rate: float, duration: float):
    limit = len(feed) if not rate else min(len(feed), int(rate * duration))
    return await send_messages("127.0.0.1", port, feed[:limit], connections=1 if rate else 4,
                               rate_per_s=rate or None)


def _print_alerts(receiver: subprocess.Popen, received: list[dict]) -> None:
    assert receiver.stdout is not None
    for line in receiver.stdout:
        with contextlib.suppress(ValueError):
            alert = json.loads(line)
            received.append(alert)
            click.echo(f"  alert {alert['type']:<14} {alert['facility']:<11} -> {alert['organization_id']:<7} "
                       f"webhook {alert['webhook_id'][:16]}…  {alert['latency_ms']:>7.1f} ms after MLLP receipt")
