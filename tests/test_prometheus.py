"""Every PromQL expression of the Grafana dashboards and the alert rules, evaluated by a real
Prometheus (Debian's package) that scrapes a worker and the MLLP ingress on the embedded stack
while care-gap, ED and malformed traffic flows: each expression must parse, every dashboard query
must return data, and the rules must evaluate without error."""
import asyncio
import datetime as dt
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from streams.kafka.broker import die_with_parent, free_port
from streams.models import EligibilitySpan
from streams.sources.publish import publish
from streams.tools.demo import wait_listening
from streams.tools.generate import AdtFeed
from tests.claims_factory import visit
from tests.helpers import call, plan_token, start_worker, wait_for
from tests.test_caregaps_e2e import PATIENT, PCP, SCREENED, fmc, subscribed_patient, webhooks

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent


def dashboard_queries() -> list[tuple[str, str]]:
    found = []
    for file in sorted((ROOT / "deploy/grafana/dashboards").glob("*.json")):
        for panel in json.loads(file.read_text())["panels"]:
            found += [(f"{file.stem}: {panel['title']}", t["expr"]) for t in panel["targets"]]
    return found


def rule_queries() -> list[tuple[str, str]]:
    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules/gapstream.yml").read_text())
    return [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]


@pytest.fixture(scope="module")
def prometheus_binary():
    found = shutil.which("prometheus")
    if found is None and not os.environ.get("CI"):
        pytest.skip("no Prometheus server installed here (CI installs Debian's prometheus package)")
    assert found, "prometheus missing: scripts/test installs the prometheus package"
    return found


BROKEN = "MSH|^~\\&|BROKEN\rPID|1"  # no message control id: answered AR and dead-lettered


def ed_message(visit_number: str) -> str:
    at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    return AdtFeed(random.Random(visit_number)).message("A04", PATIENT, "STMARYS", visit_number, "E", at)


def send(worker, mllp_port: int, data_dir: Path, messages: list[str]) -> dict[str, int]:
    """Through `gapstream send`, as an integration team would; the ACK codes counted."""
    feed = data_dir / "adt.hl7"
    feed.write_bytes("\n".join(messages).encode())
    sent = subprocess.run([sys.executable, "-m", "streams.cli", "send", str(feed), "--port", str(mllp_port)],
                          env=worker.env, capture_output=True, text=True, timeout=60)
    acks = json.loads(sent.stdout)["acks"]
    assert sent.returncode == (0 if set(acks) == {"AA"} else 1), sent.stderr
    return acks


@pytest.fixture(scope="module")
def traffic(broker, tmp_path_factory):
    """A worker and the MLLP ingress on the embedded broker, with an attributed member whose ED visit
    opens the FMC follow-up gap, a follow-up claim that closes it, a malformed HL7 message, and a
    member due for colorectal screening (an open gap)."""
    data_dir = tmp_path_factory.mktemp("prometheus-stack")
    worker = start_worker(broker.bootstrap, data_dir)
    receiver = subscribed_patient(broker.bootstrap, worker)
    mllp_port, mllp_metrics_port = free_port(), free_port()
    mllp = subprocess.Popen([sys.executable, "-m", "streams.cli", "mllp", "--port", str(mllp_port)],
                            env={**worker.env, "GAPSTREAM_MLLP_METRICS_PORT": str(mllp_metrics_port)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
    wait_listening(mllp_port)
    plan = plan_token(worker.env)
    wait_for(lambda: call(worker.web_port, f"/attribution/{PATIENT.member_id}", token=plan)[1].get("current"), 60,
             message="member attributed")

    assert send(worker, mllp_port, data_dir, [ed_message("V-P1"), BROKEN]) == {"AA": 1, "AR": 1}
    [gap] = wait_for(lambda: fmc(receiver, "gap.opened"), 60, message="FMC gap opened")
    asyncio.run(publish(broker.bootstrap, [visit("pf1", PCP, gap["window_start"], code="99214",
                                                 member=PATIENT.member_id)]))
    wait_for(lambda: fmc(receiver, "gap.closed"), 60, message="FMC gap closed")
    # A 60-year-old's colorectal screening: a gap that stays open, next to the closed one.
    asyncio.run(publish(broker.bootstrap, [EligibilitySpan(
        member_id=SCREENED, payer="PLAN", product_line="COMMERCIAL", coverage_start="2020-01-01",
        birth_date="1966-03-03", sex="F", selected_pcp_npi=PCP, received_at_ms=1)]))
    wait_for(lambda: [d for kind in ("gap.opened", "gap.due_soon") for d in webhooks(receiver, kind)
                      if d["member_id"] == SCREENED], 60, message="COL-E gap announced")
    yield {"worker": worker.web_port, "mllp": mllp_metrics_port,
           "send": lambda messages: send(worker, mllp_port, data_dir, messages)}
    mllp.terminate()
    worker.stop()
    mllp.wait(10)


@pytest.fixture(scope="module")
def prometheus(prometheus_binary, traffic, tmp_path_factory):
    """Prometheus with the repository's rules, scraping every second."""
    work = tmp_path_factory.mktemp("prometheus")
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(ROOT / "deploy/prometheus/rules/*.yml")]
    targets = {"gapstream-worker": traffic["worker"], "gapstream-mllp": traffic["mllp"]}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [f"127.0.0.1:{targets[job['job_name']]}"]}]
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(work / "prometheus.log", "wb")
    proc = subprocess.Popen([prometheus_binary, f"--config.file={work / 'prometheus.yml'}",
                             f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    url = f"http://127.0.0.1:{port}"

    def scraped_enough() -> bool:
        try:
            result = query(url, "count_over_time(up[1m])")["data"]["result"]
        except (httpx.HTTPError, ValueError):  # not listening yet, or 503 while its storage opens
            return False
        # Both targets up, with enough samples for rate() and deriv() over them.
        return len(result) == 2 and all(float(r["value"][1]) >= 6 for r in result) and \
            all(float(v["value"][1]) == 1 for v in query(url, "up")["data"]["result"])

    try:
        wait_for(scraped_enough, 60, message="Prometheus scraping both targets")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def query(url: str, expr: str) -> dict:
    return httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()


@pytest.mark.parametrize("where,expr", dashboard_queries(), ids=[w for w, _ in dashboard_queries()])
def test_every_dashboard_query_returns_data(prometheus, where, expr):
    answer = query(prometheus, expr)
    assert answer["status"] == "success", answer
    assert answer["data"]["result"], f"{where}: no data for {expr}"


@pytest.mark.parametrize("alert,expr", rule_queries(), ids=[a for a, _ in rule_queries()])
def test_every_alert_rule_parses_and_evaluates(prometheus, alert, expr):
    answer = query(prometheus, expr)
    assert answer["status"] == "success", answer


def test_the_rules_are_loaded_and_healthy_and_a_dead_letter_fires_its_alert(prometheus, traffic):
    def evaluated():
        groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return rules if rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules) else None

    wait_for(evaluated, 30, message="every rule evaluated once")
    rules = evaluated()
    assert {r["name"] for r in rules} == {a for a, _ in rule_queries()}
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
    states = {r["name"]: r["state"] for r in rules}
    # The one earlier dead letter came before the first scrape, so nothing has grown since.
    assert states["GapstreamDeadLettersGrowing"] == "inactive"
    assert traffic["send"]([BROKEN]) == {"AR": 1}
    wait_for(lambda: {r["name"]: r["state"] for r in evaluated() or []}.get("GapstreamDeadLettersGrowing") == "firing",
             30, message="GapstreamDeadLettersGrowing firing")


def test_a_query_that_does_not_parse_is_reported(prometheus):
    assert query(prometheus, "sum by (topic (rate(gapstream_messages_in_total[5m]))")["status"] == "error"
