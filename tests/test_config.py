"""Settings from the environment: the defaults a worker starts with when nothing is set."""
import os

import pytest

from streams.config import load


@pytest.fixture
def clean(monkeypatch):
    for name in list(os.environ):
        if name.startswith("GAPSTREAM_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_a_worker_runs_one_attribution_process_unless_told_otherwise(clean):
    # More than one can leave the embedded broker's consumer group without assignments (config.py).
    assert load().attribution_processes == 1
    clean.setenv("GAPSTREAM_ATTRIBUTION_PROCESSES", "3")
    assert load().attribution_processes == 3
    clean.setenv("GAPSTREAM_ATTRIBUTION_PROCESSES", "0")
    assert load().attribution_processes == 1
