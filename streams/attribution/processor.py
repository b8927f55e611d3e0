"""The member flow: each member's claims, fills, coverage, visits and accepted disputes, with the
member's attribution and care gaps worked out again whenever a message or the calendar may have
changed them.

Runs on :class:`streams.processor.StatefulProcessor` (batched checkpoints, state per partition), not
as a Faust agent: this is the high-volume flow. The provider directory is a full copy on every
worker; the owner of a provider's partition dead-letters invalid entries.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

import orjson
from confluent_kafka import Message

from streams import topics
from streams.attribution.clock import Clock
from streams.attribution.engine import evaluate
from streams.attribution.members import (
    MemberState,
    ReviewQueue,
    apply,
    check,
    decide,
    keep_cohorts,
    keep_gaps,
    member_facts,
)
from streams.caregaps.alerts import gap_alert
from streams.caregaps.facts import Member as GapFacts
from streams.child import ChildProcess
from streams.claims.ledger import latest_date
from streams.claims.validation import check_provider
from streams.config import Settings
from streams.deadletters import BadInput, where
from streams.kafka.lag import Group
from streams.metrics import ATTRIBUTION_CHANGES, CLAIMS_HELD, GAP_EVENTS
from streams.models import (
    AttributionOverride,
    CohortMembership,
    EligibilitySpan,
    Encounter,
    MedicalClaim,
    PharmacyClaim,
    Provider,
)
from streams.processor import Output, StatefulProcessor
from streams.serialization.codec import AvroCodec, codec_for
from streams.state.global_table import GlobalTable
from streams.state.partitions import PartitionState

MESSAGE_TYPES = {
    topics.CLAIMS_MEDICAL: MedicalClaim,
    topics.CLAIMS_PHARMACY: PharmacyClaim,
    topics.ELIGIBILITY: EligibilitySpan,
    topics.ATTRIBUTION_OVERRIDES: AttributionOverride,
    topics.ENCOUNTERS: Encounter,
}
Where = tuple[int, str]  # (partition, member id)
log = logging.getLogger(__name__)


def provider_entry(codec: AvroCodec, raw: bytes) -> tuple[str, dict[str, Any]]:
    """A provider directory message as (NPI, record); raises BadInput when it is invalid."""
    provider = codec.decode(raw, Provider)
    check_provider(provider)
    return provider.npi, provider.to_record()


class AttributionHandler:
    def __init__(self, codec: AvroCodec, clock: Clock, sweep_interval_s: float):
        self.codec, self.clock, self._sweep_interval = codec, clock, sweep_interval_s
        self.providers: GlobalTable | None = None  # set once the directory has been read
        self._reviews = ReviewQueue()
        # Members whose claims name providers the directory does not know yet, by NPI.
        self._waiting_for: dict[str, set[Where]] = {}
        self._last_sweep = 0.0

    def encode(self, value: MemberState) -> bytes:
        return orjson.dumps(value.to_dict())

    def decode(self, raw: bytes) -> MemberState:
        return MemberState.from_dict(orjson.loads(raw))

    def assigned(self, state: PartitionState) -> None:
        for member_id, member in state.values.items():
            self._reviews.push(member.due, (state.number, member_id))
            latest = latest_date(member.ledger)
            if latest:
                self.clock.observe(dt.date.fromisoformat(latest))
            for npi in member.unknown_npis:
                self._waiting_for.setdefault(npi, set()).add((state.number, member_id))

    def revoked(self, state: PartitionState) -> None:
        """Queued reviews and waits of the partition are left as hints: :meth:`tick` skips them."""

    def process(self, message: Message, state: PartitionState, out: Output) -> None:
        topic = message.topic()
        if topic == topics.PROVIDERS:
            if message.value() is not None:  # a tombstone removes the provider: nothing to check
                provider_entry(self.codec, message.value())  # invalid: dead-lettered here, once
            return
        if not message.key():
            raise BadInput("missing_key", f"a {topic} message must be keyed by member id")
        member_id = message.key().decode()
        content = self.codec.decode(message.value(), MESSAGE_TYPES[topic])
        day = check(content, dt.date.today())
        if day:
            self.clock.observe(day)
        member = state.get(member_id) or MemberState()
        queued = member.due
        try:
            affects = apply(member, content)
            if affects.attribution:
                self._decide(member_id, member, state.number, out)
            facts = member_facts(member, self.clock.today()) if affects.cohorts or affects.gaps else None
            if affects.cohorts:  # before the gaps: their alerts carry the cohorts
                self._keep_cohorts(member_id, member, out, facts)
            if affects.gaps:
                self._keep_gaps(member_id, member, out, getattr(content, "received_at_ms", 0) or _now_ms(),
                                affects.gaps, facts, affects.conditions_only)
        finally:
            # Stored even when a step failed (the message is then dead-lettered): the state in
            # memory was changed in place, and the changelog must hold what memory holds.
            self._store(state, member_id, member, queued)

    def tick(self, states: dict[int, PartitionState], out: Output) -> None:
        assert self.providers is not None
        for npi in self.providers.poll():
            for partition, member_id in sorted(self._waiting_for.pop(npi, ())):
                self._reevaluate_safely(states, partition, member_id, out, only_if_due=False)
        if time.monotonic() - self._last_sweep < self._sweep_interval:
            return
        self._last_sweep = time.monotonic()
        for partition, member_id in sorted(set(self._reviews.pop_due(self.clock.today()))):
            self._reevaluate_safely(states, partition, member_id, out, only_if_due=True)

    def _reevaluate_safely(self, states: dict[int, PartitionState], partition: int, member_id: str, out: Output,
                           only_if_due: bool) -> None:
        # One member that cannot be evaluated must not stop the others (nor restart the processor,
        # which would meet the same member again). Logged without the member id: health data.
        try:
            self._reevaluate(states, partition, member_id, out, only_if_due)
        except Exception as exc:
            log.error("re-evaluating a member of partition %d failed: %s", partition, where(exc))

    def explain(self, states: dict[int, PartitionState], member_id: str) -> dict[str, Any] | None:
        member = next((s.values[member_id] for s in states.values() if member_id in s.values), None)
        if member is None or self.providers is None:
            return None
        return evaluate(member_id, member.ledger, self.providers.values, list(member.overrides.values()),
                        self.clock.today()).to_dict()

    def _reevaluate(self, states: dict[int, PartitionState], partition: int, member_id: str, out: Output,
                    only_if_due: bool) -> None:
        state = states.get(partition)
        member = state.get(member_id) if state else None
        if member is None:
            return  # the partition moved to another worker, which has its own hints
        today, queued = self.clock.today().isoformat(), member.due
        decide_now = not only_if_due or bool(member.next_review and member.next_review <= today)
        gaps_now = only_if_due and bool(member.gaps_wakeup and member.gaps_wakeup <= today)
        if not (decide_now or gaps_now):
            return  # a stale hint: the member changed since it was queued
        if decide_now:
            self._decide(member_id, member, partition, out)
        facts = member_facts(member, self.clock.today())
        self._keep_cohorts(member_id, member, out, facts)  # lookbacks slide with time too
        if gaps_now:
            self._keep_gaps(member_id, member, out, _now_ms(), facts=facts)
        self._store(state, member_id, member, queued)

    def _decide(self, member_id: str, member: MemberState, partition: int, out: Output) -> None:
        assert self.providers is not None
        decision, change = decide(member_id, member, self.providers.values, self.clock.today(), _now_ms())
        if decision.rule == "no_active_coverage" and member.ledger.claims:
            CLAIMS_HELD.labels(reason="no_active_coverage").inc()
        for npi in decision.unknown_npis:
            self._waiting_for.setdefault(npi, set()).add((partition, member_id))
        if change:
            out.send(topics.ATTRIBUTION_CHANGES, member_id.encode(), self.codec.encode(change))
            ATTRIBUTION_CHANGES.labels(rule=change.rule).inc()

    def _keep_cohorts(self, member_id: str, member: MemberState, out: Output, facts: GapFacts | None = None) -> None:
        today = self.clock.today()
        if keep_cohorts(member, today, facts):
            change = CohortMembership(member_id=member_id, cohorts=list(member.cohorts), as_of=today.isoformat(),
                                      changed_at_ms=_now_ms())
            out.send(topics.COHORTS, member_id.encode(), self.codec.encode(change))

    def _keep_gaps(self, member_id: str, member: MemberState, out: Output, received_at_ms: int,
                   only: frozenset[str] | None = None, facts: GapFacts | None = None,
                   conditions_only: frozenset[str] = frozenset()) -> None:
        for event in keep_gaps(member, self.clock.today(), only, facts, conditions_only):
            # The processor holds the attribution it just decided; the SQL copy routing would read
            # can lag it by a sink batch, and the gap alert would then reach nobody.
            alert = gap_alert(member_id, member.organization_id, event, received_at_ms, _now_ms(), member.cohorts)
            out.send(topics.GAP_ALERTS, member_id.encode(), self.codec.encode(alert))
            GAP_EVENTS.labels(measure=event.gap.measure_id, kind=event.kind).inc()

    def _store(self, state: PartitionState, member_id: str, member: MemberState, queued: str | None) -> None:
        state.set(member_id, member)
        if member.due != queued:  # an unchanged date is queued already
            self._reviews.push(member.due, (state.number, member_id))


def _now_ms() -> int:
    return int(time.time() * 1000)


def consumer_group(settings: Settings) -> Group:
    return Group(f"{settings.app_id}-attribution", (*MESSAGE_TYPES, topics.PROVIDERS))


class AttributionFlow:
    """The attribution processor with the provider directory it needs, started and stopped together.
    Runs in a child process of the worker (see :class:`AttributionProcesses`)."""

    def __init__(self, settings: Settings, bootstrap: str):
        self._bootstrap = bootstrap
        self._codec = codec = codec_for(settings.schema_registry_url)
        self.handler = AttributionHandler(codec, Clock(settings.attribution_clock),
                                          settings.attribution_sweep_interval_s)
        group = consumer_group(settings)
        self.processor = StatefulProcessor("attribution", bootstrap, group.group_id, list(group.topics),
                                           settings.topic_partitions, self.handler, codec)

    def start(self) -> None:
        self.processor.ensure_topics()
        providers = GlobalTable(self._bootstrap, topics.PROVIDERS, self._provider)
        providers.catch_up()  # decisions made before the directory is known would all be "no candidate"
        self.handler.providers = providers
        self.processor.start()

    def stop(self, peer_left_at: float | None = None) -> float | None:
        """Returns when this process's consumer left the group (see StatefulProcessor.stop)."""
        self.processor.stop(peer_left_at=peer_left_at)
        if self.handler.providers is not None:
            self.handler.providers.close()
        return self.processor.left_at

    def explain(self, member_id: str) -> dict[str, Any] | None:
        with self.processor.lock:
            return self.handler.explain(self.processor.states, member_id)

    def counts(self) -> dict[str, int]:
        with self.processor.lock:
            members = sum(len(s.values) for s in self.processor.states.values())
        return {"members": members, "providers": len(self.handler.providers.values) if self.handler.providers else 0}

    def _provider(self, raw: bytes) -> tuple[str, dict[str, Any]] | None:
        try:
            return provider_entry(self._codec, raw)
        except BadInput:  # dead-lettered by the owner of its partition
            return None


class AttributionProcesses:
    """The flow in ``GAPSTREAM_ATTRIBUTION_PROCESSES`` child processes of the worker, members of one
    consumer group that share the partitions (the flow is CPU-bound: one per core by default, see
    streams/config.py)."""

    def __init__(self, settings: Settings, bootstrap: str):
        self.consumer_group = consumer_group(settings)
        self.children = [ChildProcess(f"attribution-{i}", AttributionFlow, (settings, bootstrap), settings.log_level,
                                      nice=10) for i in range(settings.attribution_processes)]

    def start(self) -> None:
        for child in self.children:
            child.start()

    def stop(self) -> None:
        # One after the other, each leaving the group after the rebalance the one before caused
        # (StatefulProcessor._may_leave).
        left_at = None
        for child in self.children:
            left_at = child.stop(left_at)

    def explain(self, member_id: str) -> dict[str, Any] | None:
        """From whichever process holds the member's partition."""
        return next((found for child in self.children if (found := child.call("explain", member_id))), None)

    def counts(self) -> dict[str, int]:
        each = [child.call("counts") for child in self.children]
        # Members are split between the processes; each holds the whole directory.
        return {"members": sum(c["members"] for c in each), "providers": max(c["providers"] for c in each)}

    def metrics(self) -> dict[str, bytes]:
        return {child.name: child.call("metrics") for child in self.children}
