"""Settings from the environment: the defaults a worker starts with when nothing is set."""
import os

import pytest

from streams.config import load


@pytest.fixture
def cores(monkeypatch):
    """Pretend the worker may run on this many cores."""
    for name in list(os.environ):
        if name.startswith("GAPSTREAM_"):
            monkeypatch.delenv(name)
    return lambda n: monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(n)))


def test_a_worker_runs_one_attribution_process_per_core_but_not_more_than_partitions(cores, monkeypatch):
    cores(2)
    assert load().attribution_processes == 2
    cores(16)
    assert load().attribution_processes == 4  # the default partition count: a fifth process would idle
    monkeypatch.setenv("GAPSTREAM_TOPIC_PARTITIONS", "24")
    assert load().attribution_processes == 16
    cores(1)
    assert load().attribution_processes == 1


def test_the_attribution_processes_set_in_the_environment_win(cores, monkeypatch):
    cores(2)
    monkeypatch.setenv("GAPSTREAM_ATTRIBUTION_PROCESSES", "3")
    assert load().attribution_processes == 3
    monkeypatch.setenv("GAPSTREAM_ATTRIBUTION_PROCESSES", "0")
    assert load().attribution_processes == 1
