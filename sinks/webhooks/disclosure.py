"""Which events may be disclosed to whom beyond attribution: 42 CFR Part 2.

The rule is data (``streams/rules/disclosure/part2.toml``); this module only reads it. An event it
names is withheld from an organization unless the member consented to that organization; an open
gap it names inside another event is left out of what such an organization receives.
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from functools import cache

from streams.codesets import RULES, codeset
from streams.models import Alert, GapInfo


@dataclass(frozen=True)
class Part2Rule:
    id: str
    version: str
    diagnosis_codesets: tuple[str, ...]
    measures: frozenset[str]
    facilities: frozenset[str]

    def _gap(self, gap: GapInfo | None) -> bool:
        return gap is not None and gap.measure_id in self.measures

    def reason(self, alert: Alert) -> str | None:
        """Why this event is a Part 2 record, or None. Never names the member or the code."""
        if alert.facility in self.facilities:
            return "42 CFR Part 2: sent by a Part 2 program"
        if self._gap(alert.gap):
            return "42 CFR Part 2: a substance use follow-up measure"
        for name in self.diagnosis_codesets:
            if any(codeset(name).has_diagnosis(d.code) for d in alert.diagnoses):
                return f"42 CFR Part 2: a diagnosis in {name}"
        return None

    def redacted(self, alert: Alert) -> Alert:
        """The alert without the Part 2 gaps it lists among the member's open gaps."""
        kept = [g for g in alert.open_gaps if not self._gap(g)]
        return alert if len(kept) == len(alert.open_gaps) else dataclasses.replace(alert, open_gaps=kept)


@cache
def part2_rule() -> Part2Rule:
    data = tomllib.loads((RULES / "disclosure" / "part2.toml").read_text())
    for name in data["diagnosis_codesets"]:
        codeset(name)  # an unknown code set fails at start, not at the first sensitive event
    return Part2Rule(id=data["id"], version=data["version"], diagnosis_codesets=tuple(data["diagnosis_codesets"]),
                     measures=frozenset(data["measures"]), facilities=frozenset(data["facilities"]))
