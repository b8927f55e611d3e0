"""Attribution agents: each member's claims, fills, coverage and accepted disputes in one table,
re-evaluated on every message and on the dates their answer can change by time alone."""
from __future__ import annotations

import datetime as dt
import time

import faust

from streams import topics
from streams.attribution.clock import Clock
from streams.attribution.engine import evaluate
from streams.attribution.members import MemberState, ReviewQueue, apply, check, decide
from streams.claims.ledger import latest_date
from streams.claims.validation import check_provider
from streams.metrics import ATTRIBUTION_CHANGES, CLAIMS_HELD
from streams.models import AttributionOverride, EligibilitySpan, MedicalClaim, PharmacyClaim, Provider
from streams.pipeline import Pipeline

# Why a member is re-evaluated without a message of its own.
REVIEW_DATE, PROVIDER_ARRIVED = b"review_date", b"provider_arrived"
MESSAGE_TYPES = {
    topics.CLAIMS_MEDICAL: MedicalClaim,
    topics.CLAIMS_PHARMACY: PharmacyClaim,
    topics.ELIGIBILITY: EligibilitySpan,
    topics.ATTRIBUTION_OVERRIDES: AttributionOverride,
}


def register(p: Pipeline) -> None:
    members = p.table("members")
    providers = p.table("providers", global_=True)
    changes_topic, reevaluate_topic = p.topic(topics.ATTRIBUTION_CHANGES), p.topic(topics.ATTRIBUTION_REEVALUATE)
    clock = Clock(p.settings.attribution_clock)
    reviews = ReviewQueue()
    # Members whose claims name providers the directory does not know yet, by NPI.
    waiting_for: dict[str, set[str]] = {}
    rebuilt = False

    async def on_member_message(event: faust.EventT) -> None:
        member_id = event.key.decode()
        stored = members.get(member_id)
        state = MemberState.from_dict(stored)
        if event.message.topic == topics.ATTRIBUTION_REEVALUATE:
            if stored is None:
                return  # nothing known about the member: nothing to re-evaluate
            due = state.next_review and state.next_review <= clock.today().isoformat()
            if event.value == REVIEW_DATE and not due:
                return  # a stale review hint: the member changed since it was queued
        else:
            message = p.codec.decode(event.value, MESSAGE_TYPES[event.message.topic])
            day = check(message, dt.date.today())
            if day:
                clock.observe(day)
            apply(state, message)
        decision, change = decide(member_id, state, providers, clock.today(), int(time.time() * 1000))
        if decision.rule == "no_active_coverage" and state.ledger.claims:
            CLAIMS_HELD.labels(reason="no_active_coverage").inc()
        for npi in decision.unknown_npis:
            waiting_for.setdefault(npi, set()).add(member_id)
        if change:
            # Confirmed before the state is written, so a crash in between republishes, never loses it.
            await (await changes_topic.send(key=event.key, value=p.codec.encode(change)))
            ATTRIBUTION_CHANGES.labels(rule=change.rule).inc()
        members[member_id] = state.to_dict()
        reviews.push(state.next_review, member_id)

    async def update_provider(event: faust.EventT) -> None:
        provider = p.codec.decode(event.value, Provider)
        check_provider(provider)
        providers[provider.npi] = provider.to_record()

    def explain(member_id: str) -> dict | None:
        stored = members.get(member_id)
        if stored is None:
            return None
        return evaluate(member_id, MemberState.from_dict(stored).ledger, providers,
                        list(stored["overrides"].values()), clock.today()).to_dict()

    p.explain = explain
    p.agent(p.topic(*MESSAGE_TYPES, topics.ATTRIBUTION_REEVALUATE), on_member_message)
    p.agent(p.topic(topics.PROVIDERS), update_provider)

    @p.app.timer(p.settings.attribution_sweep_interval_s)
    async def sweep_reviews() -> None:
        nonlocal rebuilt
        if not rebuilt:  # after a restart the queue (and an event clock) is rebuilt once from the table
            for member_id, stored in list(members.items()):
                state = MemberState.from_dict(stored)
                reviews.push(state.next_review, member_id)
                latest = latest_date(state.ledger)
                if latest:
                    clock.observe(dt.date.fromisoformat(latest))
                for npi in state.unknown_npis:
                    waiting_for.setdefault(npi, set()).add(member_id)
            rebuilt = True
        for member_id in sorted(set(reviews.pop_due(clock.today()))):
            await reevaluate_topic.send(key=member_id.encode(), value=REVIEW_DATE)
        for npi in [npi for npi in waiting_for if npi in providers]:
            for member_id in sorted(waiting_for.pop(npi)):
                await reevaluate_topic.send(key=member_id.encode(), value=PROVIDER_ARRIVED)
