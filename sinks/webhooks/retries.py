"""What one delivery attempt's result means: delivered, try again when, give up, or the endpoint
is gone. Pure, so the schedule is tested without a network."""
from __future__ import annotations

import email.utils
import random
from dataclasses import dataclass

# Seconds before each attempt: the first goes at once, the last ~28 hours after the event.
DEFAULT_SCHEDULE_S: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
JITTER = 0.2
# A Retry-After longer than this is capped: a receiver cannot park an event for a week.
MAX_RETRY_AFTER_S = 24 * 3600.0


@dataclass(frozen=True)
class Result:
    """What happened on the wire: a status code, or an error kind when no answer came."""
    status_code: int | None = None
    error: str | None = None  # timeout | connection_error | refused (egress check)
    retry_after: str | None = None
    detail: str | None = None  # what went wrong, for the record (never member data)


@dataclass(frozen=True)
class Decision:
    outcome: str  # delivered | retry | exhausted | gone
    retry_at: float | None = None


def outcome_label(result: Result) -> str:
    """The bounded label attempts are counted and recorded by."""
    if result.status_code is None:
        return result.error or "connection_error"
    if 200 <= result.status_code < 300:
        return "success"
    return f"http_{result.status_code // 100}xx"


def retry_after_s(value: str | None, now: float) -> float | None:
    """Retry-After as delay-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return min(max(0.0, when - now), MAX_RETRY_AFTER_S)


def decide(result: Result, attempts_made: int, now: float, schedule: tuple[float, ...] = DEFAULT_SCHEDULE_S,
           rng: random.Random | None = None) -> Decision:
    """``attempts_made`` counts this attempt. 2xx delivers; 410 means the endpoint is gone; any other
    answer (3xx included: redirects are not followed) or no answer is retried on the schedule, with
    Retry-After honoured on 429 and 503, until the schedule runs out."""
    code = result.status_code
    if code is not None and 200 <= code < 300:
        return Decision("delivered")
    if code == 410:
        return Decision("gone")
    if attempts_made >= len(schedule):
        return Decision("exhausted")
    delay = schedule[attempts_made] * (rng or random).uniform(1 - JITTER, 1 + JITTER)
    if code in (429, 503):
        asked = retry_after_s(result.retry_after, now)
        if asked is not None:
            delay = asked
    return Decision("retry", now + delay)
