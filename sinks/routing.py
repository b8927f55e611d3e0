"""Routing: an alert goes to the organization its member is attributed to at the time of the alert
(gap alerts arrive addressed by the member processor, which decides attribution and gaps together),
and is stored with its pending deliveries in the outbox.

The current attribution is read from SQL, where the table sink keeps it from the attribution.changes
topic: every worker sees all of it, and the stream of changes (thousands a second while claims load)
is not consumed a second time here.
"""
from __future__ import annotations

from sinks.sql.store import Store
from streams.adt.visits import ED_VISIT
from streams.models import Alert, AttributionChange


def route(store: Store, alerts: list[Alert]) -> int:
    """A batch of alerts, in order: gap statuses kept, then the alerts stored and fanned out.
    Returns how many deliveries were queued."""
    store.gaps.record_many([(a.member_id, a.gap) for a in alerts if a.member_id and a.gap])
    # Gap alerts come addressed already; ADT alerts take the attribution stored now.
    attributed = store.attribution.organizations_of({a.member_id for a in alerts
                                                      if a.member_id and not a.organization_id})
    for alert in alerts:
        if alert.member_id and alert.alert_type == ED_VISIT:
            # The member's open gaps as of now; the follow-up gap this visit opens follows as its own
            # gap.opened alert, which names this alert (the gaps are decided where the claims are).
            alert.open_gaps = store.gaps.for_member(alert.member_id, status="open")
            alert.cohorts = store.cohorts.of(alert.member_id)
        if alert.member_id and not alert.organization_id:
            alert.organization_id = attributed.get(alert.member_id)
    return store.outbox.save_alerts(alerts)


def record_attribution(store: Store, changes: list[AttributionChange]) -> int:
    """Attribution changes kept (current answer and history), and told to the organizations they
    concern. Returns how many deliveries were queued."""
    store.attribution.record_many(changes)
    return store.outbox.notify_attribution(changes)
