"""Lookback windows slide with time: a member with no new claims changes attribution when the
clock passes the day their visits age out, driven by the review queue, not by a rescan."""
import asyncio
import json
import time
import urllib.request

import pytest

from streams.models import Provider
from streams.sources.publish import publish
from tests.claims_factory import PCP_A, PCP_B, span, visit
from tests.helpers import call, plan_token, start_worker, wait_for

pytestmark = pytest.mark.e2e


def attributed_npi(worker, member):
    status, body = call(worker.web_port, f"/attribution/{member}", token=worker.plan)
    return (body["current"] or {}).get("npi") if status == 200 else None  # the stored decision, as routing sees it


def test_visits_ageing_out_flip_the_attribution_without_a_new_claim(broker, tmp_path):
    worker = start_worker(broker.bootstrap, tmp_path, GAPSTREAM_ATTRIBUTION_CLOCK="event")
    worker.plan = plan_token(worker.env)
    try:
        providers = [Provider(npi=PCP_A, name="A", role="PRIMARY_CARE_PHYSICIAN", organization_id="ORG-A"),
                     Provider(npi=PCP_B, name="B", role="PRIMARY_CARE_PHYSICIAN", organization_id="ORG-B")]
        # 24-month lookback: A's two visits count until 2025-01-10 and 2025-02-10; B's one until 2026-06-01.
        history = [span(), visit("t1", PCP_A, "2023-01-10", "2023-02-10"), visit("t2", PCP_B, "2024-06-01")]
        asyncio.run(publish(broker.bootstrap, [*providers, *history]))
        wait_for(lambda: attributed_npi(worker, "M1") == PCP_A, 60, message="A attributed first")

        # Another member's claim moves the event clock to 2025-02-11; M1 gets no message at all.
        other = visit("o1", PCP_B, "2025-02-11", member="M2")
        asyncio.run(publish(broker.bootstrap, [other]))
        wait_for(lambda: attributed_npi(worker, "M1") == PCP_B, 60, message="M1 re-evaluated to B")
    finally:
        worker.stop()


@pytest.fixture
def own_broker(tmp_path):
    """A broker of its own: the other test's claims would move the event clock."""
    from streams.kafka.broker import start_embedded

    started = start_embedded(tmp_path / "broker.log")
    yield started
    started.stop()


def test_a_restarted_worker_recovers_members_and_keeps_the_event_clock(own_broker, tmp_path):
    """After a restart, tables recover from their changelogs and an event clock resumes from the
    data, not from today: members whose review date is long past (in wall-clock terms) keep their
    attribution instead of losing it to 'no coverage today'."""
    from pathlib import Path

    env = {"GAPSTREAM_ATTRIBUTION_CLOCK": "event", "GAPSTREAM_APP_ID": "gapstream-restart"}
    rif = Path(__file__).parent / "fixtures" / "rif" / "synthea"
    broker = own_broker
    worker = start_worker(broker.bootstrap, tmp_path, **env)
    worker.plan = plan = plan_token(worker.env)
    try:
        import subprocess
        import sys

        subprocess.run([sys.executable, "-m", "streams.cli", "load", "rif", str(rif)], env=worker.env, check=True,
                       capture_output=True, timeout=120)
        wait_for(lambda: attributed_npi(worker, "-1000006") == "9999310391", 60, message="RIF attributed")
    finally:
        worker.stop()
    worker = start_worker(broker.bootstrap, tmp_path, **env)
    worker.plan = plan  # the same database: the token stays valid
    try:
        health_members = lambda: json.load(urllib.request.urlopen(  # noqa: E731
            f"http://127.0.0.1:{worker.web_port}/health", timeout=5))["members"]
        wait_for(lambda: health_members() == 3, 60, message="members recovered from the changelog")
        time.sleep(3)  # several review sweeps (0.5 s apart) have run by now
        body = call(worker.web_port, "/attribution/-1000006", token=worker.plan)[1]
        assert body["current"]["organization_id"] == "TIN:999145882"
        assert body["live"]["organization_id"] == "TIN:999145882" and body["live"]["as_of"] == "2021-05-14"
    finally:
        worker.stop()
