"""Sends queued deliveries from the SQL outbox to subscriber endpoints.

Deliveries are stored before the stream moves on, so nothing is lost if the worker stops; this
loop only has to send what is due and record what happened. Endpoints are isolated from each
other: each has its own limit of requests in flight, and the outbox is asked only for deliveries
of endpoints with a free slot, so a slow, hanging or dead endpoint fills its own slots and no one
else's. A member's events go to a subscription one at a time, oldest first.

Requests go out through aiohttp: it costs a fifth of httpx's CPU per request (README, "Webhook
delivery"), and the dispatcher is CPU-bound. For the same reason it runs on uvloop's event loop
(:func:`event_loop`), which takes about a tenth off the CPU a delivery costs.

A subscription whose endpoint fails rests: for as long as a first retry waits (or as long as its
Retry-After asks), none of its due deliveries is sent, then sending resumes and shows whether the
endpoint is back. A down endpoint is then tried a few times per rest instead of once per waiting
delivery, which spared its receiver nothing and took the other endpoints' share of the CPU. The
deliveries that waited keep their retry schedules: waiting is not an attempt.

Results are written in batches by one recorder task: at thousands of deliveries a second, one
transaction per attempt would make SQL the bottleneck. Until a result is written its delivery stays
leased, so a crash in between means it is sent again, under the same ``webhook-id``.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import smtplib
import ssl
import time
from collections import Counter

import aiohttp
import uvloop

from sinks.email import Mailer
from sinks.sql.email_notices import EmailNotices
from sinks.sql.outbox import EVERY_ENDPOINT, AttemptResult, Claim, DeliveryJob, Outbox, Shard
from sinks.webhooks.egress import Egress, EgressRefused
from sinks.webhooks.retries import DEFAULT_SCHEDULE_S, Result, decide, outcome_label, retry_after_s
from sinks.webhooks.signing import signed_headers
from streams.deadletters import where
from streams.metrics import EVENT_TO_WEBHOOK, WEBHOOK_ATTEMPTS, WEBHOOK_CLAIMS, WEBHOOK_RETRIES

log = logging.getLogger(__name__)
MAX_RESPONSE_BYTES = 64 * 1024
RECORD_BATCH = 500


def event_loop() -> asyncio.AbstractEventLoop:
    """The loop a dispatcher runs on."""
    return uvloop.new_event_loop()


class Dispatcher:
    def __init__(self, outbox: Outbox, egress: Egress, timeout_s: float = 15.0,
                 schedule_s: tuple[float, ...] = DEFAULT_SCHEDULE_S, endpoint_concurrency: int = 4,
                 poll_interval_s: float = 0.5, heartbeat_check_s: float = 1.0,
                 emails: EmailNotices | None = None, mailer: Mailer | None = None,
                 shard: Shard = EVERY_ENDPOINT):
        self._outbox, self._egress, self._shard = outbox, egress, shard
        self._emails, self._mailer = emails, mailer
        self._timeout, self._schedule = timeout_s, schedule_s
        self._slots = endpoint_concurrency
        self._poll, self._heartbeat_check = poll_interval_s, heartbeat_check_s
        self._in_flight: Counter[str] = Counter()  # requests per endpoint
        self._members: set[tuple[str, str | None]] = set()  # (subscription, member) being sent
        self._held: frozenset[tuple[str, str | None]] = frozenset()  # of them, those with more due (last claim)
        self._resting: dict[str, float] = {}  # subscription -> until when (monotonic) nothing is sent to it
        self._rest_s = schedule_s[1] if len(schedule_s) > 1 else 0.0
        self._results: asyncio.Queue[AttemptResult] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._clients: dict[str, aiohttp.ClientSession] = {}
        self._tls = ssl.create_default_context()  # loading the CA store once, not per endpoint

    @property
    def lease_s(self) -> float:
        # Longer than a request can take plus the wait for its result to be written.
        return self._timeout * 2 + 5

    def wake(self) -> None:
        """New deliveries are waiting: look now rather than at the next poll."""
        self._wake.set()

    def _client(self, endpoint: str) -> aiohttp.ClientSession:
        """One session per endpoint, with as many connections as the endpoint has slots. Cookies an
        endpoint sets are not kept, and bodies are not decompressed (a small answer cannot inflate)."""
        client = self._clients.get(endpoint)
        if client is None:
            connector = aiohttp.TCPConnector(limit=self._slots, ssl=self._tls)
            client = self._clients[endpoint] = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=self._timeout))
        return client

    async def run(self) -> None:
        background = [asyncio.create_task(self._record())]
        if self._shard.index == 0:  # the work of no endpoint in particular: one of the dispatchers does it
            background.append(asyncio.create_task(self._heartbeats()))
            if self._emails is not None and self._mailer is not None:
                background.append(asyncio.create_task(self._send_emails(self._emails, self._mailer)))
        try:
            await self._claim_loop()
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)

    async def _claim_loop(self) -> None:
        while True:
            self._wake.clear()
            free = {e: self._slots - n for e, n in self._in_flight.items()}
            busy = frozenset(self._members)
            awake = time.monotonic()
            self._resting = {sub: until for sub, until in self._resting.items() if until > awake}
            try:
                claim = await asyncio.to_thread(self._outbox.claim_due, time.time(), self.lease_s, free, self._slots,
                                                busy, frozenset(self._resting), self._shard)
            except Exception as exc:  # the database may be briefly unavailable; try again at the next poll
                log.error("claiming deliveries failed: %s", where(exc))
                claim = Claim([])
            # Everything claimable now was claimed. What can change that: new work, a slot freed on an
            # endpoint at its limit, the end of a delivery another of its member's waits behind (these
            # wake the loop), retries falling due (the poll). Any other finished delivery leaves
            # nothing new to claim; waking on each of them made most claims come back empty, and
            # each one holds the database and the interpreter for milliseconds.
            WEBHOOK_CLAIMS.labels(found="yes" if claim.jobs else "no").inc()
            self._held = claim.held
            ended = busy - self._members  # while claiming: their end was judged by the previous claim
            claimed = Counter(job.endpoint for job in claim.jobs)
            for job in claim.jobs:
                self._in_flight[job.endpoint] += 1
                self._members.add((job.subscription_id, job.member_id))
                task = asyncio.create_task(self._deliver(self._client(job.endpoint), job))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if claim.held & ended or any(n == free.get(e, self._slots) and self._in_flight[e] < self._slots
                                         for e, n in claimed.items()):
                self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)

    async def _deliver(self, client: aiohttp.ClientSession, job: DeliveryJob) -> None:
        started = time.monotonic()
        try:
            try:
                result = await self._send(client, job)
            except Exception as exc:  # a bug here must not stop the dispatcher: a failed attempt, retried
                log.error("delivery failed unexpectedly: %s", where(exc))
                result = Result(error="connection_error", detail=type(exc).__name__)
            now = time.time()
            decision = decide(result, job.attempts + 1, now, self._schedule)
            WEBHOOK_ATTEMPTS.labels(outcome=outcome_label(result)).inc()
            if job.attempts:
                WEBHOOK_RETRIES.inc()
            if decision.outcome == "delivered" and job.alert_id:
                EVENT_TO_WEBHOOK.labels(event_type=job.event_type).observe(max(0.0, now - job.received_at_ms / 1000))
            if decision.outcome in ("retry", "exhausted"):
                self._rest(job.subscription_id, result, now)
            elif decision.outcome == "delivered":
                self._resting.pop(job.subscription_id, None)
            attempt = AttemptResult(job, result, decision, (time.monotonic() - started) * 1000, now)
            if decision.outcome == "gone":  # disabled before the slot frees: nothing more goes to a gone endpoint
                await self._write([attempt])
            else:
                self._results.put_nowait(attempt)
        finally:
            was_full = self._in_flight[job.endpoint] >= self._slots
            self._in_flight[job.endpoint] -= 1
            if self._in_flight[job.endpoint] <= 0:
                del self._in_flight[job.endpoint]
            key = (job.subscription_id, job.member_id)
            self._members.discard(key)
            if was_full or key in self._held:
                self._wake.set()

    def _rest(self, subscription_id: str, result: Result, now: float) -> None:
        asked = retry_after_s(result.retry_after, now) if result.status_code in (429, 503) else None
        rest = self._rest_s if asked is None else asked
        until = time.monotonic() + rest
        if rest > 0 and until > self._resting.get(subscription_id, 0.0):
            self._resting[subscription_id] = until
            asyncio.get_running_loop().call_later(rest, self._wake.set)

    async def _send(self, client: aiohttp.ClientSession, job: DeliveryJob) -> Result:
        try:
            target = await self._egress.target(job.url)
        except EgressRefused as exc:
            return Result(error="refused", detail=str(exc))
        headers = signed_headers(job.secrets, job.webhook_id, job.body, content_type=job.content_type)
        headers["host"] = target.host_header
        # The connection goes to the vetted address; TLS still checks the certificate against the name.
        tls_name = {"server_hostname": target.host} if target.scheme == "https" else {}
        try:
            # The session's total timeout covers the whole exchange, so a receiver dripping bytes
            # cannot hold a slot longer than that.
            async with client.post(target.connect_url, data=job.body.encode(), headers=headers,
                                   allow_redirects=False, **tls_name) as response:
                if not await _read_bounded(response.content):
                    response.close()  # the rest is never read, so the connection cannot be reused
                return Result(status_code=response.status, retry_after=response.headers.get("retry-after"))
        except TimeoutError:
            return Result(error="timeout", detail=f"no answer within {self._timeout:g}s")
        except (aiohttp.ClientError, OSError) as exc:
            return Result(error="connection_error", detail=type(exc).__name__)

    async def _record(self) -> None:
        while True:
            batch = [await self._results.get()]
            while len(batch) < RECORD_BATCH and not self._results.empty():
                batch.append(self._results.get_nowait())
            await self._write(batch)

    async def _write(self, batch: list[AttemptResult]) -> None:
        """A failed write is retried; the results are kept until then."""
        while True:
            try:
                now = time.time()
                retry_now = any(r.decision.retry_at is not None and r.decision.retry_at <= now for r in batch)
                if await asyncio.to_thread(self._outbox.record, batch) or retry_now:
                    self._wake.set()  # notices were queued, or a delivery is due again at once
                return
            except Exception as exc:
                log.error("recording %d delivery results failed, retrying: %s", len(batch), where(exc))
                await asyncio.sleep(1.0)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_check)
            try:
                if await asyncio.to_thread(self._outbox.queue_heartbeats, time.time()):
                    self._wake.set()
            except Exception as exc:
                log.error("queueing heartbeats failed: %s", where(exc))

    async def _send_emails(self, emails: EmailNotices, mailer: Mailer) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_check)
            try:
                while email := await asyncio.to_thread(emails.claim, time.time()):
                    error = None
                    try:
                        await asyncio.to_thread(mailer.send, email.to_address, email.subject, email.body)
                    except (smtplib.SMTPException, OSError) as exc:
                        error = f"{type(exc).__name__}: {exc}"
                    await asyncio.to_thread(emails.record, email, error, time.time())
            except Exception as exc:
                log.error("sending e-mail notices failed: %s", where(exc))

    async def close(self, grace_s: float = 5.0) -> None:
        """Call once :meth:`run` has ended. Requests in flight get ``grace_s`` to finish: one cut off
        may already have reached its receiver, and with no result recorded it is sent again once its
        lease ends. Receivers de-duplicate by ``webhook-id``, but a stop should not make them."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace_s)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        done = [self._results.get_nowait() for _ in range(self._results.qsize())]
        if done:  # what was sent is recorded, so it is not sent again after the restart
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._outbox.record, done)
        clients, self._clients = list(self._clients.values()), {}
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def _read_bounded(body: aiohttp.StreamReader) -> bool:
    """Reads (and drops) at most MAX_RESPONSE_BYTES of the answer, so a receiver cannot make the
    worker read an endless body; whether the body ended within that."""
    read = 0
    while chunk := await body.readany():
        read += len(chunk)
        if read > MAX_RESPONSE_BYTES:
            return False
    return True
