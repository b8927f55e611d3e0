"""A member's state between messages, and the steps from one message to an attribution decision
and to the member's care gaps.

Pure functions: the member processor only loads the state, calls :func:`apply`, then :func:`decide`
and :func:`keep_gaps` when the message may have changed their answer, and keeps the result. Both
live on one state because both read the same claims: one decode and one ledger per member.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

import orjson

from streams.attribution.engine import Decision, evaluate
from streams.attribution.methods import counted
from streams.caregaps.cohorts import member_cohorts
from streams.caregaps.lifecycle import Gap, GapEvent
from streams.caregaps.member import (
    VISIT_KINDS,
    Visit,
    every_measure,
    forget_old_visits,
    gap_from_dict,
    gap_to_dict,
    measures_reading,
    measures_reading_claim,
)
from streams.caregaps.member import Member as GapFacts
from streams.caregaps.member import update as update_gaps
from streams.caregaps.member import wakeup as gaps_wakeup
from streams.claims import validation
from streams.claims.ledger import (
    Ledger,
    add_medical,
    add_pharmacy,
    add_span,
    covering,
    effective_claims,
    effective_fills,
    spans,
    summary,
)
from streams.models import (
    AttributionChange,
    AttributionOverride,
    EligibilitySpan,
    Encounter,
    EncounterKind,
    MedicalClaim,
    PharmacyClaim,
)


@dataclass
class MemberState:
    ledger: Ledger = field(default_factory=Ledger)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # dispute_id -> override
    organization_id: str | None = None
    npi: str | None = None
    next_review: str | None = None  # when time alone may change the attribution
    unknown_npis: list[str] = field(default_factory=list)
    gaps: dict[str, Gap] = field(default_factory=dict)  # by gap id
    visits: list[Visit] = field(default_factory=list)
    gaps_wakeup: str | None = None  # when time alone changes a gap (a warning, a deadline, a new year)
    cohorts: list[str] = field(default_factory=list)  # labels (id@version) of the cohorts the member is in

    def to_dict(self) -> dict[str, Any]:
        return {
            "ledger": self.ledger.to_dict(),
            "overrides": self.overrides,
            "organization_id": self.organization_id,
            "npi": self.npi,
            "next_review": self.next_review,
            "unknown_npis": self.unknown_npis,
            "gaps": {key: gap_to_dict(gap) for key, gap in self.gaps.items()},
            "visits": [[v.id, v.kind, v.day.isoformat(), list(v.diagnoses)] for v in self.visits],
            "gaps_wakeup": self.gaps_wakeup,
            "cohorts": self.cohorts,
        }

    @property
    def due(self) -> str | None:
        """The earliest date time alone changes something for this member."""
        return min((d for d in (self.next_review, self.gaps_wakeup) if d), default=None)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> MemberState:
        if not data:
            return cls()
        return cls(
            ledger=Ledger.from_dict(data["ledger"]),
            overrides=dict(data["overrides"]),
            organization_id=data["organization_id"],
            npi=data["npi"],
            next_review=data["next_review"],
            unknown_npis=list(data["unknown_npis"]),
            gaps={key: gap_from_dict(gap) for key, gap in data.get("gaps", {}).items()},
            visits=[Visit(v[0], v[1], dt.date.fromisoformat(v[2]), tuple(v[3] if len(v) > 3 else ()))
                    for v in data.get("visits", [])],
            gaps_wakeup=data.get("gaps_wakeup"),
            cohorts=list(data.get("cohorts", [])),
        )


Message = MedicalClaim | PharmacyClaim | EligibilitySpan | AttributionOverride | Encounter


class Affects(NamedTuple):
    """What a message may have changed, so only that is worked out again."""
    attribution: bool
    gaps: frozenset[str]  # the measures whose gaps it may have changed
    cohorts: bool = False
    conditions_only: frozenset[str] = frozenset()  # of those, the ones it adds only a condition to


def check(message: Message, today: dt.date) -> dt.date | None:
    """Validate; return the message's own date (it moves an event-time clock), if it has one."""
    if isinstance(message, MedicalClaim):
        return validation.check_medical(message, today)
    if isinstance(message, PharmacyClaim):
        return validation.check_pharmacy(message, today)
    if isinstance(message, EligibilitySpan):
        validation.check_span(message)
        return None
    if isinstance(message, Encounter):
        if message.kind not in VISIT_KINDS:
            raise validation.InvalidRecord("invalid_encounter_kind", f"encounter kind {message.kind!r} is not one of "
                                                                     f"{', '.join(VISIT_KINDS)}")
        if not message.withdrawn:  # a withdrawal names the visit; its day is not needed
            validation.parse_date(message.day, "encounter day")
        return None
    validation.parse_date(message.effective_from, "override effective date")
    return None


def apply(state: MemberState, message: Message) -> Affects:
    """Add the message to the member's state; say what it may have changed. Most messages change
    little: a pharmacy fill no attribution, a lab claim neither attribution nor gaps."""
    if isinstance(message, MedicalClaim):
        if not add_medical(state.ledger, message):
            # A correction or a re-sent claim: which version counts may have changed.
            return Affects(True, every_measure(), True)
        procedures = [line.procedure_code for line in message.lines]
        touched, conditions_only = measures_reading_claim(frozenset([*procedures, *message.diagnosis_codes]),
                                                          bool(state.visits))
        return Affects(any(map(counted, procedures)), touched, True, conditions_only)
    if isinstance(message, PharmacyClaim):
        add_pharmacy(state.ledger, message)
        known = state.ledger.fills.get(message.claim_id)  # a reversal is judged by the fill it cancels
        return Affects(False, measures_reading(known["n"] if known else message.ndc11, False))
    if isinstance(message, Encounter):
        if message.withdrawn:
            kept = [v for v in state.visits if (v.id, v.kind) != (message.encounter_id, message.kind)]
            changed, state.visits = len(kept) != len(state.visits), kept
            return Affects(False, every_measure() if changed else frozenset(),
                           changed and message.kind == EncounterKind.ED_VISIT)
        visit = Visit(message.encounter_id, message.kind, dt.date.fromisoformat(message.day[:10]),
                      tuple(message.diagnoses))
        if visit in state.visits:
            return Affects(False, frozenset())  # a redelivery
        # The same visit again with its diagnoses now known replaces what was kept of it.
        state.visits = [v for v in state.visits if (v.id, v.kind) != (visit.id, visit.kind)] + [visit]
        return Affects(False, every_measure(), visit.kind == EncounterKind.ED_VISIT)
    if isinstance(message, EligibilitySpan):
        add_span(state.ledger, message)
        return Affects(True, every_measure())
    if message.revoked:
        state.overrides.pop(message.dispute_id, None)
    else:
        state.overrides[message.dispute_id] = message.to_record()
    return Affects(True, frozenset())


def decide(
    member_id: str, state: MemberState, providers: Mapping[str, Mapping[str, Any]], as_of: dt.date, now_ms: int
) -> tuple[Decision, AttributionChange | None]:
    """Evaluate the member; return the decision and, when the answer changed, the change to publish."""
    decision = evaluate(member_id, state.ledger, providers, list(state.overrides.values()), as_of)
    change = None
    if (decision.organization_id, decision.npi) != (state.organization_id, state.npi):
        change = AttributionChange(
            member_id=member_id,
            old_organization_id=state.organization_id,
            new_organization_id=decision.organization_id,
            old_npi=state.npi,
            new_npi=decision.npi,
            method_id=decision.method_id,
            method_version=decision.method_version,
            rule=decision.rule,
            reason=decision.reason,
            effective_date=decision.as_of,
            explanation=orjson.dumps(decision.to_dict(), option=orjson.OPT_SORT_KEYS).decode(),
            changed_at_ms=now_ms,
        )
    state.organization_id, state.npi = decision.organization_id, decision.npi
    state.next_review = decision.next_review
    state.unknown_npis = list(decision.unknown_npis)
    return decision, change


class ReviewQueue:
    """Things (members) to look at again on a date, earliest first. Entries are hints: the caller
    checks the member's stored ``next_review`` before acting, so a stale entry costs one lookup."""

    def __init__(self) -> None:
        self._heap: list[tuple[str, Any]] = []

    def push(self, day: str | None, item: Any) -> None:
        if day:
            heapq.heappush(self._heap, (day, item))

    def pop_due(self, today: dt.date) -> list[Any]:
        due, limit = [], today.isoformat()
        while self._heap and self._heap[0][0] <= limit:
            due.append(heapq.heappop(self._heap)[1])
        return due

    def __len__(self) -> int:
        return len(self._heap)


def member_facts(state: MemberState, as_of: dt.date) -> GapFacts:
    """What the measures and cohorts read about the member (worked out once per message)."""
    span = covering(state.ledger, as_of.isoformat())
    birth = validation.parse_date(span.birth_date, "birth date") if span and span.birth_date else None
    state.visits = forget_old_visits(state.visits, as_of)
    coverage = tuple((dt.date.fromisoformat(s.coverage_start[:10]),
                      dt.date.fromisoformat(s.coverage_end[:10]) if s.coverage_end else None)
                     for s in spans(state.ledger))
    return GapFacts(birth, span.sex if span else None, span.product_line if span else None,
                    effective_claims(state.ledger), state.visits, tuple(effective_fills(state.ledger)), coverage,
                    kept=partial(summary, state.ledger))


def keep_cohorts(state: MemberState, as_of: dt.date, facts: GapFacts | None = None) -> bool:
    """Bring the member's cohorts up to date; say whether they changed."""
    found = member_cohorts(facts or member_facts(state, as_of), as_of)
    changed, state.cohorts = found != state.cohorts, found
    return changed


def keep_gaps(state: MemberState, as_of: dt.date, only: frozenset[str] | None = None,
              facts: GapFacts | None = None, conditions_only: frozenset[str] = frozenset()) -> list[GapEvent]:
    """Bring the member's care gaps up to date (of the measures ``only`` names, else all); return
    the transitions to publish."""
    state.gaps, events = update_gaps(state.gaps, facts or member_facts(state, as_of), as_of, only=only,
                                     conditions_only=conditions_only)
    wake = gaps_wakeup(state.gaps, as_of)
    state.gaps_wakeup = wake.isoformat() if wake else None
    return events
