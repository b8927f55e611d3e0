"""What a subscriber receives: the Standard Webhooks envelope around an alert."""
from __future__ import annotations

import datetime as dt
import json

from streams.models import Alert


def alert_body(alert: Alert, webhook_id: str) -> str:
    data = alert.to_record()
    return json.dumps({
        "type": alert.alert_type,
        "timestamp": dt.datetime.fromtimestamp(alert.created_at_ms / 1000, dt.UTC).isoformat(),
        "data": data,
    }, sort_keys=True, separators=(",", ":"))
