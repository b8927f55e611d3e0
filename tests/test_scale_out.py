"""Two workers on the embedded broker and one database: they share the partitions, and when one
stops mid-stream the other takes its partitions over; every ED visit still reaches its
organization, each under one alert id and one webhook id."""
import asyncio
import subprocess
import sys
import threading
import time

import pytest
from standardwebhooks.webhooks import Webhook

from sinks.webhooks.signing import new_secret
from streams.adt.mllp_client import send_messages
from streams.kafka.broker import die_with_parent, free_port
from streams.tools.demo import wait_listening
from streams.tools.generate import adt_feed, ed_visits, population
from tests.helpers import Receiver, health, start_worker, wait_for
from tests.test_end_to_end import cli, write_csv

pytestmark = pytest.mark.e2e


def assigned(worker) -> int:
    return (health(worker.web_port) or {}).get("assigned_partitions", 0)


def test_a_second_worker_shares_the_partitions_and_takes_them_all_when_the_first_stops(broker, tmp_path):
    from streams.tools.generate import eligibility, providers

    pop = population(seed=21, members=200)
    feed = adt_feed(pop, seed=21, visits=150)
    database = {"DATABASE_URL": f"sqlite:///{tmp_path / 'shared.db'}"}
    for name in ("w1", "w2"):
        (tmp_path / name).mkdir()
    first = start_worker(broker.bootstrap, tmp_path / "w1", **database)
    alone = assigned(first)
    second = start_worker(broker.bootstrap, tmp_path / "w2", **database)
    mllp = None
    try:
        # Faust also hands each worker standby copies of the other's table changelogs, so the two
        # counts add up to more than one worker alone held.
        wait_for(lambda: 0 < assigned(first) < alone and assigned(second) > 0, 60,
                 message="the partitions split between the two workers")
        receiver = Receiver(secret=new_secret()).start()
        for org in {o.organization_id for o in pop.organizations}:
            cli(first.env, "subscriptions", "add", "--organization", org, "--url", receiver.url,
                "--secret", receiver.secret, "--events", "adt.ed_visit")
        write_csv(tmp_path / "providers.csv", providers(pop))
        write_csv(tmp_path / "eligibility.csv", eligibility(pop))
        cli(first.env, "load", "providers", str(tmp_path / "providers.csv"))
        cli(first.env, "load", "eligibility", str(tmp_path / "eligibility.csv"))
        attributable = sum(1 for m in pop.members if m.organization_id)
        wait_for(lambda: (health(first.web_port) or {}).get("attributed") == attributable, 90,
                 message="members attributed")

        mllp_port = free_port()
        mllp = subprocess.Popen([sys.executable, "-m", "streams.cli", "mllp", "--port", str(mllp_port)],
                                env={**first.env, "GAPSTREAM_MLLP_METRICS_PORT": str(free_port())},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
        wait_listening(mllp_port)
        # Mid-stream, after a third of the feed: the second worker stops.
        stopper = threading.Timer(len(feed) / 3 / 30, second.stop)
        stopper.start()
        report = asyncio.run(send_messages("127.0.0.1", mllp_port, [m.encode() for m in feed], rate_per_s=30))
        stopper.join()
        assert set(report.acks) == {"AA"}
        wait_for(lambda: assigned(first) == alone, 60, message="the first worker holding every partition again")

        members = {m.member_id: m.organization_id for m in pop.members}
        expected = set()
        for facility, visit in ed_visits(feed):
            message = next(m for m in feed if f"|{facility}|" in m and f"|{visit}|" in m)
            if members.get(message.split("PID|1||")[1].split("^")[0]):
                expected.add((facility, visit))

        def received() -> dict:
            by_visit: dict[tuple[str, str], set] = {}
            for r in list(receiver.requests):
                data = Webhook(receiver.secret).verify(r.body, r.headers)["data"]
                by_visit.setdefault((data["facility"], data["visit_number"]), set()).add(
                    (data["alert_id"], r.headers["webhook-id"]))
            return by_visit

        try:
            wait_for(lambda: set(received()) >= expected, 120, message=f"{len(expected)} ED alerts")
        except AssertionError as exc:
            got = set(received())
            raise AssertionError(f"{exc}: {len(got & expected)} of them arrived, missing {sorted(expected - got)[:5]}, "
                                 f"{len(got - expected)} unexpected; second stopped at "
                                 f"{len(feed) / 3 / 30:.1f}s") from exc
        time.sleep(2)  # a re-sent alert under a new id would arrive in this time
        by_visit = received()
        assert set(by_visit) == expected
        assert all(len(ids) == 1 for ids in by_visit.values()), {v: i for v, i in by_visit.items() if len(i) > 1}
    finally:
        if mllp is not None:
            mllp.terminate()
            mllp.wait(10)
        second.stop()
        first.stop()
