"""Measure definitions, read from ``streams/rules/measures/`` (one readable file per measure)."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache

from streams.codesets import RULES, CodeSet, UnknownCodeSet, codeset

KINDS = ("event_followup",)
TRIGGERS = ("ed_visit", "inpatient_discharge")
LOOKBACKS = ("event_year_and_prior_year",)
EXCLUSION_RULES = ("inpatient_admission_within_days",)


class MeasureError(ValueError):
    """A measure file the evaluator cannot use."""


@dataclass(frozen=True)
class Denominator:
    min_age: int | None
    max_age: int | None
    product_lines: tuple[str, ...]
    conditions: CodeSet | None
    conditions_at_least: int
    conditions_lookback: str | None


@dataclass(frozen=True)
class Exclusion:
    rule: str
    days: int


@dataclass(frozen=True)
class Measure:
    id: str
    version: str
    title: str
    steward: str
    description: str
    kind: str
    trigger: str
    denominator: Denominator
    numerator: CodeSet
    within_days: int
    exclusions: tuple[Exclusion, ...]
    due_soon_days: int


def _one_of(value: object, allowed: tuple[str, ...], what: str, where: str) -> str:
    if value not in allowed:
        raise MeasureError(f"{where}: {what} must be one of {', '.join(allowed)}, not {value!r}")
    return str(value)


def _codeset(name: str, where: str) -> CodeSet:
    try:
        return codeset(name)
    except UnknownCodeSet as exc:
        raise MeasureError(f"{where}: {exc.args[0]}") from exc


def parse_measure(text: str, where: str = "measure") -> Measure:
    data = tomllib.loads(text)
    try:
        kind = _one_of(data.get("kind"), KINDS, "kind", where)
        den = data["denominator"]
        conditions = den.get("conditions_codeset")
        denominator = Denominator(
            min_age=den.get("min_age"), max_age=den.get("max_age"), product_lines=tuple(den["product_lines"]),
            conditions=_codeset(conditions, where) if conditions else None,
            conditions_at_least=int(den.get("conditions_at_least", 0)),
            conditions_lookback=_one_of(den["conditions_lookback"], LOOKBACKS, "conditions_lookback", where)
            if conditions else None)
        exclusions = tuple(Exclusion(_one_of(e["rule"], EXCLUSION_RULES, "exclusion rule", where), int(e["days"]))
                           for e in data.get("exclusions", []))
        return Measure(
            id=data["id"], version=data["version"], title=data["title"], steward=data["steward"],
            description=data.get("description", "").strip(), kind=kind,
            trigger=_one_of(data["trigger"]["event"], TRIGGERS, "trigger event", where),
            denominator=denominator, numerator=_codeset(data["numerator"]["codeset"], where),
            within_days=int(data["numerator"]["within_days"]), exclusions=exclusions,
            due_soon_days=int(data.get("deadline", {}).get("due_soon_days", 2)))
    except KeyError as exc:
        raise MeasureError(f"{where}: missing {exc.args[0]!r}") from exc


@cache
def measures() -> dict[str, Measure]:
    found = {}
    for path in sorted((RULES / "measures").glob("*.toml")):
        measure = parse_measure(path.read_text(), path.name)
        found[measure.id] = measure
    return found
