"""Turning bytes received from an HIE into HL7 v2 message texts.

Senders differ in the small things: a UTF-8 byte-order mark, ``\\n`` or ``\\r\\n`` between
segments, several messages wrapped in FHS/BHS batch envelopes. This module smooths those over and
leaves the rest to python-hl7.
"""
from __future__ import annotations

import hl7
from hl7.exceptions import ParseException

BOM = "\ufeff"


class NotHl7Error(ValueError):
    """The bytes are not an HL7 v2 message or batch."""


def decode(raw: bytes) -> str:
    """Bytes to text with ``\\r`` segment separators. Latin-1 is the fallback HL7 allows senders."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    text = text.lstrip(BOM).replace("\r\n", "\r").replace("\n", "\r")
    return text.strip("\r \t\x00")


def split_messages(raw: bytes) -> list[str]:
    """The messages in one MLLP block: one for a plain message, each member of an FHS/BHS batch."""
    text = decode(raw)
    if not text:
        raise NotHl7Error("empty message")
    try:
        parsed = hl7.parse_hl7(text)
    except (ValueError, ParseException, IndexError) as exc:
        raise NotHl7Error(f"not an HL7 v2 message or batch: {exc}") from exc
    if isinstance(parsed, hl7.Message):
        return [text]
    batches = list(parsed) if isinstance(parsed, hl7.File) else [parsed]
    messages = [str(message) for batch in batches for message in batch]
    if not messages:
        raise NotHl7Error("batch holds no messages")
    return messages
