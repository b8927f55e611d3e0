"""What a subscriber receives. Bodies are rendered once, when a delivery is queued, and stored: a
retry or a redelivery sends the very same bytes under the same ``webhook-id``.

Formats:
- ``json-full``: the Standard Webhooks envelope (type, timestamp, data) around the whole alert;
- ``json-thin``: the same envelope with identifiers only; the receiver fetches the rest from
  ``GET /alerts/{alert_id}`` with its token;
- ``fhir``: a Da Vinci Unsolicited Notification message Bundle (ADT events only).
Every event body carries the subscription's event number, so a receiver sees when one is missing.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sinks.webhooks.notification import notification_bundle
from streams.models import Alert

FORMATS = ("json-full", "json-thin", "fhir")
JSON, FHIR_JSON = "application/json", "application/fhir+json"


def _dump(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def utc_iso(seconds: float, timespec: str = "seconds") -> str:
    """A Unix time as ISO 8601 in UTC, the way every timestamp gapstream sends or answers is written."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec=timespec)


def envelope(event_type: str, at_ms: int, subscription_id: str, event_number: int | None,
             data: dict[str, Any]) -> str:
    body: dict[str, Any] = {"type": event_type, "timestamp": utc_iso(at_ms / 1000, "auto"),
                            "subscription_id": subscription_id, "data": data}
    if event_number is not None:
        body["events_since_subscription_start"] = event_number
    return _dump(body)


def thin(alert: Alert) -> dict[str, Any]:
    data = {"alert_id": alert.alert_id, "alert_type": alert.alert_type, "member_id": alert.member_id,
            "organization_id": alert.organization_id, "facility": alert.facility,
            "visit_number": alert.visit_number, "occurred_at": alert.occurred_at}
    if alert.gap:
        data.update(gap_id=alert.gap.gap_id, measure_id=alert.gap.measure_id, status=alert.gap.status)
    if alert.cancels_alert_id:
        data.update(cancels_alert_id=alert.cancels_alert_id, cancels_alert_type=alert.cancels_alert_type)
    return data


def render(alert: Alert, fmt: str, subscription_id: str, event_number: int) -> tuple[str, str]:
    """The body and content type of one alert for one subscription."""
    if fmt == "fhir":
        bundle = notification_bundle(alert, subscription_id, event_number, utc_iso(alert.created_at_ms / 1000, "auto"))
        return _dump(bundle), FHIR_JSON
    data = thin(alert) if fmt == "json-thin" else alert.to_record()
    return envelope(alert.alert_type, alert.created_at_ms, subscription_id, event_number, data), JSON
