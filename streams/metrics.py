"""Prometheus metrics. Labels are bounded sets (topics, reason codes, outcomes), never member data."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

MESSAGES_IN = Counter("gapstream_messages_in_total", "Messages consumed, per topic", ["topic"])
DEAD_LETTERS = Counter("gapstream_dead_letters_total", "Inputs sent to the dead-letter topic", ["source", "reason"])
ALERTS = Counter("gapstream_alerts_total", "Alerts raised", ["alert_type"])
DUPLICATES = Counter("gapstream_adt_duplicates_total", "ADT messages recognised as repeats of a visit's messages")
ALERTS_ROUTED = Counter("gapstream_alerts_routed_total",
                        "Alerts after routing, by type and whether an organization was found", ["alert_type", "routed"])
WEBHOOK_ATTEMPTS = Counter("gapstream_webhook_attempts_total", "Webhook delivery attempts", ["outcome"])
WEBHOOKS_EXHAUSTED = Counter("gapstream_webhook_exhausted_total",
                             "Deliveries that used up their retry schedule (kept in the dead-letter store)")
WEBHOOKS_UNSIGNABLE = Counter("gapstream_webhook_unsignable_total",
                              "Due deliveries this worker left to others because it cannot open their "
                              "subscription's signing secret (its GAPSTREAM_SECRET_KEYS lacks the key)")
ENDPOINTS_DISABLED = Counter("gapstream_webhook_endpoints_disabled_total",
                             "Subscriptions disabled: 410 Gone, or failing for longer than allowed")
DELIVERIES_WITHHELD = Counter("gapstream_deliveries_withheld_total",
                              "Deliveries withheld from a subscriber, by rule", ["reason"])
EVENT_TO_WEBHOOK = Histogram(
    "gapstream_event_to_webhook_seconds",
    "From receipt of the triggering input (MLLP receipt of an ADT message, a claim's arrival) to the webhook's "
    "2xx answer, per event type", ["event_type"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 7200),
)
WEBHOOK_CLAIMS = Counter("gapstream_webhook_claims_total",
                         "Times a dispatcher asked the outbox for due deliveries, by whether it found any",
                         ["found"])
WEBHOOK_RETRIES = Counter("gapstream_webhook_retries_total", "Webhook attempts that were not a delivery's first")
PROCESSING = Histogram(
    "gapstream_processing_seconds", "Time to process one input message, per agent or processor", ["agent"],
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)
REBALANCES = Counter("gapstream_rebalances_total", "Partition assignments received, per consumer", ["consumer"])
PARTITIONS_ASSIGNED = Gauge("gapstream_partitions_assigned", "Partitions this consumer holds", ["consumer"])
RECOVERY_REMAINING = Gauge("gapstream_recovery_partitions_remaining",
                           "Assigned partitions whose state is still being restored from the changelog", ["consumer"])
RECOVERED_KEYS = Counter("gapstream_recovered_keys_total", "State keys restored from changelogs", ["consumer"])
STATE_KEYS = Gauge("gapstream_state_keys", "Keys held in processor state (members, visits), per consumer", ["consumer"])
MLLP_MESSAGES = Counter("gapstream_mllp_messages_total", "HL7 messages answered by the MLLP ingress", ["ack_code"])
ATTRIBUTION_CHANGES = Counter("gapstream_attribution_changes_total",
                              "Members whose attributed organization or provider changed", ["rule"])
GAP_EVENTS = Counter("gapstream_gap_events_total", "Care-gap transitions (gap.opened, gap.closed, ...) by measure",
                     ["measure", "kind"])
CLAIMS_HELD = Counter("gapstream_claims_held_total", "Claims kept but not yet usable, by why", ["reason"])

T = TypeVar("T")
log = logging.getLogger(__name__)


class Measured(Generic[T]):
    """Figures a scrape reports but that take a query to the broker or the database to measure:
    measured at most every ``max_age_s``, and served from the last measurement while a new one runs
    on a thread of its own. Under load a measurement took longer than a scraper waits, and a scrape
    that times out loses every metric, not only these. Only the first read waits for one. A failed
    measurement serves ``empty``: the broker or the database is briefly away, and no figures are
    better than stale ones."""

    def __init__(self, what: str, measure: Callable[[], T], max_age_s: float, empty: T):
        self._what, self._measure, self._max_age_s, self._empty = what, measure, max_age_s, empty
        self._measuring = threading.Lock()
        self._value: T = empty
        self._measured_at: float | None = None  # None: never measured

    def get(self) -> T:
        if self._measured_at is None:
            with self._measuring:
                if self._measured_at is None:
                    self._update()
        elif time.monotonic() - self._measured_at >= self._max_age_s and self._measuring.acquire(blocking=False):
            threading.Thread(target=self._update_and_release, name="metrics-measure", daemon=True).start()
        return self._value

    def _update_and_release(self) -> None:
        try:
            self._update()
        finally:
            self._measuring.release()

    def _update(self) -> None:
        try:
            self._value = self._measure()
        except Exception as exc:  # the type only: a database error may quote the statement
            log.warning("measuring %s failed: %s", self._what, type(exc).__name__)
            self._value = self._empty
        self._measured_at = time.monotonic()


class _Families:
    def __init__(self, families: list[Metric]):
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


def exposition(children: dict[str, bytes], measured: list[Metric] = ()) -> bytes:
    """This process's metrics with those of its child processes (by name) and the ``measured``
    families (read at scrape time), as one exposition. A sample several processes report is summed
    (counters, histograms and the per-process gauges of partitions and state keys all sum); the
    per-process families (memory, CPU, interpreter) get a ``process`` label instead."""
    families = {m.name: m for m in [*REGISTRY.collect(), *measured]}
    for process, text in children.items():
        for family in text_string_to_metric_families(text.decode()):
            if family.name.startswith(("process_", "python_")):
                family.samples = [s._replace(labels={**s.labels, "process": process}) for s in family.samples]
            target = families.setdefault(family.name, family)
            if target is not family:
                target.samples.extend(family.samples)
    for family in families.values():
        family.samples = _summed(family.samples)
    return generate_latest(_Families(list(families.values())))  # type: ignore[arg-type]


def _summed(samples: list) -> list:
    merged: dict[tuple, Any] = {}
    for sample in samples:
        key = (sample.name, tuple(sorted(sample.labels.items())))
        if key not in merged:
            merged[key] = sample
        elif sample.name.endswith("_created"):  # when the series started: the earliest
            merged[key] = merged[key]._replace(value=min(merged[key].value, sample.value))
        else:
            merged[key] = merged[key]._replace(value=merged[key].value + sample.value)
    return list(merged.values())
