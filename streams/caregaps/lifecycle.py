"""The life of one care gap: opened by a triggering event, closed by evidence dated inside its
window, missed when the deadline passes, re-opened when the closing evidence is voided.

Event time decides, not arrival time: a claim that arrives after the deadline but whose service
date was inside the window closes the gap (and the gap records that it closed late). Pure
functions: :func:`apply` takes the gap, one fact and the date, and returns the new gap with the
events to publish, so the agent that drives it only loads, applies and stores.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum


class Status(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    MISSED = "missed"
    NOT_APPLICABLE = "not_applicable"  # excluded after it opened (an admission after the ED visit)


@dataclass(frozen=True)
class Evidence:
    source: str  # claim | fill | adt
    id: str
    service_date: dt.date


@dataclass(frozen=True)
class Gap:
    measure_id: str
    trigger_id: str  # what opened it (an ED visit, a discharge) or the measurement year
    window_start: dt.date
    due: dt.date  # last day evidence may be dated
    status: Status
    due_soon_sent: bool = False
    evidence: tuple[Evidence, ...] = ()  # what closed it, and any further evidence in the window
    closed_late: bool = False  # closed by evidence that arrived after the deadline
    revision: int = 0  # transitions so far: numbers the gap's events, so each has an id of its own
    warned: str | None = None  # the occasion of the last warning sent (a supply that ran out on a day)
    watch: dt.date | None = None  # a date on which time alone changes the evaluation (a refill due)


@dataclass(frozen=True)
class Opened:
    measure_id: str
    trigger_id: str
    window_start: dt.date
    due: dt.date


@dataclass(frozen=True)
class EvidenceAdded:
    evidence: Evidence


@dataclass(frozen=True)
class EvidenceVoided:
    source: str
    id: str
    why: str = "void"  # void (the claim or fill is gone) | superseded (a later result counts instead)


@dataclass(frozen=True)
class Excluded:
    reason: str


@dataclass(frozen=True)
class Reinstated:
    """The exclusion no longer holds (the claim that excluded the member was voided)."""


@dataclass(frozen=True)
class Unreachable:
    """The gap cannot be closed in time any more (the days left cannot lift adherence to the
    threshold): missed before its deadline."""
    reason: str


@dataclass(frozen=True)
class Warn:
    """A warning about an open gap, sent once per occasion (a supply that ran out on a given day)."""
    occasion: str
    kind: str  # gap.refill_overdue
    detail: dict[str, str]


@dataclass(frozen=True)
class Watch:
    """The next date on which time alone changes the gap's evaluation; None when there is none."""
    day: dt.date | None


@dataclass(frozen=True)
class Tick:
    """Time passing: due-soon warnings and deadlines."""


Fact = Opened | EvidenceAdded | EvidenceVoided | Excluded | Reinstated | Unreachable | Warn | Watch | Tick


@dataclass(frozen=True)
class GapEvent:
    kind: str  # gap.opened | gap.due_soon | gap.closed | gap.missed | gap.excluded | gap.refill_overdue
    gap: Gap
    detail: dict[str, str] = field(default_factory=dict)


def apply(gap: Gap | None, fact: Fact, today: dt.date, due_soon_days: int = 2) -> tuple[Gap | None, list[GapEvent]]:
    if isinstance(fact, Opened):
        if gap is not None:
            return gap, []  # the same trigger again (a repeated ADT message): nothing new
        gap, opened = _transition(Gap(fact.measure_id, fact.trigger_id, fact.window_start, fact.due, Status.OPEN),
                                  "gap.opened")
        return _settle(gap, today, due_soon_days, [opened])
    if gap is None:
        return None, []
    if isinstance(fact, Watch):
        return (gap if gap.watch == fact.day else dataclasses.replace(gap, watch=fact.day)), []
    if gap.status == Status.NOT_APPLICABLE:
        if not isinstance(fact, Reinstated):
            return gap, []  # nothing counts while excluded
        closed = bool(gap.evidence)
        gap, event = _transition(gap, "gap.closed" if closed else "gap.opened",
                                 {"reinstated": "the exclusion no longer holds"},
                                 status=Status.CLOSED if closed else Status.OPEN, due_soon_sent=False)
        return _settle(gap, today, due_soon_days, [event])
    if isinstance(fact, Reinstated):
        return gap, []
    if isinstance(fact, Excluded):
        gap, event = _transition(gap, "gap.excluded", {"reason": fact.reason}, status=Status.NOT_APPLICABLE)
        return gap, [event]
    if isinstance(fact, EvidenceAdded):
        e = fact.evidence
        if not gap.window_start <= e.service_date <= gap.due or e in gap.evidence:
            return gap, []
        gap = dataclasses.replace(gap, evidence=(*gap.evidence, e))
        if gap.status in (Status.OPEN, Status.MISSED):
            late = today > gap.due
            gap, event = _transition(gap, "gap.closed", {"evidence": e.id, **({"late": "true"} if late else {})},
                                     status=Status.CLOSED, closed_late=late)
            return gap, [event]
        return gap, []
    if isinstance(fact, EvidenceVoided):
        remaining = tuple(e for e in gap.evidence if (e.source, e.id) != (fact.source, fact.id))
        if remaining == gap.evidence:
            return gap, []
        gap = dataclasses.replace(gap, evidence=remaining)
        if gap.status == Status.CLOSED and not remaining:
            gap, event = _transition(gap, "gap.opened", {"reopened_by": fact.why, "evidence": fact.id},
                                     status=Status.OPEN, closed_late=False, due_soon_sent=False)
            return _settle(gap, today, due_soon_days, [event])
        return gap, []
    if isinstance(fact, Unreachable):
        if gap.status != Status.OPEN:
            return gap, []
        gap, event = _transition(gap, "gap.missed", {"reason": fact.reason}, status=Status.MISSED)
        return gap, [event]
    if isinstance(fact, Warn):
        if gap.status != Status.OPEN or gap.warned == fact.occasion:
            return gap, []
        gap, event = _transition(gap, fact.kind, fact.detail, warned=fact.occasion)
        return gap, [event]
    return _settle(gap, today, due_soon_days, [])


def _transition(gap: Gap, kind: str, detail: dict[str, str] | None = None, **changes) -> tuple[Gap, GapEvent]:
    gap = dataclasses.replace(gap, revision=gap.revision + 1, **changes)
    return gap, GapEvent(kind, gap, detail or {})


def _settle(gap: Gap, today: dt.date, due_soon_days: int, events: list[GapEvent]) -> tuple[Gap, list[GapEvent]]:
    """Bring an open gap up to date with the calendar: a warning when the deadline is near, missed
    once it has passed."""
    if gap.status != Status.OPEN:
        return gap, events
    if today > gap.due:
        gap, event = _transition(gap, "gap.missed", status=Status.MISSED)
        events.append(event)
    elif not gap.due_soon_sent and today >= gap.due - dt.timedelta(days=due_soon_days):
        gap, event = _transition(gap, "gap.due_soon", due_soon_sent=True)
        events.append(event)
    return gap, events


def next_wakeup(gap: Gap, due_soon_days: int = 2) -> dt.date | None:
    """The date :func:`apply` with a :class:`Tick` would change this gap, for the agent's timers."""
    if gap.status != Status.OPEN:
        return None
    deadline = gap.due - dt.timedelta(days=due_soon_days) if not gap.due_soon_sent else gap.due + dt.timedelta(days=1)
    return min(deadline, gap.watch) if gap.watch else deadline
