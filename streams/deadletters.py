"""The dead-letter topic: bad input is kept there with its reason, and counted."""
from __future__ import annotations

import logging
import time

from streams.metrics import DEAD_LETTERS
from streams.models import DeadLetter


class BadInput(ValueError):
    """Input that can never be processed as it is: it goes to the dead-letter topic with ``reason``
    (a short code, also the metric label) and ``detail`` (for people; may quote the input)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

log = logging.getLogger(__name__)


def dead_letter(source: str, reason: str, detail: str, payload: bytes) -> DeadLetter:
    """Build the record and count it. Logs name the reason only: payloads and details may hold PHI."""
    DEAD_LETTERS.labels(source=source, reason=reason).inc()
    log.warning("dead-lettered input from %s: %s", source, reason)
    return DeadLetter(source=source, reason=reason, detail=detail[:2000], payload=payload,
                      failed_at_ms=int(time.time() * 1000))
