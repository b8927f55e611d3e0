"""Prometheus metrics. Labels are bounded sets (topics, reason codes, outcomes), never member data."""
from __future__ import annotations

from prometheus_client import Counter, Histogram

MESSAGES_IN = Counter("gapstream_messages_in_total", "Messages consumed, per topic", ["topic"])
DEAD_LETTERS = Counter("gapstream_dead_letters_total", "Inputs sent to the dead-letter topic", ["source", "reason"])
ALERTS = Counter("gapstream_alerts_total", "Alerts raised", ["alert_type"])
DUPLICATES = Counter("gapstream_adt_duplicates_total", "ADT messages recognised as repeats of a visit's messages")
ALERTS_ROUTED = Counter("gapstream_alerts_routed_total", "Alerts after routing, by whether an organization was found",
                        ["routed"])
WEBHOOK_ATTEMPTS = Counter("gapstream_webhook_attempts_total", "Webhook delivery attempts", ["outcome"])
ADT_TO_WEBHOOK = Histogram(
    "gapstream_adt_to_webhook_seconds", "From MLLP receipt of the ADT message to the webhook's 2xx answer",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
MLLP_MESSAGES = Counter("gapstream_mllp_messages_total", "HL7 messages answered by the MLLP ingress", ["ack_code"])
ATTRIBUTION_CHANGES = Counter("gapstream_attribution_changes_total",
                              "Members whose attributed organization or provider changed", ["rule"])
CLAIMS_HELD = Counter("gapstream_claims_held_total", "Claims kept but not yet usable, by why", ["reason"])
