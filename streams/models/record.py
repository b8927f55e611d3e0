"""Conversion between message dataclasses and the plain dicts Avro reads and writes."""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from functools import cache
from typing import Any, ClassVar, TypeVar

R = TypeVar("R", bound="Record")
Converter = Callable[[Any], Any]


class Record:
    """Base of every message dataclass. ``schema`` is the stem of its file in ``schemas/``."""

    __slots__ = ()  # the message dataclasses are slotted: lighter to build, millions are decoded
    schema: ClassVar[str]

    def to_record(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies every value, and this runs for every message sent.
        # Only fields that hold messages (see _converters) need turning into dicts.
        record = {name: getattr(self, name) for name in _field_names(type(self))}
        for name, _ in _converters(type(self)):
            record[name] = _plain(record[name])
        return record

    @classmethod
    def from_record(cls: type[R], data: dict[str, Any]) -> R:
        # Converters are worked out once per class from the type hints; this runs for every message
        # read, so only the fields that need one are touched.
        converters = _converters(cls)
        if converters:
            data = {**data, **{name: convert(data[name]) for name, convert in converters if name in data}}
        try:
            return cls(**data)
        except TypeError:  # fields this version does not know (a newer writer): leave them out
            known = _field_names(cls)
            return cls(**{k: v for k, v in data.items() if k in known})


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
def _converters(cls: type) -> tuple[tuple[str, Converter], ...]:
    """The fields whose Avro value is not usable as it is, with their converter."""
    hints = typing.get_type_hints(cls)
    pairs = ((f.name, _converter(hints[f.name])) for f in dataclasses.fields(cls))
    return tuple((name, convert) for name, convert in pairs if convert is not None)


def _converter(hint: Any) -> Converter | None:
    """None when the Avro value can be used as it is."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (list, tuple) and args:
        inner = _converter(args[0])
        return (lambda values: [inner(v) for v in values]) if inner else None
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        options = [a for a in args if a is not type(None)]
        inner = _converter(options[0]) if len(options) == 1 else None
        return (lambda value: None if value is None else inner(value)) if inner else None
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return hint.from_record if issubclass(hint, Record) else (lambda value: hint(**value))
    return None
