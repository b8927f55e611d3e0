"""Publishing records to their topics from outside the worker (CLI loaders, demo, benchmarks)."""
from __future__ import annotations

import asyncio
from collections.abc import Iterable

from streams import topics
from streams.kafka.producer import AsyncProducer
from streams.models import (
    Alert,
    AttributionOverride,
    EligibilitySpan,
    Encounter,
    MedicalClaim,
    PharmacyClaim,
    Provider,
    Record,
)
from streams.serialization.codec import codec_for

# Topic and key of each message type: member-keyed topics are co-partitioned with member state.
ROUTES: dict[type, tuple[str, str]] = {
    MedicalClaim: (topics.CLAIMS_MEDICAL, "member_id"),
    PharmacyClaim: (topics.CLAIMS_PHARMACY, "member_id"),
    EligibilitySpan: (topics.ELIGIBILITY, "member_id"),
    Provider: (topics.PROVIDERS, "npi"),
    AttributionOverride: (topics.ATTRIBUTION_OVERRIDES, "member_id"),
    Encounter: (topics.ENCOUNTERS, "member_id"),  # normally from the ADT agents; benchmarks replay them
    Alert: (topics.ALERTS, "member_id"),  # likewise
}


async def publish(bootstrap: str, records: Iterable[Record], schema_registry_url: str | None = None,
                  window: int = 5000) -> int:
    """Send every record and wait until the broker confirmed each; return how many."""
    codec = codec_for(schema_registry_url)
    producer = AsyncProducer(bootstrap)
    # Bounded, so a large file does not sit in memory as futures; a semaphore rather than
    # asyncio.wait over the pending set, which costs the whole window per completed send.
    room = asyncio.Semaphore(window)
    failures: list[BaseException] = []
    sends: set[asyncio.Task] = set()

    async def send(topic: str, value: bytes, key: bytes) -> None:
        try:
            await producer.send(topic, value, key)
        except Exception as exc:
            failures.append(exc)
        finally:
            room.release()

    count = 0
    try:
        for record in records:
            topic, key_field = ROUTES[type(record)]
            await room.acquire()
            if failures:
                break
            task = asyncio.ensure_future(send(topic, codec.encode(record), getattr(record, key_field).encode()))
            sends.add(task)
            task.add_done_callback(sends.discard)
            count += 1
        await asyncio.gather(*sends)
    finally:
        producer.close()
    if failures:
        raise failures[0]
    return count
