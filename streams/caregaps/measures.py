"""Measure definitions, read from ``streams/rules/measures/`` (one readable file per measure).

Two kinds so far, each with its evaluator: ``event_followup`` (an ED visit or a discharge opens a
gap that a service within N days closes: :mod:`streams.caregaps.followup`) and ``screening`` (a
service within each modality's lookback closes the measurement year's gap:
:mod:`streams.caregaps.screening`).
"""
from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass
from functools import cache
from typing import Any

from streams.codesets import RULES, CodeSet, UnknownCodeSet, codeset

KINDS = ("event_followup", "screening")
TRIGGERS = ("ed_visit", "inpatient_discharge")
LOOKBACKS = ("event_year_and_prior_year",)
EXCLUSION_RULES = ("inpatient_admission_within_days", "history_of")
SEXES = ("F", "M")


class MeasureError(ValueError):
    """A measure file the evaluator cannot use."""


@dataclass(frozen=True)
class Denominator:
    min_age: int | None
    max_age: int | None
    product_lines: tuple[str, ...]
    sexes: tuple[str, ...]
    conditions: CodeSet | None
    conditions_at_least: int
    conditions_lookback: str | None

    def refuses(self, age: int, sex: str | None, product_line: str | None) -> str | None:
        """Why a member of this age, sex and product line is outside the denominator, if so."""
        if self.min_age is not None and age < self.min_age or self.max_age is not None and age > self.max_age:
            return f"age {age} is outside the measure's ages"
        if self.sexes and sex not in self.sexes:
            return f"sex {sex} is not in {', '.join(self.sexes)}"
        if product_line not in self.product_lines:
            return f"product line {product_line} is not in {', '.join(self.product_lines)}"
        return None


def age_on(birth: dt.date, day: dt.date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


@dataclass(frozen=True)
class Exclusion:
    rule: str
    days: int = 0  # inpatient_admission_within_days
    codeset: CodeSet | None = None  # history_of: diagnoses or procedures at any time before


@dataclass(frozen=True)
class FollowUp:
    trigger: str
    codeset: CodeSet  # services that close the gap
    within_days: int
    trigger_diagnoses: CodeSet | None = None  # the visit counts only with a principal diagnosis in it


@dataclass(frozen=True)
class Modality:
    name: str  # also the group of the code set that holds its codes
    codeset: CodeSet
    years: int  # the measurement year and this many years before it

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and self.codeset.group_of(code) == self.name


@dataclass(frozen=True)
class Screening:
    modalities: tuple[Modality, ...]


@dataclass(frozen=True)
class Measure:
    id: str
    version: str
    title: str
    steward: str
    description: str
    kind: str
    denominator: Denominator
    rules: FollowUp | Screening
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


def _denominator(den: dict[str, Any], where: str) -> Denominator:
    conditions = den.get("conditions_codeset")
    return Denominator(
        min_age=den.get("min_age"), max_age=den.get("max_age"), product_lines=tuple(den["product_lines"]),
        sexes=tuple(_one_of(s, SEXES, "sex", where) for s in den.get("sexes", ())),  # none named: any
        conditions=_codeset(conditions, where) if conditions else None,
        conditions_at_least=int(den.get("conditions_at_least", 0)),
        conditions_lookback=_one_of(den["conditions_lookback"], LOOKBACKS, "conditions_lookback", where)
        if conditions else None)


def _exclusion(raw: dict[str, Any], where: str) -> Exclusion:
    rule = _one_of(raw["rule"], EXCLUSION_RULES, "exclusion rule", where)
    if rule == "history_of":
        return Exclusion(rule, codeset=_codeset(raw["codeset"], where))
    return Exclusion(rule, days=int(raw["days"]))


def _rules(kind: str, data: dict[str, Any], where: str) -> FollowUp | Screening:
    if kind == "event_followup":
        diagnoses = data["trigger"].get("diagnosis_codeset")
        return FollowUp(trigger=_one_of(data["trigger"]["event"], TRIGGERS, "trigger event", where),
                        codeset=_codeset(data["numerator"]["codeset"], where),
                        within_days=int(data["numerator"]["within_days"]),
                        trigger_diagnoses=_codeset(diagnoses, where) if diagnoses else None)
    modalities = tuple(Modality(m["name"], _codeset(m["codeset"], where), int(m["years"]))
                       for m in data["modalities"])
    if not modalities:
        raise MeasureError(f"{where}: a screening measure needs at least one modality")
    for m in modalities:
        if m.name not in dict(m.codeset.groups):
            raise MeasureError(f"{where}: code set {m.codeset.id} has no group {m.name!r} for that modality")
    return Screening(modalities)


def parse_measure(text: str, where: str = "measure") -> Measure:
    data = tomllib.loads(text)
    try:
        kind = _one_of(data.get("kind"), KINDS, "kind", where)
        return Measure(
            id=data["id"], version=data["version"], title=data["title"], steward=data["steward"],
            description=data.get("description", "").strip(), kind=kind,
            denominator=_denominator(data["denominator"], where), rules=_rules(kind, data, where),
            exclusions=tuple(_exclusion(e, where) for e in data.get("exclusions", [])),
            due_soon_days=int(data.get("deadline", {}).get("due_soon_days", 2)))
    except KeyError as exc:
        raise MeasureError(f"{where}: missing {exc.args[0]!r}") from exc


@cache
def measures() -> dict[str, Measure]:
    found = {}
    for path in sorted((RULES / "measures").glob("*.toml")):
        measure = parse_measure(path.read_text(), path.name)
        if measure.id in found:
            raise MeasureError(f"{path.name}: measure id {measure.id} is already defined by another file")
        found[measure.id] = measure
    return found
