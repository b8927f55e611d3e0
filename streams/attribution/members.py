"""A member's state between messages, and the step from one message to a decision.

Pure functions: the attribution processor only loads the state, calls :func:`apply` and
:func:`decide`, and keeps the result.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.attribution.engine import Decision, evaluate
from streams.attribution.methods import counted_codesets
from streams.claims import validation
from streams.claims.ledger import Ledger, add_medical, add_pharmacy, add_span
from streams.models import AttributionChange, AttributionOverride, EligibilitySpan, MedicalClaim, PharmacyClaim


@dataclass
class MemberState:
    ledger: Ledger = field(default_factory=Ledger)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # dispute_id -> override
    organization_id: str | None = None
    npi: str | None = None
    next_review: str | None = None
    unknown_npis: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ledger": self.ledger.to_dict(),
            "overrides": self.overrides,
            "organization_id": self.organization_id,
            "npi": self.npi,
            "next_review": self.next_review,
            "unknown_npis": self.unknown_npis,
        }

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
        )


Message = MedicalClaim | PharmacyClaim | EligibilitySpan | AttributionOverride


def check(message: Message, today: dt.date) -> dt.date | None:
    """Validate; return the message's own date (it moves an event-time clock), if it has one."""
    if isinstance(message, MedicalClaim):
        return validation.check_medical(message, today)
    if isinstance(message, PharmacyClaim):
        return validation.check_pharmacy(message, today)
    if isinstance(message, EligibilitySpan):
        validation.check_span(message)
        return None
    validation.parse_date(message.effective_from, "override effective date")
    return None


def apply(state: MemberState, message: Message) -> bool:
    """Add the message to the member's state. Returns False when it cannot change the member's
    attribution, so the decision need not be evaluated again: a pharmacy fill, or a new original
    claim with no service any method counts (labs, imaging: most claims, in real feeds)."""
    if isinstance(message, MedicalClaim):
        if not add_medical(state.ledger, message):
            return True  # a correction or a re-sent claim: which version counts may have changed
        counted = counted_codesets()
        return any(line.procedure_code in codes for line in message.lines for codes in counted)
    if isinstance(message, PharmacyClaim):
        add_pharmacy(state.ledger, message)
        return False
    if isinstance(message, EligibilitySpan):
        add_span(state.ledger, message)
    elif message.revoked:
        state.overrides.pop(message.dispute_id, None)
    else:
        state.overrides[message.dispute_id] = message.to_record()
    return True


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
