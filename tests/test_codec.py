"""Avro codec: self-describing messages, and clear reasons for what cannot be decoded."""
import json

import fastavro
import pytest

import schemas
from streams.models import (
    AdtEvent,
    Alert,
    AttributionChange,
    AttributionOverride,
    ClaimLine,
    DeadLetter,
    Diagnosis,
    EligibilitySpan,
    MedicalClaim,
    Patient,
    PatientIdentifier,
    PharmacyClaim,
    Provider,
)
from streams.serialization.codec import AvroCodec, DecodeError

EVENT = AdtEvent(message_control_id="c1", event_type="A04", sending_facility="F", received_at_ms=1,
                 emergency=True, patient=Patient(family_name="Doe", birth_date="1970-01-01"),
                 patient_identifiers=[PatientIdentifier(id="M1", source="PID-3", type_code="MB")],
                 diagnoses=[Diagnosis(code="R07.9", system="I10")])


def test_every_schema_is_valid_avro():
    for name in schemas.names():
        fastavro.parse_schema(schemas.load(name))


@pytest.mark.parametrize("message", [
    EVENT,
    Alert(alert_id="a", alert_type="adt.ed_visit", facility="F", event_type="A04", received_at_ms=1,
          created_at_ms=2, member_id="M1", diagnoses=[Diagnosis(code="X")]),
    DeadLetter(source="mllp", reason="not_hl7", detail="d", payload=b"\x00\x01", failed_at_ms=3),
    MedicalClaim(claim_id="c", frequency_code="1", member_id="M1", claim_type="PROFESSIONAL", received_at_ms=1,
                 diagnosis_codes=["I10"], lines=[ClaimLine(line_number=1, service_date="2025-01-01",
                                                           procedure_code="99213", allowed_amount=90.5)]),
    PharmacyClaim(claim_id="p", member_id="M1", ndc11="00093505698", fill_date="2025-01-01", days_supply=30,
                  quantity=30.0, received_at_ms=1, reversal=True),
    EligibilitySpan(member_id="M1", payer="P", product_line="ACO", coverage_start="2025-01-01",
                    birth_date="1950-01-01", sex="F", received_at_ms=1),
    Provider(npi="1000000001", name="Dr", role="SPECIALIST"),
    AttributionChange(member_id="M1", rule="plurality", reason="r", effective_date="2025-01-01", explanation="{}",
                      changed_at_ms=1, new_organization_id="O"),
    AttributionOverride(dispute_id="d", member_id="M1", kind="remove", organization_id="O",
                        effective_from="2025-01-01", decided_at="2025-01-01T00:00:00"),
])
def test_round_trip(message):
    codec = AvroCodec()
    assert codec.decode(codec.encode(message), type(message)) == message


def test_single_object_encoding_header():
    data = AvroCodec().encode(EVENT)
    assert data[:2] == b"\xc3\x01" and len(data) > 10


def test_unknown_fingerprint():
    data = bytearray(AvroCodec().encode(EVENT))
    data[2:10] = b"\xff" * 8
    with pytest.raises(DecodeError) as exc:
        AvroCodec().decode(bytes(data), AdtEvent)
    assert exc.value.reason == "unknown_schema"


def test_truncated_payload():
    data = AvroCodec().encode(EVENT)
    with pytest.raises(DecodeError) as exc:
        AvroCodec().decode(data[:14], AdtEvent)
    assert exc.value.reason == "malformed_payload"


def test_unframed_payload():
    with pytest.raises(DecodeError) as exc:
        AvroCodec().decode(b'{"json": true}', AdtEvent)
    assert exc.value.reason == "unknown_framing"


def test_wrong_message_type():
    data = AvroCodec().encode(Provider(npi="1000000001", name="Dr", role="SPECIALIST"))
    with pytest.raises(DecodeError) as exc:
        AvroCodec().decode(data, AdtEvent)
    assert exc.value.reason == "unexpected_schema"


class InMemoryRegistry:
    """The two calls of confluent-kafka's SchemaRegistryClient that the codec makes."""

    def __init__(self):
        self.schemas = {}

    def register_schema(self, subject_name, schema):
        for schema_id, (subject, known) in self.schemas.items():
            if subject == subject_name and known.schema_str == schema.schema_str:
                return schema_id
        self.schemas[len(self.schemas) + 1] = (subject_name, schema)
        return len(self.schemas)

    def get_schema(self, schema_id):
        return self.schemas[schema_id][1]


def test_confluent_wire_format_with_a_registry():
    registry = InMemoryRegistry()
    writer = AvroCodec(registry)
    data = writer.encode(EVENT)
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") == 1
    assert registry.schemas[1][0] == "org.gapstream.AdtEvent"
    assert json.loads(registry.schemas[1][1].schema_str)["name"] == "AdtEvent"
    # A reader that has not registered anything fetches the writer's schema by id.
    assert AvroCodec(registry).decode(data, AdtEvent) == EVENT
    # Without a registry the id cannot be resolved: that is a reason, not a crash.
    with pytest.raises(DecodeError) as exc:
        AvroCodec().decode(data, AdtEvent)
    assert exc.value.reason == "unknown_schema"

