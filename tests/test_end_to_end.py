"""The whole path on real parts: embedded broker, `gapstream worker`, `gapstream mllp`, SQLite,
and a webhook endpoint on loopback. Corpus ED messages are sent three times each."""
import csv
import subprocess
import sys
import time

import pytest
from standardwebhooks.webhooks import Webhook

from sinks.webhooks.signing import new_secret
from streams import topics
from streams.adt.mllp_client import send_messages
from streams.kafka.broker import die_with_parent, free_port
from streams.kafka.reading import ReadTimeout
from streams.models import DeadLetter, EligibilitySpan, Provider
from streams.serialization.codec import AvroCodec
from streams.tools.demo import wait_listening
from streams.tools.generate import adt_feed, ed_visits, eligibility, population, providers
from tests.helpers import CORPUS, ED_FILES, Receiver, health, metrics_text, read_topic, start_worker, wait_for

pytestmark = pytest.mark.e2e


def write_csv(path, records):
    rows = [r.to_record() for r in records]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def cli(env, *args):
    result = subprocess.run([sys.executable, "-m", "streams.cli", *args], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def stack(broker, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("e2e")
    pop = population(seed=11, members=300)
    feed = adt_feed(pop, seed=11, visits=60)
    # The corpus's two ED patients join the generated population, choosing a PCP of their own organization.
    corpus_pcp = Provider(npi="1999999992", name="Dr. Corpus", role="PRIMARY_CARE_PHYSICIAN",
                          organization_id="ORG-CORPUS")
    spans = eligibility(pop) + [
        EligibilitySpan(member_id=m, payer="PLAN", product_line="COMMERCIAL", coverage_start="2020-01-01",
                        birth_date="1970-01-01", sex="F", selected_pcp_npi=corpus_pcp.npi, received_at_ms=0)
        for m in ("33333", "MRN12345")]
    write_csv(data_dir / "eligibility.csv", spans)
    write_csv(data_dir / "providers.csv", [*providers(pop), corpus_pcp])
    attributable = sum(1 for m in pop.members if m.organization_id) + 2

    worker = start_worker(broker.bootstrap, data_dir)
    env = worker.env
    receiver = Receiver(secret=new_secret()).start()
    # The corpus organization takes every ADT event; the generated ones only ED visits, which the
    # tests below count.
    for org, events in [*((o.organization_id, "adt.ed_visit") for o in pop.organizations), ("ORG-CORPUS", "adt.*")]:
        cli(env, "subscriptions", "add", "--organization", org, "--url", receiver.url, "--secret", receiver.secret,
            "--events", events)
    cli(env, "load", "providers", str(data_dir / "providers.csv"))
    cli(env, "load", "eligibility", str(data_dir / "eligibility.csv"))
    wait_for(lambda: (health(worker.web_port) or {}).get("attributed") == attributable, 60,
             message="members attributed")

    mllp_port = free_port()
    mllp = subprocess.Popen([sys.executable, "-m", "streams.cli", "mllp", "--port", str(mllp_port)],
                            env={**env, "GAPSTREAM_MLLP_METRICS_PORT": str(free_port())},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
    yield {"worker": worker, "receiver": receiver, "mllp_port": mllp_port, "feed": feed, "pop": pop,
           "bootstrap": broker.bootstrap}
    mllp.terminate()
    worker.stop()
    mllp.wait(10)


@pytest.fixture(scope="module")
def sent(stack):
    """Send everything once the ingress listens; the tests below look at what came out."""
    import asyncio

    wait_listening(stack["mllp_port"])
    corpus_ed = [(CORPUS / f).read_bytes() for f in ED_FILES]
    malformed = [b"MSH|^~\\&|ADT|FAC|||20240101||ADT^A04||P|2.5\rPID|1||X"]  # no control id
    messages = corpus_ed * 3 + [m.encode() for m in stack["feed"]] + malformed
    report = asyncio.run(send_messages("127.0.0.1", stack["mllp_port"], messages, connections=3))
    routed = {m.member_id for m in stack["pop"].members if m.organization_id}
    expected_generated = {v for v in ed_visits(stack["feed"])
                          if any(f"|{v[1]}|" in m and m.split("PID|1||")[1].split("^")[0] in routed
                                 for m in stack["feed"] if f"|{v[0]}|" in m)}
    ed = len(expected_generated) + len(ED_FILES)
    expected = ed + 1  # and the corpus ED visit's discharge
    receiver = stack["receiver"]
    wait_for(lambda: len({r.headers["webhook-id"] for r in receiver.requests}) >= expected, 60,
             message=f"{expected} webhooks")
    time.sleep(2)  # anything extra (a duplicate alert) would arrive in this time
    return {"report": report, "expected": expected, "ed": ed, "count": len(messages)}


def test_every_message_gets_an_ack_and_the_bad_one_a_rejection(sent):
    acks = sent["report"].acks
    assert acks[-1] == "AR"
    assert set(acks[:-1]) == {"AA"}


def test_exactly_one_signed_webhook_per_alert(stack, sent):
    receiver = stack["receiver"]
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert len(set(ids)) == sent["expected"]
    assert len(ids) == len(set(ids))  # not even a retry: the endpoint answered 200 at once
    alert_ids = set()
    for request in receiver.requests:
        event = Webhook(receiver.secret).verify(request.body, request.headers)
        assert event["type"] == "adt.ed_visit" or event["data"]["organization_id"] == "ORG-CORPUS"
        alert_ids.add(event["data"]["alert_id"])
    assert len(alert_ids) == sent["expected"]


def test_the_corpus_ed_visits_reach_their_organization(stack, sent):
    events = [Webhook(stack["receiver"].secret).verify(r.body, r.headers) for r in stack["receiver"].requests]
    corpus = [(e["type"], e["data"]["facility"], e["data"]["event_type"]) for e in events
              if e["data"]["organization_id"] == "ORG-CORPUS"]
    assert sorted(corpus) == [("adt.discharge", "LakeMichMC", "A03"), ("adt.ed_visit", "LakeMichMC", "A03"),
                              ("adt.ed_visit", "RDX", "A04")]


def test_the_malformed_message_is_in_the_dead_letter_topic(stack, sent):
    letters = [AvroCodec().decode(m.value(), DeadLetter) for m in read_topic(stack["bootstrap"], topics.DLQ)]
    assert [(d.source, d.reason) for d in letters] == [("mllp", "missing_control_id")]


def test_worker_metrics_count_what_happened(stack, sent):
    text = metrics_text(stack["worker"].web_port)
    routed = f'gapstream_alerts_routed_total{{alert_type="adt.ed_visit",routed="yes"}} {float(sent["ed"])}'
    assert routed in text
    assert 'gapstream_webhook_attempts_total{outcome="success"}' in text
    assert 'gapstream_event_to_webhook_seconds_count{event_type="adt.ed_visit"}' in text
    assert 'gapstream_consumer_lag_messages{group="gapstream",partition="0",topic="adt.raw"}' in text
    assert 'gapstream_sql_table_rows{table="alerts"}' in text
    assert 'gapstream_messages_in_total{topic="adt.raw"}' in text
    for line in text.splitlines():  # no member identifier ever becomes a label value
        assert "M011" not in line and "33333" not in line and "MRN12345" not in line


def test_undecodable_pipeline_messages_are_dead_lettered(stack, sent):
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": stack["bootstrap"]})
    producer.produce(topics.ADT_EVENTS, key=b"k", value=b"\xc3\x01" + b"\xee" * 8 + b"body")
    producer.produce(topics.ALERTS, key=b"k", value=b'{"not": "avro"}')
    producer.flush(10)

    port = stack["worker"].web_port
    counted = ['gapstream_dead_letters_total{reason="unknown_schema",source="adt.events"} 1.0',
               'gapstream_dead_letters_total{reason="unknown_framing",source="alerts"} 1.0']
    # The counters say the agents dead-lettered both (cheap to poll on a loaded machine)...
    wait_for(lambda: all(c in metrics_text(port) for c in counted), 60, message="dead letters counted")

    def letters():
        try:
            messages = read_topic(stack["bootstrap"], topics.DLQ, 20)
        except ReadTimeout:  # a slow read on a loaded machine: try again until the wait is over
            return False
        found = {(d.source, d.reason) for d in (AvroCodec().decode(m.value(), DeadLetter) for m in messages)}
        return found >= {("adt.events", "unknown_schema"), ("alerts", "unknown_framing")} and found
    # ...and the topic holds them, with their reasons.
    wait_for(letters, 90, message="dead letters on the topic")

def test_ed_visits_without_discharge_close_automatically(broker, tmp_path):
    worker = start_worker(broker.bootstrap, tmp_path, GAPSTREAM_APP_ID="gapstream-autoclose",
                          GAPSTREAM_ED_VISIT_AUTOCLOSE_S="2", GAPSTREAM_VISIT_SWEEP_INTERVAL_S="0.5")
    try:
        # The A04 registration from the corpus never gets its A03: it must close by itself.
        wait_for(lambda: (health(worker.web_port) or {}).get("visits", {}).get("auto_closed", 0) >= 1, 60,
                 message="the undischarged ED visit to be closed")
        visits = health(worker.web_port)["visits"]
        assert visits.get("discharged", 0) >= 1  # discharged visits stay as they were
    finally:
        worker.stop()
