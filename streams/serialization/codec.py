"""Avro encoding of topic messages with fastavro.

Two framings, so that every message says which schema wrote it:
- with ``SCHEMA_REGISTRY_URL``: Confluent wire format, ``0x00`` + 4-byte schema id + Avro body,
  schemas registered under their record's full name (record-name subject strategy);
- without: Avro single-object encoding, ``0xC3 0x01`` + 8-byte CRC-64-AVRO fingerprint + body.
Decoding accepts both, so a deployment can move to a registry without draining its topics.
"""
from __future__ import annotations

import io
import json
import struct
from typing import Any, Protocol, TypeVar

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

import schemas
from streams.deadletters import BadInput
from streams.models.record import Record

R = TypeVar("R", bound=Record)

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"


class DecodeError(BadInput):
    """A payload that cannot be turned into the expected message."""



class Registry(Protocol):
    """The part of confluent-kafka's SchemaRegistryClient the codec uses."""

    def register_schema(self, subject_name: str, schema: Any) -> int: ...
    def get_schema(self, schema_id: int) -> Any: ...


class _Schema:
    def __init__(self, raw: dict):
        self.raw = raw
        self.parsed = fastavro.parse_schema(raw)
        self.full_name = f"{raw['namespace']}.{raw['name']}"
        self.fingerprint = bytes.fromhex(fingerprint(to_parsing_canonical_form(self.parsed), "CRC-64-AVRO"))


class AvroCodec:
    def __init__(self, registry: Registry | None = None):
        self._registry = registry
        self._by_name: dict[str, _Schema] = {}
        self._by_fingerprint: dict[bytes, _Schema] = {}
        self._by_registry_id: dict[int, _Schema] = {}
        self._registry_id: dict[str, int] = {}
        for name in schemas.names():
            schema = _Schema(schemas.load(name))
            self._by_name[name] = schema
            self._by_fingerprint[schema.fingerprint] = schema

    def encode(self, message: Record) -> bytes:
        schema = self._by_name[message.schema]
        buf = io.BytesIO()
        if self._registry is None:
            buf.write(SINGLE_OBJECT_MAGIC + schema.fingerprint)
        else:
            buf.write(CONFLUENT_MAGIC + struct.pack(">I", self._schema_id(message.schema, schema)))
        fastavro.schemaless_writer(buf, schema.parsed, message.to_record())
        return buf.getvalue()

    def decode(self, data: bytes, expected: type[R]) -> R:
        reader = self._by_name[expected.schema]
        writer, body = self._writer_schema(data)
        if writer.full_name != reader.full_name:
            raise DecodeError("unexpected_schema", f"expected {reader.full_name}, got {writer.full_name}")
        try:
            # Schema resolution costs a third of the decode; skip it when writer and reader are one schema.
            resolve = None if writer.fingerprint == reader.fingerprint else reader.parsed
            record = fastavro.schemaless_reader(io.BytesIO(body), writer.parsed, resolve)
            return expected.from_record(record)
        except Exception as exc:  # fastavro raises a variety of errors on truncated or corrupt bodies
            raise DecodeError("malformed_payload", f"{type(exc).__name__}: {exc}") from exc

    def _writer_schema(self, data: bytes) -> tuple[_Schema, bytes]:
        if data[:2] == SINGLE_OBJECT_MAGIC and len(data) >= 10:
            schema = self._by_fingerprint.get(data[2:10])
            if schema is None:
                raise DecodeError("unknown_schema", f"no schema with fingerprint {data[2:10].hex()}")
            return schema, data[10:]
        if data[:1] == CONFLUENT_MAGIC and len(data) >= 5:
            return self._registry_schema(struct.unpack(">I", data[1:5])[0]), data[5:]
        raise DecodeError("unknown_framing", "payload is neither Avro single-object nor Confluent wire format")

    def _schema_id(self, name: str, schema: _Schema) -> int:
        if name not in self._registry_id:
            from confluent_kafka.schema_registry import Schema

            assert self._registry is not None
            schema_id = self._registry.register_schema(schema.full_name, Schema(json.dumps(schema.raw), "AVRO"))
            self._registry_id[name] = schema_id
            self._by_registry_id[schema_id] = schema
        return self._registry_id[name]

    def _registry_schema(self, schema_id: int) -> _Schema:
        if schema_id not in self._by_registry_id:
            if self._registry is None:
                raise DecodeError("unknown_schema", f"schema id {schema_id} but no SCHEMA_REGISTRY_URL is set")
            try:
                found = self._registry.get_schema(schema_id)
            except Exception as exc:
                raise DecodeError("unknown_schema", f"registry has no schema id {schema_id}: {exc}") from exc
            self._by_registry_id[schema_id] = _Schema(json.loads(found.schema_str))
        return self._by_registry_id[schema_id]


def codec_for(schema_registry_url: str | None) -> AvroCodec:
    if not schema_registry_url:
        return AvroCodec()
    from confluent_kafka.schema_registry import SchemaRegistryClient

    return AvroCodec(SchemaRegistryClient({"url": schema_registry_url}))
