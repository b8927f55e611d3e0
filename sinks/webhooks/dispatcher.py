"""Sends pending deliveries from the SQL outbox to subscriber endpoints.

Deliveries are stored before the stream moves on, so nothing is lost if the worker stops; this loop
only has to send what is due, record each attempt, and schedule a retry with backoff on a 5xx,
a 429, a timeout or a refused connection. The ``webhook-id`` of a delivery never changes, so a
receiver recognises a redelivery.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time

import httpx

from sinks.sql.store import DeliveryJob, Store
from sinks.webhooks.signing import signed_headers
from streams.deadletters import where
from streams.metrics import ADT_TO_WEBHOOK, WEBHOOK_ATTEMPTS

log = logging.getLogger(__name__)
MAX_RESPONSE_BYTES = 64 * 1024


class Dispatcher:
    def __init__(self, store: Store, timeout_s: float, max_attempts: int, backoff_s: tuple[float, ...],
                 concurrency: int = 32, poll_interval_s: float = 0.5):
        self._store = store
        self._timeout = timeout_s
        self._max_attempts = max_attempts
        self._backoff = backoff_s
        self._slots = asyncio.Semaphore(concurrency)
        self._poll = poll_interval_s
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()

    def wake(self) -> None:
        """New deliveries are waiting: look now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as client:
            while True:
                jobs = await asyncio.to_thread(self._store.claim_due, time.time(), self._timeout * 2 + 5)
                for job in jobs:
                    await self._slots.acquire()
                    task = asyncio.create_task(self._deliver(client, job))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                if not jobs:
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), self._poll)
                    except TimeoutError:
                        pass

    async def _deliver(self, client: httpx.AsyncClient, job: DeliveryJob) -> None:
        try:
            started = time.monotonic()
            outcome, status, error = await self._send(client, job)
            duration_ms = (time.monotonic() - started) * 1000
            WEBHOOK_ATTEMPTS.labels(outcome=outcome).inc()
            if outcome == "success":
                ADT_TO_WEBHOOK.observe(max(0.0, time.time() - job.received_at_ms / 1000))
            retry_at = None if outcome in ("success", "rejected") else self._next_attempt(job.attempts + 1)
            await asyncio.to_thread(self._store.record_attempt, job, outcome, status, duration_ms, error, retry_at)
        except Exception as exc:  # a failure here must not kill the dispatcher; the lease expires and it retries
            log.error("delivery bookkeeping failed: %s", where(exc))
        finally:
            self._slots.release()

    async def _send(self, client: httpx.AsyncClient, job: DeliveryJob) -> tuple[str, int | None, str | None]:
        headers = signed_headers(job.secret, job.webhook_id, job.body)
        try:
            async with client.stream("POST", job.url, content=job.body.encode(), headers=headers) as response:
                await _read_bounded(response)
        except httpx.TimeoutException:
            return "timeout", None, "timed out"
        except httpx.HTTPError as exc:
            return "connection_error", None, type(exc).__name__
        if 200 <= response.status_code < 300:
            return "success", response.status_code, None
        # 4xx other than 429: the receiver refuses this message; resending it will not help.
        retryable = response.status_code >= 500 or response.status_code == 429
        return ("http_error" if retryable else "rejected"), response.status_code, f"HTTP {response.status_code}"

    def _next_attempt(self, attempts_made: int) -> float | None:
        if attempts_made >= self._max_attempts:
            return None
        base = self._backoff[min(attempts_made - 1, len(self._backoff) - 1)]
        return time.time() + base * random.uniform(0.8, 1.2)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _read_bounded(response: httpx.Response) -> None:
    read = 0
    async for chunk in response.aiter_raw():
        read += len(chunk)
        if read > MAX_RESPONSE_BYTES:
            break
