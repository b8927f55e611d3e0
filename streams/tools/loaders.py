"""Publishing files to topics from the command line."""
from __future__ import annotations

import asyncio
import csv
from pathlib import Path

from streams import topics
from streams.config import Settings
from streams.kafka.admin import ensure_topics
from streams.kafka.producer import AsyncProducer
from streams.models import RosterEntry
from streams.runtime import bootstrap_servers
from streams.serialization.codec import codec_for


def read_roster(file: Path) -> list[RosterEntry]:
    with open(file, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"member_id", "organization_id"} <= set(reader.fieldnames):
            raise ValueError(f"{file}: expected a header with member_id,organization_id")
        entries = []
        for line, row in enumerate(reader, start=2):
            if not (row["member_id"] or "").strip():
                raise ValueError(f"{file}:{line}: empty member_id")
            entries.append(RosterEntry(row["member_id"].strip(), (row["organization_id"] or "").strip() or None))
        return entries


async def publish_roster(bootstrap: str, entries: list[RosterEntry], schema_registry_url: str | None) -> None:
    codec = codec_for(schema_registry_url)
    producer = AsyncProducer(bootstrap)
    try:
        await asyncio.gather(*(producer.send(topics.ROSTER, codec.encode(e), e.member_id.encode()) for e in entries))
    finally:
        producer.close()


def load_roster(settings: Settings, file: Path) -> int:
    entries = read_roster(file)
    with bootstrap_servers(settings, start_if_missing=False) as bootstrap:
        ensure_topics(bootstrap, topics.INGRESS_TOPICS, settings.topic_partitions)
        asyncio.run(publish_roster(bootstrap, entries, settings.schema_registry_url))
    return len(entries)
