"""Cohorts ("high risk", "rising risk"): versioned rules a plan and its providers both sign off,
read from ``streams/rules/cohorts/`` (one file per cohort), evaluated on the same member facts as
the care gaps. Alerts carry the member's cohorts as ``id@version``, so a receiver knows exactly
which agreed rule put the member there.
"""
from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from streams.attribution.engine import add_months
from streams.caregaps.facts import Member
from streams.codesets import CodeSet, UnknownCodeSet, codeset, rule_files
from streams.models import EncounterKind

RULE_KINDS = ("chronic_conditions", "ed_visits", "allowed_amount")
MATCHES = ("any", "all")


class CohortError(ValueError):
    """A cohort file the evaluator cannot use."""


@dataclass(frozen=True)
class Rule:
    rule: str
    at_least: float
    months: int
    codeset: CodeSet | None = None  # chronic_conditions: distinct groups of this code set


@dataclass(frozen=True)
class SignOff:
    party: str
    by: str
    on: str


@dataclass(frozen=True)
class Cohort:
    id: str
    version: str
    title: str
    description: str
    match: str
    rules: tuple[Rule, ...]
    signed_off: tuple[SignOff, ...]

    @property
    def label(self) -> str:
        return f"{self.id}@{self.version}"


def parse_cohort(text: str, where: str = "cohort") -> Cohort:
    data: dict[str, Any] = tomllib.loads(text)
    try:
        rules = tuple(_rule(raw, where) for raw in data["rules"])
        if data["match"] not in MATCHES:
            raise CohortError(f"{where}: match must be one of {', '.join(MATCHES)}, not {data['match']!r}")
        signed = tuple(SignOff(s["party"], s["by"], s["on"]) for s in data.get("signed_off", []))
        if {s.party for s in signed} != {"plan", "providers"}:
            raise CohortError(f"{where}: a cohort is in force only when both the plan and the providers signed off")
        return Cohort(data["id"], data["version"], data["title"], data.get("description", "").strip(),
                      data["match"], rules, signed)
    except KeyError as exc:
        raise CohortError(f"{where}: missing {exc.args[0]!r}") from exc


def _rule(raw: Mapping[str, Any], where: str) -> Rule:
    if raw["rule"] not in RULE_KINDS:
        raise CohortError(f"{where}: rule must be one of {', '.join(RULE_KINDS)}, not {raw['rule']!r}")
    codes = None
    if raw["rule"] == "chronic_conditions":
        try:
            codes = codeset(raw["codeset"])
        except UnknownCodeSet as exc:
            raise CohortError(f"{where}: {exc.args[0]}") from exc
    return Rule(raw["rule"], float(raw["at_least"]), int(raw["months"]), codes)


@cache
def cohorts() -> dict[str, Cohort]:
    return rule_files("cohorts", parse_cohort, CohortError)


@lru_cache(maxsize=256)  # a few rules and days: each cohort evaluation would compute it again
def _since(today: dt.date, months: int) -> str:
    return add_months(today, -months).isoformat()


def holds(rule: Rule, member: Member, today: dt.date) -> bool:
    since = _since(today, rule.months)
    if rule.rule == "ed_visits":
        return sum(v.kind == EncounterKind.ED_VISIT and since <= v.day.isoformat() <= today.isoformat()
                   for v in member.visits) >= rule.at_least
    if rule.rule == "allowed_amount":
        # In cents: a sum's last bits depend on the order the claims were added in.
        return round(sum(line.allowed for served, c in member.first_service_dates() if since <= served
                         for line in c.lines), 2) >= rule.at_least
    assert rule.codeset is not None
    return len({group for served, group in member.diagnosed(rule.codeset) if since <= served}) >= rule.at_least


def member_cohorts(member: Member, today: dt.date, defined: Mapping[str, Cohort] | None = None) -> list[str]:
    """The labels (``id@version``) of the cohorts the member is in, sorted."""
    found = []
    for cohort in (defined if defined is not None else cohorts()).values():
        results = (holds(rule, member, today) for rule in cohort.rules)
        if any(results) if cohort.match == "any" else all(results):
            found.append(cohort.label)
    return sorted(found)
