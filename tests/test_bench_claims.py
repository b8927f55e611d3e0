"""`gapstream bench attribution` and `gapstream bench gaps` at a small size, on the real parts they
start (embedded broker, a worker with its child processes, SQLite): the benchmarks keep working,
and under their load the pipeline does what a user would check: members with claims attributed, and
every follow-up claim closing its member's ED follow-up gap."""
import pytest

from streams.bench import attribution, gaps
from streams.config import Settings, load

pytestmark = pytest.mark.e2e


def test_the_attribution_bench_attributes_members_with_claims_and_reports_where_the_cpu_went():
    result = attribution.run(members=400, lines=4_000)
    # The feed (seed 1) gives 373 of the 400 members a claim, most of them with a primary-care
    # service; each of those members' first decision is a change from no one to someone.
    assert result["attribution_changes"] >= 0.9 * result["members"]
    assert result["worker_lines_per_s"] > 0 and result["raw_consume_decode_lines_per_s"] > 0
    dispatchers = {f"dispatcher-{i}" for i in range(Settings.webhook_dispatchers)}
    # As many attribution processes as the worker runs by default, each reported on its own.
    assert result["attribution_processes"] == load().attribution_processes
    members = {f"attribution-{i}" for i in range(result["attribution_processes"])}
    assert set(result["cpu_us_per_claim"]) == {"worker", *members, "sinks", *dispatchers, "broker", "all"}
    assert all(v >= 0 for v in result["cpu_us_per_claim"].values())


def test_the_gaps_bench_closes_every_follow_up_gap_it_times():
    result = gaps.run(members=400, lines=4_000, fills=800, ed_visits=60, closing=30, rate=30)
    # Each ED visit of a member in FMC's denominator is one follow-up gap, whichever of the visit and
    # the member's claims the worker read first; the backlog's own follow-up claims close some.
    stored = result["fmc_gaps_stored"]
    assert sum(stored.values()) == 60 and stored.get("open", 0) >= 30
    # The bench raises unless all 30 follow-up claims closed their gap; the latencies are of those.
    assert 0 < result["gap_closed_latency_ms_p50"] <= result["gap_closed_latency_ms_p99"] \
        <= result["gap_closed_latency_ms_max"]
    assert result["worker_events_per_s"] > 0 and result["raw_consume_decode_events_per_s"] > 0
