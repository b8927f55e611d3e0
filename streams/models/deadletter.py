"""Input that could not be processed, with the reason."""
from __future__ import annotations

from dataclasses import dataclass

from streams.models.record import Record


@dataclass(slots=True)
class DeadLetter(Record):
    schema = "dead_letter"
    source: str
    reason: str
    detail: str
    payload: bytes
    failed_at_ms: int
