"""MLLP ingress against the real embedded broker: AA only for what the broker stored."""
import asyncio

from streams import topics
from streams.adt.mllp import MllpIngress
from streams.adt.mllp_client import ack_code, send_messages
from streams.kafka.admin import ensure_topics
from streams.kafka.broker import free_port, start_embedded
from streams.kafka.producer import AsyncProducer
from streams.models import DeadLetter
from streams.serialization.codec import AvroCodec
from tests.helpers import CORPUS, ED_FILES, read_topic


async def serve(bootstrap: str, timeout_s: float = 5.0):
    ensure_topics(bootstrap, topics.INGRESS_TOPICS, 4)
    producer = AsyncProducer(bootstrap, timeout_s)
    ingress = MllpIngress(producer, AvroCodec(), timeout_s)
    port = free_port()
    server = await ingress.serve("127.0.0.1", port)
    return server, producer, port


async def test_every_corpus_message_is_acknowledged_only_once_stored(broker):
    server, producer, port = await serve(broker.bootstrap)
    try:
        files = sorted(CORPUS.glob("*.hl7"))
        report = await send_messages("127.0.0.1", port, [f.read_bytes() for f in files], connections=4)
    finally:
        server.close()
        producer.close()
    assert set(report.acks) == {"AA"}
    stored = [m.value() for m in read_topic(broker.bootstrap, topics.ADT_RAW)]
    for f in files:  # every AA'd message is on adt.raw, BOM and line endings normalised
        text = f.read_bytes().decode("utf-8-sig").replace("\r\n", "\r").replace("\n", "\r").strip("\r")
        assert text.encode() in stored, f.name


async def test_malformed_input_is_rejected_and_dead_lettered(broker):
    server, producer, port = await serve(broker.bootstrap)
    try:
        report = await send_messages("127.0.0.1", port, [
            b"hello, this is not HL7",
            b"MSH|^~\\&|LAB|FAC|||20240101||ORU^R01|C1|P|2.5\rPID|1||X",
        ])
    finally:
        server.close()
        producer.close()
    assert report.acks == ["AR", "AR"]
    letters = [AvroCodec().decode(m.value(), DeadLetter) for m in read_topic(broker.bootstrap, topics.DLQ)]
    assert {(d.source, d.reason) for d in letters} >= {("mllp", "not_hl7"), ("mllp", "unsupported_message_type")}
    assert b"hello, this is not HL7" in {d.payload for d in letters}


async def test_a_batch_gets_one_ack_per_message(broker):
    server, producer, port = await serve(broker.bootstrap)
    messages = [(CORPUS / f).read_bytes().decode("utf-8-sig").strip("\r") for f in ED_FILES]
    batch = "\r".join(["BHS|^~\\&|HIE", *messages, "BTS|2"]).encode()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x0b" + batch + b"\x1c\r")
        response = await reader.readuntil(b"\x1c\r")
        writer.close()
    finally:
        server.close()
        producer.close()
    text = response.decode()
    assert text.count("MSA|AA|") == 2 and "NIST-SS-003.32" in text and "1270326314" in text


async def test_a_dead_broker_gets_AE_never_AA(tmp_path):
    doomed = start_embedded(tmp_path / "doomed.log")
    server, producer, port = await serve(doomed.bootstrap, timeout_s=2.0)
    try:
        first = await send_messages("127.0.0.1", port, [(CORPUS / ED_FILES[0]).read_bytes()])
        assert first.acks == ["AA"]
        doomed.stop()
        after = await send_messages("127.0.0.1", port, [(CORPUS / ED_FILES[1]).read_bytes(), b"not hl7"])
    finally:
        server.close()
        producer.close()
    # Neither the valid message nor the rejection could be recorded: the sender must resend both.
    assert after.acks == ["AE", "AE"]


def test_ack_code_reads_msa():
    assert ack_code(b"MSH|^~\\&|x\rMSA|AE|1|why") == "AE"
