"""Reports on care gaps: worklists (the open gaps an organization or a provider can still close,
soonest due first) and scorecards (each measure's rate next to the provider's peers).

Pure functions over rows the SQL store returns; the HTTP API serves them.
"""
from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

from streams.caregaps.measures import measures
from streams.models import GapInfo

COUNTED = ("open", "closed", "missed")  # an excluded (not applicable) gap is in no rate
DISPUTE_ROUTE = (
    "Attribution decides whose scorecard a member counts on. A member listed who is not your patient: "
    "POST /disputes with kind=remove; a patient missing: kind=add (member_id, organization_id, reason, "
    "submitted_by). A plan reviewer accepts or rejects; an accepted dispute changes the attribution, and this "
    "report with it. GET /attribution/{member_id} explains any member's attribution.")


@dataclass(frozen=True)
class WorklistEntry:
    member_id: str
    npi: str | None
    measure_id: str
    measure_title: str
    gap_id: str
    due: str
    days_left: int  # negative once the deadline has passed


def worklist(rows: Iterable[tuple[str, str | None, GapInfo]], today: dt.date) -> list[dict]:
    entries = [WorklistEntry(member, npi, gap.measure_id, gap.measure_title, gap.gap_id, gap.due,
                             (dt.date.fromisoformat(gap.due) - today).days) for member, npi, gap in rows]
    return [asdict(e) for e in sorted(entries, key=lambda e: (e.due, e.measure_id, e.member_id))]


@dataclass(frozen=True)
class MeasureScore:
    measure_id: str
    title: str
    met: int  # closed gaps
    counted: int  # open, closed and missed gaps
    rate: float
    peers: int  # providers of the same peer group with this measure, this one included
    peer_median: float
    percentile: float  # share of peers below this rate, ties counted half, 0-100


def _rates(outcomes: Iterable[tuple[str, str, str]]) -> dict[str, dict[str, tuple[int, int]]]:
    """measure -> npi -> (met, counted)."""
    tally: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for npi, measure_id, status in outcomes:
        if status in COUNTED:
            entry = tally[measure_id][npi]
            entry[0] += status == "closed"
            entry[1] += 1
    return {m: {n: (met, counted) for n, (met, counted) in by_npi.items()} for m, by_npi in tally.items()}


def scorecard(npi: str, outcomes: Iterable[tuple[str, str, str]], peer_group: Mapping[str, str]) -> list[MeasureScore]:
    """The provider's rate per measure, next to the median and its percentile among the providers of
    the same peer group (specialty) with that measure."""
    group, titles, scores = peer_group.get(npi), {m.id: m.title for m in measures().values()}, []
    for measure_id, by_npi in sorted(_rates(outcomes).items()):
        if npi not in by_npi:
            continue
        rate = {n: met / counted for n, (met, counted) in by_npi.items()}
        peers = [r for n, r in rate.items() if peer_group.get(n) == group]
        mine = rate[npi]
        below, equal = sum(r < mine for r in peers), sum(r == mine for r in peers)
        scores.append(MeasureScore(measure_id, titles.get(measure_id, measure_id), *by_npi[npi], round(mine, 4),
                                   len(peers), round(statistics.median(peers), 4),
                                   round(100 * (below + equal / 2) / len(peers), 1)))
    return scores
