"""What the measures read about one member: coverage, effective claims and fills, and ADT visits."""
from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streams.caregaps.pdc import Stay
from streams.claims.ledger import EffectiveClaim, Fill, Summary, summarized
from streams.codesets import CodeSet
from streams.models import EncounterKind


@dataclass(frozen=True)
class Visit:
    id: str
    kind: str  # an EncounterKind
    day: dt.date
    diagnoses: tuple[str, ...] = ()  # as the ADT messages carried them, principal first


@dataclass(frozen=True)
class Member:
    birth_date: dt.date | None  # None: no coverage known yet, so no denominator can be decided
    sex: str | None
    product_line: str | None
    claims: list[EffectiveClaim]
    visits: list[Visit]
    fills: tuple[Fill, ...] = ()  # effective (reversals applied), by fill date
    coverage: tuple[tuple[dt.date, dt.date | None], ...] = ()  # spans (first day, last day or open)
    # Answers several measures share (a denominator's conditions), worked out once per evaluation.
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)
    # Where summaries of the claims are kept between evaluations (the ledger's, see
    # streams.claims.ledger.summary); without one they are worked out from ``claims`` when read.
    kept: Callable[[Any, Callable[[], Summary]], Any] | None = field(default=None, compare=False, repr=False)

    def first_service_dates(self) -> list[tuple[str, EffectiveClaim]]:
        """(first service date, claim) of the claims with lines."""
        return self._summary("first_service", FirstServices).rows

    def diagnosed(self, codes: CodeSet) -> list[tuple[str, str]]:
        """(first service date, group) of every diagnosis of the code set on the member's claims."""
        return self._summary(("diagnosed", codes.id), lambda: Diagnoses(codes)).rows

    def performed(self, codes: CodeSet) -> list[tuple[str, str, str, str]]:
        """(family, service date, procedure code, claim id) of every claim line whose procedure has a
        group of the code set, in the order of :attr:`claims`."""
        return self._summary(("performed", codes.id), lambda: Performed(codes)).rows

    def _summary(self, key: Any, make: Callable[[], Summary]) -> Any:
        if self.kept is not None:
            return self.kept(key, make)
        if key not in self.memo:
            self.memo[key] = summarized(make, self.claims)
        return self.memo[key]

    def stays(self) -> list[Stay]:
        """Stays whose admission and discharge are both known (an open stay has no end to count to)."""
        admitted = {_visit(v.id): v.day for v in self.visits if v.kind == EncounterKind.INPATIENT_ADMISSION}
        return sorted(Stay(admitted[key], v.day) for v in self.visits
                      if v.kind == EncounterKind.INPATIENT_DISCHARGE and (key := _visit(v.id)) in admitted
                      and admitted[key] <= v.day)


def _visit(encounter_id: str) -> str:
    """The hospital's visit (facility|visit number) of an encounter: an admission or discharge raised
    again after a cancel is numbered after it (facility|visit number|n, see streams.adt.visits._key)."""
    return "|".join(encounter_id.split("|")[:2])


class FirstServices:
    """(first service date, claim) of the claims with lines, in the claims' order (by family), so
    that what is read from them does not depend on the order the claims arrived in."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, EffectiveClaim]] = []

    def add(self, claim: EffectiveClaim) -> None:
        if claim.lines:
            bisect.insort(self.rows, (claim.first_service, claim), key=lambda row: row[1].family_id)


class Diagnoses:
    """(first service date, group) of the diagnoses of one code set on the claims. Read as a set
    (distinct groups, dates of service), so the order the claims arrived in does not matter."""

    def __init__(self, codes: CodeSet):
        self.codes = codes
        self.rows: list[tuple[str, str]] = []

    def add(self, claim: EffectiveClaim) -> None:
        if not claim.lines:
            return
        groups = [group for code in claim.diagnosis_codes
                  if self.codes.has_diagnosis(code) and (group := self.codes.group_of(code))]
        if groups:  # most claims have none of a set's diagnoses: their first service is not needed
            served = claim.first_service
            self.rows += [(served, group) for group in groups]


class Performed:
    """The claim lines whose procedure has a group of one code set (a screening modality, a result
    band), kept in the claims' order (by family, then line): a measure reading them meets them in
    the order it would meet them on the claims, whatever order the claims arrived in."""

    def __init__(self, codes: CodeSet):
        self.codes = codes
        self.rows: list[tuple[str, str, str, str]] = []  # (family, service date, code, claim id)

    def add(self, claim: EffectiveClaim) -> None:
        for line in claim.lines:
            if line.procedure_code and self.codes.group_of(line.procedure_code) is not None:
                bisect.insort(self.rows, (claim.family_id, line.service_date, line.procedure_code, claim.claim_id),
                              key=lambda row: row[0])
