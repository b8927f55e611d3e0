"""The attribution engine: one generic evaluator for every method file.

``evaluate`` is a pure function of a member's ledger, the provider directory, the accepted
disputes and the date. Its decision carries the ranked candidates and the numbers behind them,
which rule decided and why, and the next date on which the answer could change by time alone
(a visit leaving the lookback, coverage or a PCP choice ending, a dispute expiring); the worker
re-evaluates the member on that date, so nothing is rescanned.
"""
from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, NamedTuple

from streams.attribution.methods import Method, MethodError, Step, method_for
from streams.claims.ledger import EffectiveClaim, Ledger, covering, spans, summary


class Candidate(NamedTuple):
    npi: str
    organization_id: str | None
    role: str | None
    visits: int
    allowed_amount: float
    last_visit: str
    eligible: bool
    note: str = ""
    rank: int | None = None


@dataclass(frozen=True)
class Decision:
    member_id: str
    as_of: str
    organization_id: str | None
    npi: str | None
    method_id: str | None
    method_version: str | None
    rule: str
    reason: str
    steps: tuple[str, ...] = ()
    candidates: tuple[Candidate, ...] = ()
    next_review: str | None = None
    unknown_npis: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        # By hand: dataclasses.asdict deep-copies every field, and this runs on every change.
        return {**{name: getattr(self, name) for name in _DECISION_FIELDS}, "steps": list(self.steps),
                "candidates": [c._asdict() for c in self.candidates], "unknown_npis": list(self.unknown_npis)}


@cache
def _lookback_end(service_date: str, months: int) -> dt.date:
    """The first day a service no longer counts in a lookback of ``months``; cached, since every
    evaluation of a member walks the same service dates again."""
    return add_months(dt.date.fromisoformat(service_date), months)


_DECISION_FIELDS = ("member_id", "as_of", "organization_id", "npi", "method_id", "method_version", "rule", "reason",
                    "next_review")


def add_months(day: dt.date, months: int) -> dt.date:
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def organization_of(provider: Mapping[str, Any]) -> str | None:
    """The organization a provider bills under: its directory organization, else its TIN."""
    if provider.get("organization_id"):
        return provider["organization_id"]
    return f"TIN:{provider['tin']}" if provider.get("tin") else None


def _active(provider: Mapping[str, Any], day: str) -> bool:
    start, end = provider.get("active_from"), provider.get("active_to")
    return (not start or start[:10] <= day) and (not end or day <= end[:10])


@dataclass
class _Review:
    """The earliest future date on which the decision may change by time alone."""
    as_of: dt.date
    next: dt.date | None = None

    def at(self, day: dt.date | None) -> None:
        if day and day > self.as_of and (self.next is None or day < self.next):
            self.next = day


@dataclass
class _Stats:
    dates: set[str] = field(default_factory=set)
    allowed: float = 0.0
    last: str = ""  # the latest of ``dates``, kept as they are added


class _Tally:
    """Each provider's services that a step counts, inside its lookback as of one day. Kept on the
    ledger (:func:`streams.claims.ledger.summary`), so a new claim adds its lines to it rather than
    every claim of the member being counted again."""

    def __init__(self, step: Step, as_of: dt.date):
        self.as_of, self._day = as_of, as_of.isoformat()
        self._counts, self._months = step.codeset.__contains__, step.lookback_months
        self.stats: dict[str, _Stats] = {}
        self.first_expiry: dt.date | None = None  # the earliest date a counted service leaves the lookback

    def add(self, claim: EffectiveClaim) -> None:
        for line in claim.lines:
            served = line.service_date
            if not line.npi or served > self._day or not self._counts(line.procedure_code):
                continue
            expires = _lookback_end(served, self._months)
            if expires <= self.as_of:
                continue
            if self.first_expiry is None or expires < self.first_expiry:
                self.first_expiry = expires
            s = self.stats.get(line.npi) or self.stats.setdefault(line.npi, _Stats())
            s.dates.add(served)
            s.allowed += line.allowed
            if served > s.last:
                s.last = served


def evaluate(member_id: str, ledger: Ledger, providers: Mapping[str, Mapping[str, Any]],
             overrides: list[Mapping[str, Any]], as_of: dt.date) -> Decision:
    review = _Review(as_of)
    day = as_of.isoformat()
    all_spans = spans(ledger)
    span = covering(ledger, day)
    for s in all_spans:
        review.at(dt.date.fromisoformat(s.coverage_start[:10]))
        if s.coverage_end:
            review.at(dt.date.fromisoformat(s.coverage_end[:10]) + dt.timedelta(days=1))
    base = {"member_id": member_id, "as_of": day}
    if span is None:
        return Decision(**base, organization_id=None, npi=None, method_id=None, method_version=None,
                        rule="no_active_coverage", reason=f"no eligibility span covers {day}",
                        next_review=_iso(review.next))
    try:
        method = method_for(span.payer, span.product_line)
    except MethodError as exc:
        return Decision(**base, organization_id=None, npi=None, method_id=None, method_version=None,
                        rule="no_method", reason=str(exc), next_review=_iso(review.next))

    active_overrides = []
    for o in overrides:
        if o.get("effective_from", "")[:10] <= day and (not o.get("expires_on") or day < o["expires_on"][:10]):
            active_overrides.append(o)
        if o.get("expires_on"):
            review.at(dt.date.fromisoformat(o["expires_on"][:10]))
        if o.get("effective_from"):
            review.at(dt.date.fromisoformat(o["effective_from"][:10]))
    excluded = {o["organization_id"] for o in active_overrides if o["kind"] == "remove"}
    added = [o for o in active_overrides if o["kind"] == "add"]

    result = _run_steps(method, span, ledger, providers, excluded, as_of, review)
    unknown = set(result.unknown)
    if span.selected_pcp_npi and span.selected_pcp_npi not in providers:
        unknown.add(span.selected_pcp_npi)  # the choice counts once the directory knows the provider
    common = {**base, "method_id": method.id, "method_version": method.version, "steps": tuple(result.log),
              "candidates": result.candidates, "unknown_npis": tuple(sorted(unknown))}
    if added:
        o = max(added, key=lambda o: (o.get("decided_at", ""), o["dispute_id"]))
        return Decision(**common, organization_id=o["organization_id"], npi=o.get("npi"), rule="dispute_add",
                        reason=f"accepted dispute {o['dispute_id']}: {o.get('reason', '')}".strip(),
                        next_review=_iso(review.next))
    return Decision(**common, organization_id=result.organization_id, npi=result.npi, rule=result.rule,
                    reason=result.reason, next_review=_iso(review.next))


@dataclass
class _Result:
    organization_id: str | None = None
    npi: str | None = None
    rule: str = "no_candidate"
    reason: str = "no step found an eligible provider"
    candidates: tuple[Candidate, ...] = ()
    unknown: tuple[str, ...] = ()
    log: list[str] = field(default_factory=list)


def _run_steps(method: Method, span, ledger: Ledger, providers, excluded: set[str], as_of: dt.date,
               review: _Review) -> _Result:
    result = _Result()
    for number, step in enumerate(method.steps, start=1):
        if step.rule == "member_selected_pcp":
            outcome = _selected_pcp(step, span, providers, excluded, as_of, review)
            result.log.append(f"step {number} member_selected_pcp: {outcome[2]}")
            if outcome[0]:
                result.organization_id, result.npi = outcome[0], outcome[1]
                result.rule, result.reason = "member_selected_pcp", outcome[2]
                # Candidates are still worth showing: they explain what the choice overrides.
                result.candidates, result.unknown = _plurality_for_display(method, ledger, providers, excluded, as_of)
                return result
        else:
            candidates, unknown, winner, note = _plurality(step, ledger, providers, excluded, as_of, review)
            result.log.append(f"step {number} plurality of {step.measure} ({step.codeset.id}, "
                              f"{step.lookback_months} months): {note}")
            result.candidates, result.unknown = candidates, unknown
            if winner:
                result.organization_id, result.npi = winner.organization_id, winner.npi
                result.rule, result.reason = "plurality", note
                return result
    return result


def _selected_pcp(step: Step, span, providers, excluded, as_of, review) -> tuple[str | None, str | None, str]:
    npi = span.selected_pcp_npi
    if not npi:
        return None, None, "no PCP selected on the member's coverage"
    provider = providers.get(npi)
    if provider is None:
        return None, None, f"selected PCP {npi} is not in the provider directory"
    if provider.get("active_to"):
        review.at(dt.date.fromisoformat(provider["active_to"][:10]) + dt.timedelta(days=1))
    if not _active(provider, as_of.isoformat()):
        return None, None, f"selected PCP {npi} is not active on {as_of}"
    if provider.get("role") not in step.eligible_roles:
        return None, None, f"selected PCP {npi} has role {provider.get('role')}, not eligible"
    org = organization_of(provider)
    if org in excluded:
        return None, None, f"selected PCP {npi} belongs to {org}, removed by an accepted dispute"
    return org, npi, f"member selected PCP {npi} ({org})"


def _plurality(step: Step, ledger: Ledger, providers, excluded, as_of: dt.date, review: _Review):
    tally = summary(ledger, ("tally", step.codeset.id, step.lookback_months), lambda: _Tally(step, as_of),
                    usable=lambda t: t.as_of == as_of)
    stats = tally.stats
    day = as_of.isoformat()
    review.at(tally.first_expiry)
    unknown = tuple(sorted(npi for npi in stats if npi not in providers))
    tiers = step.tier_of
    rows = []
    for npi, s in stats.items():
        provider = providers.get(npi, {})
        org, role = organization_of(provider) if provider else None, provider.get("role")
        note = ""
        if not provider:
            note = "not in the provider directory"
        elif not _active(provider, day):
            note = f"not active on {as_of}"
        elif role not in tiers:
            note = f"role {role} not eligible"
        elif org in excluded:
            note = f"{org} removed by an accepted dispute"
        rows.append((tiers.get(role) if not note else None, npi, org, role, s, note))
    eligible = [r for r in rows if r[0] is not None]
    best_tier = min((r[0] for r in eligible), default=None)
    ranked = sorted((r for r in eligible if r[0] == best_tier), key=lambda r: _sort_key(step, r[1], r[4]))
    rank = {r[1]: i + 1 for i, r in enumerate(ranked)}
    candidates = tuple(sorted(
        (Candidate(npi=npi, organization_id=org, role=role, visits=len(s.dates), allowed_amount=round(s.allowed, 2),
                   last_visit=s.last, eligible=tier is not None, note=note or (
                       "" if tier == best_tier else f"tier {tier + 1} not reached"), rank=rank.get(npi))
         for tier, npi, org, role, s, note in rows),
        key=lambda c: (c.rank is None, c.rank or 0, c.npi)))
    if not ranked:
        return candidates, unknown, None, "no eligible provider with a qualifying service in the lookback"
    winner = next(c for c in candidates if c.rank == 1)
    note = (f"{winner.npi} ({winner.organization_id}) ranks first of {len(ranked)} in tier {best_tier + 1} "
            f"with {winner.visits} visits, {winner.allowed_amount:.2f} allowed, last {winner.last_visit}")
    if len(ranked) > 1:
        runner = next(c for c in candidates if c.rank == 2)
        if _measure(step, runner) == _measure(step, winner):
            note += f"; tied on {step.measure} with {runner.npi}, broken by {', '.join(step.tie_break)}"
    return candidates, unknown, winner, note


def _plurality_for_display(method: Method, ledger: Ledger, providers, excluded, as_of):
    step = next((s for s in method.steps if s.rule == "plurality"), None)
    if step is None:
        return (), ()
    candidates, unknown, _, _ = _plurality(step, ledger, providers, excluded, as_of, _Review(as_of))
    return candidates, unknown


def _measure(step: Step, c: Candidate) -> float:
    return c.visits if step.measure == "visits" else round(c.allowed_amount, 2)


def _sort_key(step: Step, npi: str, s: _Stats) -> tuple:
    measure = len(s.dates) if step.measure == "visits" else round(s.allowed, 2)
    key: list = [-measure]
    for rule in step.tie_break:
        if rule == "most_recent_visit":
            key.append(-_ordinal(s.last))
        elif rule == "npi":
            key.append(npi)
    return tuple(key)


@cache
def _ordinal(day: str) -> int:
    return dt.date.fromisoformat(day).toordinal()


def _iso(day: dt.date | None) -> str | None:
    return day.isoformat() if day else None
