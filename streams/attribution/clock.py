"""The date attribution is evaluated on.

``wall`` (default) is today. ``event`` follows the data: the latest service, fill or coverage date
seen, which is what a replay of historical claims needs. An ISO date pins it (tests, benchmarks,
a plan's year-end run). Set with ``GAPSTREAM_ATTRIBUTION_CLOCK``.
"""
from __future__ import annotations

import datetime as dt


class Clock:
    def __init__(self, mode: str = "wall"):
        self.mode = mode
        self._pinned = dt.date.fromisoformat(mode) if mode not in ("wall", "event") else None
        self._watermark: dt.date | None = None

    def observe(self, day: dt.date) -> None:
        if self._watermark is None or day > self._watermark:
            self._watermark = day

    def today(self) -> dt.date:
        if self._pinned:
            return self._pinned
        if self.mode == "event":
            return self._watermark or dt.date.today()
        return dt.date.today()
