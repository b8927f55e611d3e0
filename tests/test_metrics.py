"""The worker's /metrics merges its child processes' metrics into one valid exposition."""
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.metrics import MESSAGES_IN, exposition


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
