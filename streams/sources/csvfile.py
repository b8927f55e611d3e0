"""Flat CSV files whose header names the fields of a message (eligibility spans, providers)."""
from __future__ import annotations

import csv
import dataclasses
import time
import typing
from pathlib import Path
from typing import TypeVar

from streams.models import Record

R = TypeVar("R", bound=Record)


@dataclasses.dataclass(frozen=True)
class Problem:
    file: str
    line: int
    reason: str


def _convert(hint: typing.Any, raw: str) -> typing.Any:
    raw = raw.strip()
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    target = args[0] if args else hint
    if raw == "":
        return None
    if target is int:
        return int(raw)
    if target is float:
        return float(raw)
    if target is bool:
        return raw.lower() in ("1", "true", "yes", "y")
    return raw


def read(file: Path, model: type[R]) -> tuple[list[R], list[Problem]]:
    """Every row becomes a record or a problem with the reason; none is skipped silently."""
    hints = typing.get_type_hints(model)
    fields = {f.name: f for f in dataclasses.fields(model)}
    required = {n for n, f in fields.items() if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING and n != "received_at_ms"}
    records, problems = [], []
    with open(file, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = required - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{file}: header lacks {', '.join(sorted(missing))}")
        now_ms = int(time.time() * 1000)
        for line, row in enumerate(reader, start=2):
            try:
                values = {k: _convert(hints[k], v or "") for k, v in row.items() if k in fields}
                empty = [k for k in required if values.get(k) is None]
                if empty:
                    raise ValueError(f"empty {', '.join(sorted(empty))}")
                if "received_at_ms" in fields:
                    values["received_at_ms"] = now_ms
                records.append(model(**{k: v for k, v in values.items() if v is not None or k not in required}))
            except (ValueError, TypeError) as exc:
                problems.append(Problem(str(file), line, f"bad_row: {exc}"))
    return records, problems
