"""What the measures read about one member: coverage, effective claims and fills, and ADT visits."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from streams.caregaps.pdc import Stay
from streams.claims.ledger import EffectiveClaim, Fill
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

    def first_service_dates(self) -> list[tuple[str, EffectiveClaim]]:
        """(first service date, claim) of the claims with lines."""
        if "first_service" not in self.memo:
            self.memo["first_service"] = [(min(line.service_date for line in c.lines), c)
                                          for c in self.claims if c.lines]
        return self.memo["first_service"]

    def diagnosed(self, codes: CodeSet) -> list[tuple[str, str]]:
        """(first service date, group) of every diagnosis of the code set on the member's claims."""
        key = ("diagnosed", codes.id)
        if key not in self.memo:
            self.memo[key] = [(served, group) for served, claim in self.first_service_dates()
                              for code in claim.diagnosis_codes
                              if codes.has_diagnosis(code) and (group := codes.group_of(code))]
        return self.memo[key]

    def stays(self) -> list[Stay]:
        """Stays whose admission and discharge are both known (an open stay has no end to count to)."""
        admitted = {v.id: v.day for v in self.visits if v.kind == EncounterKind.INPATIENT_ADMISSION}
        return sorted(Stay(admitted[v.id], v.day) for v in self.visits
                      if v.kind == EncounterKind.INPATIENT_DISCHARGE and v.id in admitted and admitted[v.id] <= v.day)
