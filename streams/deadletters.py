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


def where(exc: BaseException) -> str:
    """Exception type and the place it was raised, for logs: messages may quote input (PHI)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    place = f" at {tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}" if tb else ""
    return f"{type(exc).__name__}{place}"


def dead_letter(source: str, reason: str, detail: str, payload: bytes) -> DeadLetter:
    """Build the record and count it. Logs name the reason only: payloads and details may hold PHI."""
    DEAD_LETTERS.labels(source=source, reason=reason).inc()
    log.warning("dead-lettered input from %s: %s", source, reason)
    return DeadLetter(source=source, reason=reason, detail=detail[:2000], payload=payload,
                      failed_at_ms=int(time.time() * 1000))
