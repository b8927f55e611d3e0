"""Gauges read from SQL when Prometheus scrapes: the delivery backlog, care gaps by measure,
attributed organization and status, and the size of the tables that grow. Read at most every
``max_age_s`` and off the scrape (see Measured), so frequent scrapes do not become frequent scans
and a slow scan does not make a scrape time out."""
from __future__ import annotations

import time

from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from sinks.sql.models import AttributionCurrent, Base, CareGap
from sinks.sql.store import Store
from streams.metrics import Measured

COUNTED_TABLES = ("alerts", "deliveries", "delivery_attempts", "withheld_deliveries", "care_gaps",
                  "attribution_current", "attribution_history", "providers", "member_cohorts")


class StoreGauges:
    def __init__(self, store: Store, max_age_s: float = 15.0):
        self._store = store
        self._served = Measured("SQL gauges", self._read, max_age_s, empty=None)

    def _read(self) -> tuple[int, float | None, dict[str, int], list]:
        pending, oldest = self._store.outbox.backlog()
        with self._store.engine.connect() as c:
            sizes = {name: c.scalar(select(func.count()).select_from(Base.metadata.tables[name]))
                     for name in COUNTED_TABLES}
            # Organizations are a bounded set (the plan's contracts); members never become labels.
            gaps = c.execute(
                select(CareGap.measure_id, AttributionCurrent.organization_id, CareGap.status, func.count())
                .select_from(CareGap)
                .outerjoin(AttributionCurrent, AttributionCurrent.member_id == CareGap.member_id)
                .group_by(CareGap.measure_id, AttributionCurrent.organization_id, CareGap.status)).all()
        return pending, oldest, sizes, gaps

    def collect(self):
        values = self._served.get()
        if values is None:
            return
        pending, oldest, sizes, gaps = values
        yield GaugeMetricFamily("gapstream_webhook_pending_deliveries",
                                "Alert deliveries waiting to go to active subscriptions", value=pending)
        yield GaugeMetricFamily("gapstream_webhook_oldest_undelivered_seconds",
                                "Age of the oldest alert delivery still waiting (0 when none waits)",
                                value=max(0.0, time.time() - oldest) if oldest else 0.0)
        rows = GaugeMetricFamily("gapstream_sql_table_rows", "Rows per SQL table", labels=["table"])
        for name, count in sizes.items():
            rows.add_metric([name], count)
        yield rows
        by_status = GaugeMetricFamily(
            "gapstream_care_gaps", "Members' care gaps by measure, attributed organization (none when unattributed) "
            "and status", labels=["measure", "organization", "status"])
        for measure, organization, status, count in gaps:
            by_status.add_metric([measure, organization or "none", status], count)
        yield by_status
