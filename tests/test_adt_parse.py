"""The ADT parser over the 61-message corpus and the framing variants HIEs send."""
import csv

import pytest

from streams.adt.hl7text import NotHl7Error, split_messages
from streams.adt.parse import AdtParseError, parse_adt, parse_header
from tests.helpers import CORPUS, ED_FILES

CORPUS_FILES = sorted(p.name for p in CORPUS.glob("*.hl7"))


def test_corpus_is_complete():
    assert len(CORPUS_FILES) == 61


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_every_corpus_message_parses_or_is_rejected_with_a_reason(name):
    raw = (CORPUS / name).read_bytes()
    try:
        event = parse_adt(raw, received_at_ms=1)
    except AdtParseError as exc:
        assert exc.reason and exc.detail
        return
    assert event.message_control_id
    assert event.event_type.startswith("A")
    assert event.sending_facility


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_only_emergency_visits_are_recognized_as_ed(name):
    event = parse_adt((CORPUS / name).read_bytes(), received_at_ms=1)
    assert event.emergency == (name in ED_FILES)


def test_event_types_match_the_manifest():
    with open(CORPUS / "manifest.csv") as f:
        for row in csv.DictReader(f):
            event = parse_adt((CORPUS / row["file"]).read_bytes(), 1)
            assert event.event_type == row["message_type"].split("^")[1], row["file"]


def test_nist_syndromic_ed_discharge():
    event = parse_adt((CORPUS / "elixirhl7_NIST_SS_ADT_A03_ED_v251.hl7").read_bytes(), 1)
    assert (event.event_type, event.sending_facility, event.visit_number) == ("A03", "LakeMichMC", "33333_001")
    assert event.patient_class is None and event.facility_type == "261QE0002X"
    assert event.member_id == "33333"
    assert [d.code for d in event.diagnoses] == ["0074", "27651", "78791"]
    assert {d.system for d in event.diagnoses} == {"I9CDX"}
    assert event.discharge_disposition == "09"


def test_ed_registration_with_bom_and_no_evn():
    raw = (CORPUS / "msfhirconv_ADT04-251.hl7").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    event = parse_adt(raw, 1)
    assert (event.event_type, event.patient_class, event.member_id) == ("A04", "E", "MRN12345")
    assert event.patient.family_name == "Doe" and event.patient.birth_date == "1978-01-01"
    # No EVN segment: the event time falls back to MSH-7, offset kept.
    assert event.event_time == "2019-05-04T18:12:05+07:00"


def test_times_keep_their_utc_offset():
    event = parse_adt((CORPUS / "msfhirconv_ADT-A03-01.hl7").read_bytes(), 1)
    assert event.admit_time == "2015-02-08T11:34:19+01:10"


@pytest.mark.parametrize("separator", [b"\r", b"\n", b"\r\n"])
def test_segment_separators(separator):
    raw = (CORPUS / "msfhirconv_ADT-A01-01.hl7").read_bytes().replace(b"\r", separator)
    assert parse_adt(raw, 1).visit_number == "40007716"
    assert len(split_messages(raw)) == 1


def test_batches_are_split_into_their_messages():
    messages = [(CORPUS / f).read_bytes().decode("utf-8-sig").strip("\r") for f in ED_FILES]
    batch = "\r".join(["FHS|^~\\&|HIE", "BHS|^~\\&|HIE", *messages, "BTS|2", "FTS|1"]).encode()
    parts = split_messages(batch)
    assert len(parts) == 2
    assert [parse_adt(p.encode(), 1).event_type for p in parts] == ["A03", "A04"]


@pytest.mark.parametrize("raw,reason", [
    (b"this is not hl7", "not_hl7"),
    (b"MSH|^~\\&|LAB|FAC|||20240101||ORU^R01|1|P|2.5\rPID|1||X", "unsupported_message_type"),
    (b"MSH|^~\\&|A|FAC|||20240101||ADT^A04||P|2.5\rPID|1||X", "missing_control_id"),
    (b"MSH|^~\\&|||||20240101||ADT^A04|7|P|2.5\rPID|1||X", "missing_facility"),
])
def test_bad_messages_get_a_reason(raw, reason):
    with pytest.raises(AdtParseError) as exc:
        parse_adt(raw, 1)
    assert exc.value.reason == reason


def test_not_hl7_is_refused_by_the_splitter():
    with pytest.raises(NotHl7Error):
        split_messages(b"\xef\xbb\xbf  ")
    with pytest.raises(NotHl7Error):
        split_messages(b"GET / HTTP/1.1\r\n")


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_the_ingress_header_check_agrees_with_the_full_parse(name):
    raw = (CORPUS / name).read_bytes()
    event = parse_adt(raw, 1)
    header = parse_header(raw)
    assert (header.control_id, header.event_type, header.visit_key) == (
        event.message_control_id, event.event_type, event.visit_key)
