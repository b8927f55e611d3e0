"""A small MLLP sender, as an HIE interface engine would be: one message at a time per connection,
waiting for each ACK. Used by the demo, the benchmark and the tests."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import hl7.mllp


@dataclass
class SendReport:
    acks: list[str] = field(default_factory=list)  # the MSA-1 code per message, in feed order
    seconds: float = 0.0


def ack_code(ack: bytes) -> str:
    for segment in ack.decode("utf-8", "replace").split("\r"):
        if segment.startswith("MSA|"):
            return segment.split("|")[1]
    return "?"


async def send_messages(host: str, port: int, messages: list[bytes], connections: int = 1,
                        rate_per_s: float | None = None) -> SendReport:
    """Send ``messages`` over ``connections`` parallel MLLP connections, optionally paced."""
    report = SendReport(acks=[""] * len(messages))
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(messages)):
        queue.put_nowait(i)
    started = time.monotonic()

    async def sender() -> None:
        reader, writer = await hl7.mllp.open_hl7_connection(host, port)
        try:
            while not queue.empty():
                i = queue.get_nowait()
                if rate_per_s:
                    await asyncio.sleep(max(0.0, started + i / rate_per_s - time.monotonic()))
                writer.writeblock(messages[i])
                await writer.drain()
                report.acks[i] = ack_code(await reader.readblock())
        finally:
            writer.close()

    await asyncio.gather(*(sender() for _ in range(max(1, connections))))
    report.seconds = time.monotonic() - started
    return report
