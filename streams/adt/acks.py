"""HL7 v2 acknowledgements (original mode): AA accepted, AE error (resend later), AR rejected."""
from __future__ import annotations

import datetime as dt
import uuid

import hl7

# HL7 table 0357 message error condition codes, by the reason codes gapstream gives bad input.
CONDITIONS = {
    "not_hl7": "100^Segment sequence error",
    "unsupported_message_type": "200^Unsupported message type",
    "missing_control_id": "101^Required field missing",
    "missing_event_type": "101^Required field missing",
    "missing_facility": "101^Required field missing",
}
INTERNAL_ERROR = "207^Application internal error"


def _clean(text: str) -> str:
    # The reason goes into an HL7 field: it must not carry separators of its own.
    return "".join(" " if c in "|^~\\&\r\n" else c for c in text)[:200]


def ack_for(message_text: str | None, code: str, reason_code: str = "", reason: str = "") -> str:
    """The ACK message for ``message_text`` (None when the input was not even HL7).

    ``reason_code`` is gapstream's short code (the dead-letter reason), ``reason`` the text for people.
    """
    condition = f"{CONDITIONS.get(reason_code, INTERNAL_ERROR)}^HL70357"
    control_id = uuid.uuid4().hex[:20]
    if message_text is not None:
        try:
            message = hl7.parse(message_text)
            ack = message.create_ack(code, message_id=control_id, application="gapstream")
            segments = [s for s in str(ack).split("\r") if s]
            if reason:
                segments = [s if not s.startswith("MSA") else f"{s}|{_clean(reason)}" for s in segments]
                segments.append(f"ERR|||{condition}|E||||{_clean(reason)}")
            return "\r".join(segments)
        except Exception:  # a message good enough to be stored may still defeat create_ack
            pass
    now = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
    return "\r".join([
        f"MSH|^~\\&|gapstream||||{now}||ACK|{control_id}|P|2.5.1",
        f"MSA|{code}||{_clean(reason)}",
        f"ERR|||{condition}|E||||{_clean(reason)}",
    ])
