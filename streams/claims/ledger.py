"""A member's claims, fills and coverage, with corrections applied.

Everything is kept as received and resolved when read, so the result does not depend on arrival
order: a replacement supersedes, a void removes its whole claim (even when it arrives before the
original, which then stays cancelled), a pharmacy reversal cancels the fill with the same id.
The ledger is plain data (dicts and lists) so that it can live in a Faust table as JSON.
"""
from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypeVar

from streams.models import EligibilitySpan, MedicalClaim, PharmacyClaim
from streams.models.claims import REPLACEMENT, VOID


class Line(NamedTuple):
    service_date: str
    procedure_code: str | None
    npi: str | None
    allowed: float
    place_of_service: str | None = None
    revenue_code: str | None = None


class EffectiveClaim(NamedTuple):
    claim_id: str
    family_id: str
    claim_type: str
    diagnosis_codes: tuple[str, ...]
    lines: tuple[Line, ...]

    @property
    def first_service(self) -> str:
        """The earliest service date of its lines (it must have some)."""
        return min(line.service_date for line in self.lines)


class Fill(NamedTuple):
    claim_id: str
    ndc11: str
    fill_date: str
    days_supply: int


@dataclass
class Ledger:
    claims: dict[str, dict[str, Any]] = field(default_factory=dict)  # claim_id -> compact version
    fills: dict[str, dict[str, Any]] = field(default_factory=dict)
    reversals: list[str] = field(default_factory=list)
    spans: dict[str, dict[str, Any]] = field(default_factory=dict)  # payer|start -> span
    # The effective claims, worked out on first read and kept current by add_medical while claims
    # only add families (the common case); a correction makes the next read work them out again.
    _effective: list[EffectiveClaim] | None = field(default=None, repr=False, compare=False)
    _spans: list[EligibilitySpan] | None = field(default=None, repr=False, compare=False)
    # Summaries of the effective claims (see :func:`summary`), kept and dropped with them.
    _summaries: dict[Any, Summary] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"claims": self.claims, "fills": self.fills, "reversals": self.reversals, "spans": self.spans}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Ledger:
        return cls(**data) if data else cls()


def add_medical(ledger: Ledger, claim: MedicalClaim) -> bool:
    """Keep the claim. True when it just starts a family of its own: an original seen for the first
    time that no correction names, so no version that counted before stops counting."""
    new_family = (claim.frequency_code not in (REPLACEMENT, VOID) and claim.claim_id not in ledger.claims
                  and not any(c["o"] == claim.claim_id for c in ledger.claims.values()))
    ledger.claims[claim.claim_id] = version = {
        "f": claim.frequency_code,
        "o": claim.original_claim_id,
        "a": claim.adjudicated_at or "",
        "t": claim.claim_type,
        "dx": claim.diagnosis_codes,
        "l": [[ln.service_date[:10], ln.procedure_code, ln.rendering_npi or claim.rendering_npi, ln.allowed_amount,
               ln.place_of_service, ln.revenue_code] for ln in claim.lines],
    }
    if not new_family:
        ledger._effective = None
        ledger._summaries.clear()
    elif ledger._effective is not None:
        effective = _effective(claim.claim_id, claim.claim_id, version)
        bisect.insort(ledger._effective, effective, key=lambda c: c.family_id)
        for kept in ledger._summaries.values():
            kept.add(effective)
    return new_family


class Summary(Protocol):
    """Something worked out from a member's effective claims that one more claim only adds to
    (candidate statistics, diagnoses of a code set)."""

    def add(self, claim: EffectiveClaim) -> None: ...


S = TypeVar("S", bound=Summary)


def summary(ledger: Ledger, key: Any, make: Callable[[], S], usable: Callable[[S], bool] = lambda _: True) -> S:
    """The summary kept under ``key``, made from the effective claims on first read, then kept
    current by :func:`add_medical` while claims only add families, and made again after a
    correction or when it is no longer ``usable`` (it was made for another day). Each read would
    otherwise walk all of a member's claims again, on every message."""
    found = ledger._summaries.get(key)
    if found is None or not usable(found):  # type: ignore[arg-type]
        found = ledger._summaries[key] = summarized(make, effective_claims(ledger))
    return found  # type: ignore[return-value]


def summarized(make: Callable[[], S], claims: Iterable[EffectiveClaim]) -> S:
    """A new summary of ``claims``."""
    made = make()
    for claim in claims:
        made.add(claim)
    return made


def add_pharmacy(ledger: Ledger, fill: PharmacyClaim) -> None:
    if fill.reversal:
        if fill.claim_id not in ledger.reversals:
            ledger.reversals.append(fill.claim_id)
            ledger.reversals.sort()
        return
    ledger.fills[fill.claim_id] = {"n": fill.ndc11, "d": fill.fill_date[:10], "s": fill.days_supply}


def add_span(ledger: Ledger, span: EligibilitySpan) -> None:
    key = f"{span.payer}|{span.coverage_start}"
    known = ledger.spans.get(key)
    # The newest message about a span wins, judged by receipt time, not by arrival order.
    if known is None or span.received_at_ms >= known["received_at_ms"]:
        ledger.spans[key] = span.to_record()
        ledger._spans = None


def _root(claims: dict[str, dict[str, Any]], claim_id: str) -> tuple[str, int]:
    """The original a claim corrects, following chains (a replacement of a replacement), and how deep."""
    seen, depth, current = {claim_id}, 0, claim_id
    while True:
        parent = claims.get(current, {}).get("o")
        if claims.get(current, {}).get("f") not in (REPLACEMENT, VOID) or not parent or parent in seen:
            # An unseen parent still names the family, so a void before its original cancels it.
            return (parent if parent and parent not in claims and parent not in seen else current), depth
        seen.add(parent)
        depth += 1
        current = parent


def effective_claims(ledger: Ledger) -> list[EffectiveClaim]:
    """One claim per family (the version that counts), ordered by family; not to be modified."""
    if ledger._effective is None:
        ledger._effective = _resolve(ledger)
    return ledger._effective


def _resolve(ledger: Ledger) -> list[EffectiveClaim]:
    families: dict[str, list[tuple[str, int]]] = {}
    for claim_id in ledger.claims:
        root, depth = _root(ledger.claims, claim_id)
        families.setdefault(root, []).append((claim_id, depth))
    result = []
    for root, members in sorted(families.items()):
        if any(ledger.claims[c]["f"] == VOID for c, _ in members):
            continue
        # The latest adjudicated version, else the deepest correction; most families are one claim.
        claim_id = members[0][0] if len(members) == 1 else max(
            members, key=lambda m: (ledger.claims[m[0]]["a"], m[1], m[0]))[0]
        result.append(_effective(claim_id, root, ledger.claims[claim_id]))
    return result


def _effective(claim_id: str, family_id: str, version: dict[str, Any]) -> EffectiveClaim:
    return EffectiveClaim(claim_id=claim_id, family_id=family_id, claim_type=version["t"],
                          diagnosis_codes=tuple(version["dx"]), lines=tuple(Line(*line) for line in version["l"]))


def effective_fills(ledger: Ledger) -> list[Fill]:
    reversed_ids = set(ledger.reversals)
    return sorted((Fill(cid, f["n"], f["d"], f["s"]) for cid, f in ledger.fills.items() if cid not in reversed_ids),
                  key=lambda f: (f.fill_date, f.claim_id))


def latest_date(ledger: Ledger) -> str | None:
    """The latest service or fill date the ledger holds (it moves an event-time clock)."""
    dates = [line[0] for c in ledger.claims.values() for line in c["l"]] + [f["d"] for f in ledger.fills.values()]
    return max(dates, default=None)


def spans(ledger: Ledger) -> list[EligibilitySpan]:
    """The coverage spans, earliest first; not to be modified."""
    if ledger._spans is None:
        ledger._spans = sorted((EligibilitySpan.from_record(s) for s in ledger.spans.values()),
                               key=lambda s: (s.coverage_start, s.payer))
    return ledger._spans


def covering(ledger: Ledger, day: str) -> EligibilitySpan | None:
    """The coverage in force on ``day`` (ISO date): of several, the one that started last."""
    current = [s for s in spans(ledger)
               if s.coverage_start[:10] <= day and (not s.coverage_end or day <= s.coverage_end[:10])]
    return max(current, key=lambda s: (s.coverage_start, s.payer), default=None)
