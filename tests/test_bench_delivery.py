"""`gapstream bench delivery` at a small size, on real loopback endpoints and SQLite: the benchmark
keeps working, every delivery to a healthy endpoint arrives in each phase, and the unhealthy
endpoints are really failing and hanging while the two conditions take turns."""
from streams.bench.delivery import run


def test_the_delivery_bench_delivers_everything_healthy_and_reports_both_conditions():
    # Two dispatcher processes, each with its share of the endpoints, as a worker runs them.
    result = run(backlog=40, rate=20, seconds=2, unhealthy=0.2, concurrency=4, timeout_s=1.0, rounds=2, dispatchers=2)
    healthy, unhealthy = result["detail"]["all_healthy"], result["detail"]["with_unhealthy"]
    assert healthy["drain"]["deliveries"] == 40 * 4
    assert unhealthy["drain"]["deliveries"] == 32 * 4  # 8 of the 40 alerts go to the 10 bad endpoints
    for rounds in (healthy["paced_rounds"], unhealthy["paced_rounds"]):
        assert len(rounds) == 2
        assert all(r["healthy_delivered"] == r["healthy_expected"] > 0 for r in rounds)
    assert "attempts_http_5xx" not in healthy["drain"] and unhealthy["drain"]["attempts_http_5xx"] > 0
    assert result["p99_ratio"] > 0 and result["paced_p99_ms_all_healthy"] > 0
