"""Conversion between message dataclasses and the plain dicts Avro reads and writes."""
from __future__ import annotations

import dataclasses
import typing
from functools import cache
from typing import Any, ClassVar, TypeVar

R = TypeVar("R", bound="Record")


class Record:
    """Base of every message dataclass. ``schema`` is the stem of its file in ``schemas/``."""

    schema: ClassVar[str]

    def to_record(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies every value, and this runs for every message sent.
        return {name: _plain(getattr(self, name)) for name in _field_names(type(self))}

    @classmethod
    def from_record(cls: type[R], data: dict[str, Any]) -> R:
        hints = _hints(cls)
        kwargs = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name in data:
                kwargs[f.name] = _convert(hints[f.name], data[f.name])
        return cls(**kwargs)


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_record()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (list, tuple) and args:
        return [_convert(args[0], v) for v in value]
    if origin is typing.Union or str(origin) == "types.UnionType":
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value) if len(inner) == 1 else value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return hint.from_record(value) if issubclass(hint, Record) else hint(**value)
    return value
