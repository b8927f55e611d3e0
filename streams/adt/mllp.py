"""MLLP ingress: HL7 v2 over TCP in, raw messages onto ``adt.raw``, an ACK back for each.

The ACK is ``AA`` only once the broker has acknowledged the write: an HIE that got ``AA`` may
forget the message, so gapstream must already have stored it. Input that gapstream can never
accept goes to the dead-letter topic and gets ``AR``; a write the broker did not confirm in time
gets ``AE``, which tells the sender to try again.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import hl7.mllp

from streams.adt.acks import ack_for
from streams.adt.hl7text import NotHl7Error, split_messages
from streams.adt.parse import AdtParseError, parse_header
from streams.deadletters import dead_letter
from streams.kafka.producer import AsyncProducer, ProduceError
from streams.metrics import MLLP_MESSAGES
from streams.serialization.codec import AvroCodec
from streams.topics import ADT_RAW, DLQ

log = logging.getLogger(__name__)
SOURCE = "mllp"


@dataclass
class Verdict:
    code: str
    reason_code: str = ""
    reason: str = ""


class MllpIngress:
    def __init__(self, producer: AsyncProducer, codec: AvroCodec, store_timeout_s: float = 10.0):
        self._producer = producer
        self._codec = codec
        self._timeout = store_timeout_s

    async def serve(self, host: str, port: int) -> asyncio.AbstractServer:
        # python-hl7 frames the blocks; encoding=None keeps them as bytes so that gapstream decides
        # how to decode, and a message it cannot parse still gets an answer.
        return await hl7.mllp.start_hl7_server(self._on_client, host, port, limit=16 * 1024 * 1024)

    async def _on_client(self, reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter) -> None:
        try:
            while not reader.at_eof():
                try:
                    block = await reader.readblock()
                except asyncio.IncompleteReadError:
                    break
                except (hl7.mllp.InvalidBlockError, ValueError) as exc:
                    # No framing to recover from: answer, record, and close the connection.
                    await self._reject_unframed(str(exc), writer)
                    break
                writer.writeblock((await self.handle_block(block)).encode("utf-8"))
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle_block(self, block: bytes) -> str:
        """Store every message of one MLLP block and return the ACK text to send back."""
        received_at_ms = int(time.time() * 1000)
        try:
            messages = split_messages(block)
        except NotHl7Error as exc:
            verdict = await self._dead_letter(block, "not_hl7", str(exc))
            MLLP_MESSAGES.labels(ack_code=verdict.code).inc()
            return ack_for(None, verdict.code, verdict.reason_code, verdict.reason)
        verdicts = await asyncio.gather(*(self._store(m, received_at_ms) for m in messages))
        acks = [ack_for(m, v.code, v.reason_code, v.reason) for m, v in zip(messages, verdicts, strict=True)]
        for v in verdicts:
            MLLP_MESSAGES.labels(ack_code=v.code).inc()
        if len(acks) == 1:
            return acks[0]
        # A batch is answered with a batch of ACKs, one per message, in order.
        return "\r".join(["BHS|^~\\&|gapstream", *acks, f"BTS|{len(acks)}"])

    async def _store(self, message: str, received_at_ms: int) -> Verdict:
        raw = message.encode("utf-8")
        try:
            header = parse_header(raw)
        except AdtParseError as exc:
            return await self._dead_letter(raw, exc.reason, exc.detail)
        try:
            # Keyed by visit, so the events of one encounter stay in order on one partition.
            await asyncio.wait_for(self._producer.send(ADT_RAW, raw, header.visit_key.encode(), received_at_ms),
                                   self._timeout)
        except (TimeoutError, ProduceError) as exc:
            log.warning("could not store an ADT message: %s", type(exc).__name__)
            return Verdict("AE", "store_failed", "message not stored, the broker did not confirm the write; resend")
        return Verdict("AA")

    async def _dead_letter(self, raw: bytes, reason_code: str, detail: str) -> Verdict:
        record = dead_letter(SOURCE, reason_code, detail, raw)
        try:
            await asyncio.wait_for(self._producer.send(DLQ, self._codec.encode(record)), self._timeout)
        except (TimeoutError, ProduceError):
            return Verdict("AE", "store_failed", f"{detail}; and it could not be recorded, resend")
        return Verdict("AR", reason_code, detail)

    async def _reject_unframed(self, detail: str, writer: hl7.mllp.HL7StreamWriter) -> None:
        verdict = await self._dead_letter(b"", "bad_framing", f"MLLP framing error: {detail}")
        MLLP_MESSAGES.labels(ack_code=verdict.code).inc()
        writer.writeblock(ack_for(None, verdict.code, verdict.reason_code, verdict.reason).encode("utf-8"))
        await writer.drain()
