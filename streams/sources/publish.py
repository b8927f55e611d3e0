"""Publishing records to their topics from outside the worker (CLI loaders, demo, benchmarks)."""
from __future__ import annotations

import asyncio
from collections.abc import Iterable

from streams import topics
from streams.kafka.producer import AsyncProducer
from streams.models import EligibilitySpan, MedicalClaim, PharmacyClaim, Provider, Record
from streams.serialization.codec import codec_for

# Topic and key of each message type: member-keyed topics are co-partitioned with member state.
ROUTES: dict[type, tuple[str, str]] = {
    MedicalClaim: (topics.CLAIMS_MEDICAL, "member_id"),
    PharmacyClaim: (topics.CLAIMS_PHARMACY, "member_id"),
    EligibilitySpan: (topics.ELIGIBILITY, "member_id"),
    Provider: (topics.PROVIDERS, "npi"),
}


async def publish(bootstrap: str, records: Iterable[Record], schema_registry_url: str | None = None,
                  window: int = 5000) -> int:
    """Send every record and wait until the broker confirmed each; return how many."""
    codec = codec_for(schema_registry_url)
    producer = AsyncProducer(bootstrap)
    pending: set[asyncio.Future] = set()
    count = 0
    try:
        for record in records:
            topic, key_field = ROUTES[type(record)]
            pending.add(asyncio.ensure_future(
                producer.send(topic, codec.encode(record), getattr(record, key_field).encode())))
            count += 1
            if len(pending) >= window:  # bounded, so a large file does not sit in memory as futures
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for f in done:
                    f.result()
        await asyncio.gather(*pending)
    finally:
        producer.close()
    return count
