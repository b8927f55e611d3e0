"""Gap transitions as alerts: the envelope, routing and delivery of ADT alerts, with the gap inside."""
from __future__ import annotations

import uuid

from streams.adt.visits import ED_VISIT, alert_id
from streams.caregaps.lifecycle import Gap, GapEvent
from streams.caregaps.measures import FollowUp, measures
from streams.caregaps.member import gap_id
from streams.models import Alert, GapInfo

_NAMESPACE = uuid.UUID("0d7f8a52-3c1b-4e8e-9a61-5b0f2f6c9d24")


def gap_info(gap: Gap, detail: dict[str, str] | None = None) -> GapInfo:
    measure = measures().get(gap.measure_id)
    detail = dict(detail or {})
    if measure and isinstance(measure.rules, FollowUp) and measure.rules.trigger == "ed_visit":
        detail["ed_alert_id"] = alert_id(ED_VISIT, gap.trigger_id)  # the ED-visit alert this gap follows
    return GapInfo(
        gap_id=gap_id(gap.measure_id, gap.trigger_id), measure_id=gap.measure_id,
        measure_title=measure.title if measure else "", trigger_id=gap.trigger_id, status=gap.status.value,
        window_start=gap.window_start.isoformat(), due=gap.due.isoformat(),
        evidence_ids=[e.id for e in gap.evidence], closed_late=gap.closed_late, revision=gap.revision,
        detail=detail)


def gap_alert(member_id: str, organization_id: str | None, event: GapEvent, received_at_ms: int,
              now_ms: int, cohorts: list[str] | None = None) -> Alert:
    """The alert for one transition, addressed to the organization the member is attributed to as
    the gap changed. Its id is stable: replaying the same transition (the same gap at the same
    revision) gives the same id, so a redelivery is recognised as one."""
    gap = event.gap
    key = f"{member_id}|{gap_id(gap.measure_id, gap.trigger_id)}|{gap.revision}|{event.kind}"
    return Alert(
        alert_id=str(uuid.uuid5(_NAMESPACE, key)),
        alert_type=event.kind, member_id=member_id, organization_id=organization_id, facility="", event_type="",
        occurred_at=(gap.evidence[-1].service_date if gap.evidence else gap.window_start).isoformat(),
        received_at_ms=received_at_ms, created_at_ms=now_ms, gap=gap_info(gap, event.detail),
        cohorts=list(cohorts or []))
