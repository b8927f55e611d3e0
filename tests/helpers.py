"""Real components for tests: a webhook receiver on loopback, a worker process, topic readers."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from streams.bench.harness import processes
from streams.kafka.broker import die_with_parent, free_port
from streams.kafka.reading import read_to_end

CORPUS = Path(__file__).parent / "fixtures" / "hl7v2-adt"
ED_FILES = ["elixirhl7_NIST_SS_ADT_A03_ED_v251.hl7", "msfhirconv_ADT04-251.hl7"]


@dataclass
class Received:
    headers: dict[str, str]
    body: str
    at: float = 0.0  # time.monotonic() on arrival


@dataclass
class Receiver:
    """An HTTP endpoint in a thread that records every request and answers from ``script``
    (status codes, or (status, headers) pairs, consumed in order; then 200)."""
    port: int = field(default_factory=free_port)
    script: list[int | tuple[int, dict[str, str]]] = field(default_factory=list)
    delay_s: float = 0.0
    secret: str = ""
    requests: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        ready = threading.Event()

        async def handle(request: web.Request) -> web.Response:
            self.requests.append(Received(dict(request.headers), await request.text(), time.monotonic()))
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            answer = self.script.pop(0) if self.script else 200
            status, headers = answer if isinstance(answer, tuple) else (answer, {})
            return web.Response(status=status, headers=headers)

        def serve() -> None:
            loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_post("/{tail:.*}", handle)
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
            ready.set()
            loop.run_forever()

        threading.Thread(target=serve, daemon=True).start()
        assert ready.wait(10), f"the receiver did not start listening on port {self.port}"
        return self


def wait_for(predicate, timeout_s: float = 30.0, interval_s: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {message}")


def health(web_port: int) -> dict | None:
    with contextlib.suppress(OSError, ValueError):
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/health", timeout=1) as r:
            return json.load(r)
    return None


def call(port: int, path: str, body: dict | None = None, token: str | None = None,
         method: str | None = None) -> tuple[int, Any]:
    """GET (or POST ``body`` as JSON to) the worker's HTTP API, with an organization's API token if
    given; (status, JSON or text)."""
    headers = {"content-type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     method=method or ("POST" if body is not None else "GET"),
                                     data=json.dumps(body).encode() if body is not None else None, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            text = r.read().decode()
            return r.status, (json.loads(text) if r.headers.get_content_type() == "application/json" else text)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read().decode())


def organization_token(env: dict[str, str], organization_id: str) -> str:
    """An API token for the organization, added first if it is new (as an operator does it)."""
    def gapstream(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "streams.cli", *args], env=env, capture_output=True, text=True,
                              timeout=60)

    result = gapstream("organizations", "add", organization_id, "--name", organization_id)
    if result.returncode != 0:
        result = gapstream("organizations", "token", organization_id)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def plan_token(env: dict[str, str], organization_id: str = "PLAN-CARE-MGMT") -> str:
    """An API token with the plan-level role (reviewers, care management), granted as an operator does."""
    token = organization_token(env, organization_id)
    granted = subprocess.run([sys.executable, "-m", "streams.cli", "organizations", "plan-level", organization_id,
                              "--grant", "--by", "tests", "--reason", "plan reviewer in tests"],
                             env=env, capture_output=True, text=True, timeout=60)
    assert granted.returncode == 0, granted.stderr
    return token


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


@dataclass
class WorkerProcess:
    process: subprocess.Popen
    web_port: int
    env: dict[str, str]

    def children(self) -> dict[int, str]:
        """The worker's child processes (pid: name), named as streams/child.py names them."""
        return {pid: name for pid, (name, parent) in processes().items() if parent == self.process.pid}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_worker(bootstrap: str, data_dir: Path, **extra_env: str) -> WorkerProcess:
    web_port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}  # SQLite in data_dir unless given
    env.update({"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "GAPSTREAM_DATA_DIR": str(data_dir),
                "GAPSTREAM_WEB_PORT": str(web_port), "GAPSTREAM_WEBHOOK_SCHEDULE_S": "0,0.2,0.5,1",
                "GAPSTREAM_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
                "GAPSTREAM_ATTRIBUTION_SWEEP_INTERVAL_S": "0.5", **extra_env})
    log = open(data_dir / "worker.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
    worker = WorkerProcess(proc, web_port, env)
    try:
        wait_for(lambda: (h := health(web_port)) and h["assigned_partitions"] > 0, 90, message="worker ready")
    except AssertionError as exc:
        worker.stop()
        raise AssertionError("worker not ready; log:\n" + (data_dir / "worker.log").read_text()[-3000:]) from exc
    return worker


def read_topic(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list:
    """Every message on ``topic`` from the beginning to its current end (see streams/kafka/reading.py
    for why the end is not taken from the broker's watermark)."""
    return list(read_to_end(bootstrap, topic, timeout_s=timeout_s))
