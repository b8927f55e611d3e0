"""The worker's /metrics merges its child processes' metrics into one valid exposition, and serves
figures that take a query to measure without waiting for one."""
import threading
import time

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.metrics import MESSAGES_IN, Measured, exposition


def child_metrics(claims: int) -> bytes:
    registry = CollectorRegistry()
    counter = Counter("gapstream_messages_in_total", "Messages consumed, per topic", ["topic"], registry=registry)
    counter.labels(topic="claims.medical").inc(claims)
    registry.register(_ProcessLike())
    return generate_latest(registry)


class _ProcessLike:
    def collect(self):
        from prometheus_client.metrics_core import GaugeMetricFamily

        yield GaugeMetricFamily("process_resident_memory_bytes", "Resident memory size in bytes.", value=100.0)


def samples(text: bytes) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text.decode()) for s in f.samples}


def test_children_are_summed_per_series_and_their_process_metrics_kept_apart():
    MESSAGES_IN.labels(topic="adt.raw").inc(0)
    merged = samples(exposition({"attribution-0": child_metrics(7), "attribution-1": child_metrics(5)}))
    assert merged[("gapstream_messages_in_total", (("topic", "claims.medical"),))] == 12
    assert ("gapstream_messages_in_total", (("topic", "adt.raw"),)) in merged  # the worker's own series too
    assert merged[("process_resident_memory_bytes", (("process", "attribution-0"),))] == 100
    assert merged[("process_resident_memory_bytes", (("process", "attribution-1"),))] == 100
    text = exposition({"attribution-0": child_metrics(1)}).decode()
    assert text.count("# TYPE gapstream_messages_in_total counter") == 1  # one family, not two



def test_a_scrape_is_served_the_last_figures_while_a_slow_measurement_runs():
    released, calls = threading.Event(), []

    def measure() -> int:
        calls.append(None)
        if len(calls) == 2:
            released.wait(10)  # the broker or the database answers slowly
            return 2
        if len(calls) > 2:
            raise OSError("the database is away")
        return 1

    figures = Measured("test figures", measure, max_age_s=0, empty=0)
    assert figures.get() == 1  # nothing to serve yet: the first read waits for a measurement
    assert figures.get() == 1  # starts a second measurement, which hangs, and does not wait for it
    _until(lambda: len(calls) == 2)
    assert figures.get() == 1 and len(calls) == 2 and not released.is_set()  # one measurement at a time
    released.set()
    _until(lambda: figures.get() == 2 or len(calls) >= 3)  # its figures, unless the next one ran already
    # The next measurement fails: no figures rather than stale ones.
    _until(lambda: figures.get() == 0 and len(calls) >= 3)


def _until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.01)


def test_a_bench_reads_where_the_cpu_went_per_process_from_the_worker_and_the_broker():
    import os

    from prometheus_client import REGISTRY

    from streams.bench.harness import cpu_by_process, cpu_seconds, cpu_us_per

    # The worker's exposition: its own process figures unlabelled, a child's labelled by its name.
    merged = exposition({"attribution-0": generate_latest(REGISTRY)}).decode()
    found = cpu_by_process(merged)
    assert set(found) == {"worker", "attribution-0"} and all(v > 0 for v in found.values())
    # The broker is read from /proc: here this process stands in for it, after burning some CPU.
    start = time.process_time()
    while time.process_time() - start < 0.3:
        pass
    read = cpu_seconds(1, os.getpid())["broker"]  # port 1: no worker answers, the broker is still read
    assert abs(read - time.process_time()) < 0.1
    assert cpu_us_per(1000, {"broker": 1.0, "worker": 0.5}, {"broker": 1.5, "worker": 0.7}) == {
        "broker": 500, "worker": 200, "all": 700}
