"""Measure definitions, read from ``streams/rules/measures/`` (one readable file per measure).

Four kinds, each with its evaluator:

- ``event_followup``: an ED visit or a discharge opens a gap that a service within N days closes
  (:mod:`streams.caregaps.followup`);
- ``screening``: a service within each modality's lookback closes the measurement year's gap
  (:mod:`streams.caregaps.screening`);
- ``control``: the latest result of the year decides, above target or not
  (:mod:`streams.caregaps.control`);
- ``adherence``: the proportion of days covered by fills of a drug class
  (:mod:`streams.caregaps.adherence`).
"""
from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass, fields
from functools import cache, cached_property
from typing import Any, TypeVar

from streams.codesets import CodeSet, UnknownCodeSet, codeset, rule_files

KINDS = ("event_followup", "screening", "control", "adherence")
TRIGGERS = ("ed_visit", "inpatient_discharge")
# Where the diagnoses that put a member in a denominator are looked for, as (first day, last day) of
# the reference day: the triggering visit's day, or December 31 of the measurement year.
LOOKBACKS = {
    "event_year_and_prior_year": lambda day: (dt.date(day.year - 1, 1, 1), day),
    "measurement_year_and_prior_year": lambda day: (dt.date(day.year - 1, 1, 1), dt.date(day.year, 12, 31)),
    "prior_year_through_june_30": lambda day: (dt.date(day.year - 1, 1, 1), dt.date(day.year, 6, 30)),
}
CONDITION_COUNTS = ("groups", "service_dates")
EXCLUSION_RULES = ("inpatient_admission_within_days", "history_of", "fill_of")
SEXES = ("F", "M")


R = TypeVar("R")


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
    conditions_count: str = "groups"  # distinct condition groups, or distinct dates of service
    conditions_or_fills: tuple[CodeSet, ...] = ()  # a fill of any of these drugs also qualifies
    # Continuous enrollment in the measurement year: at most one gap in coverage, of at most this
    # many days (HEDIS: 45). None: coverage on the day of evaluation is enough.
    enrollment_gap_days: int | None = None

    def __hash__(self) -> int:
        # Kept: a denominator keys the answer measures share (streams.caregaps.denominator), asked
        # several times for every claim.
        return self._hash

    @cached_property
    def _hash(self) -> int:
        return hash(tuple(getattr(self, f.name) for f in fields(self)))

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
    codeset: CodeSet | None = None  # history_of: diagnoses or procedures at any time before; fill_of: drugs


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
    years: int  # the measurement year and this many years before it,
    from_month: int = 1  # from the first day of this month of the earliest year

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and self.codeset.group_of(code) == self.name


@dataclass(frozen=True)
class Screening:
    modalities: tuple[Modality, ...]


@dataclass(frozen=True)
class Component:
    """One part of a result (systolic, diastolic): the code set groups that are in control and not."""
    name: str
    controlled: tuple[str, ...]
    not_controlled: tuple[str, ...]


@dataclass(frozen=True)
class Control:
    codeset: CodeSet  # result codes, one group per result band
    components: tuple[Component, ...]

    def reading(self, code: str | None) -> tuple[str, bool] | None:
        """(component, in control) of a result code, or None for any other code."""
        group = self.codeset.group_of(code) if self.codeset.has_procedure(code) else None
        for component in self.components:
            if group in component.controlled or group in component.not_controlled:
                return component.name, group in component.controlled
        return None


@dataclass(frozen=True)
class Adherence:
    drugs: CodeSet  # NDC-11 codes of the drug class
    threshold: float  # adherent at or above this proportion of days covered
    min_fills: int  # fills on distinct dates in the year before a member counts
    min_treatment_days: int  # from the first fill to the end of the year
    refill_overdue_days: int  # warn when the supply ran out more than this many days ago


@dataclass(frozen=True)
class Measure:
    id: str
    version: str
    title: str
    steward: str
    description: str
    kind: str
    denominator: Denominator
    rules: FollowUp | Screening | Control | Adherence
    exclusions: tuple[Exclusion, ...]
    due_soon_days: int

    def rules_as(self, kind: type[R]) -> R:
        """The measure's rules, which an evaluator of ``kind`` needs (a wrong measure is a bug)."""
        if not isinstance(self.rules, kind):
            raise TypeError(f"{self.id} is a {self.kind} measure, not one for {kind.__name__}")
        return self.rules


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
        conditions_lookback=_one_of(den["conditions_lookback"], tuple(LOOKBACKS), "conditions_lookback", where)
        if conditions else None,
        conditions_count=_one_of(den.get("conditions_count", "groups"), CONDITION_COUNTS, "conditions_count", where),
        conditions_or_fills=tuple(_codeset(name, where) for name in den.get("conditions_or_fills_of", ())),
        enrollment_gap_days=den.get("continuous_enrollment_max_gap_days"))


def _exclusion(raw: dict[str, Any], where: str) -> Exclusion:
    rule = _one_of(raw["rule"], EXCLUSION_RULES, "exclusion rule", where)
    if rule in ("history_of", "fill_of"):
        return Exclusion(rule, codeset=_codeset(raw["codeset"], where))
    return Exclusion(rule, days=int(raw["days"]))


def _rules(kind: str, data: dict[str, Any], where: str) -> FollowUp | Screening | Control | Adherence:
    if kind == "control":
        return _control(data["control"], where)
    if kind == "adherence":
        raw = data["adherence"]
        return Adherence(drugs=_codeset(raw["drugs_codeset"], where), threshold=float(raw["threshold"]),
                         min_fills=int(raw["min_fills"]), min_treatment_days=int(raw["min_treatment_days"]),
                         refill_overdue_days=int(raw["refill_overdue_days"]))
    if kind == "event_followup":
        diagnoses = data["trigger"].get("diagnosis_codeset")
        return FollowUp(trigger=_one_of(data["trigger"]["event"], TRIGGERS, "trigger event", where),
                        codeset=_codeset(data["numerator"]["codeset"], where),
                        within_days=int(data["numerator"]["within_days"]),
                        trigger_diagnoses=_codeset(diagnoses, where) if diagnoses else None)
    modalities = tuple(Modality(m["name"], _codeset(m["codeset"], where), int(m["years"]), int(m.get("from_month", 1)))
                       for m in data["modalities"])
    if not modalities:
        raise MeasureError(f"{where}: a screening measure needs at least one modality")
    for m in modalities:
        if m.name not in dict(m.codeset.groups):
            raise MeasureError(f"{where}: code set {m.codeset.id} has no group {m.name!r} for that modality")
    return Screening(modalities)


def _control(raw: dict[str, Any], where: str) -> Control:
    codes = _codeset(raw["codeset"], where)
    components = tuple(Component(c["name"], tuple(c["controlled"]), tuple(c["not_controlled"]))
                       for c in raw["components"])
    if not components:
        raise MeasureError(f"{where}: a control measure needs at least one result component")
    groups = dict(codes.groups)
    for c in components:
        unknown = [g for g in (*c.controlled, *c.not_controlled) if g not in groups]
        if unknown:
            raise MeasureError(f"{where}: code set {codes.id} has no group {unknown[0]!r} for component {c.name}")
    return Control(codes, components)


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
    return rule_files("measures", parse_measure, MeasureError)
