"""Alerts, subscriptions and the delivery outbox on real SQLite and PostgreSQL."""
import os
import time

import pytest
from sqlalchemy import inspect

from sinks.sql.models import Base
from sinks.sql.store import Store, webhook_id
from sinks.webhooks.payloads import alert_body
from streams.models import Alert
from tests import postgres


@pytest.fixture(scope="module")
def pg_server():
    if postgres.bin_dir() is None and not os.environ.get("CI"):
        pytest.skip("no PostgreSQL server installed here (CI installs it)")
    server = postgres.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        yield Store(f"sqlite:///{tmp_path / 'g.db'}")
        return
    server = request.getfixturevalue("pg_server")
    s = Store(server.url)
    yield s
    Base.metadata.drop_all(s.engine)
    with s.engine.begin() as c:
        c.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    s.engine.dispose()


def alert(alert_id="a1", org="ORG1"):
    return Alert(alert_id=alert_id, alert_type="adt.ed_visit", facility="F", event_type="A04",
                 received_at_ms=int(time.time() * 1000), created_at_ms=int(time.time() * 1000),
                 member_id="M1", organization_id=org)


def test_migrations_create_the_schema(store):
    tables = set(inspect(store.engine).get_table_names())
    assert {"alerts", "subscriptions", "deliveries", "delivery_attempts", "alembic_version"} <= tables


def test_saving_an_alert_twice_stores_it_once(store):
    sub = store.add_subscription("ORG1", "http://127.0.0.1:9/hook", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    first = store.save_alert(alert(), alert_body)
    again = store.save_alert(alert(), alert_body)
    assert first == again == [webhook_id("a1", sub)]
    assert len(store.alerts()) == 1 and len(store.deliveries()) == 1


def test_alert_without_organization_is_stored_without_deliveries(store):
    store.add_subscription("ORG1", "http://127.0.0.1:9/hook", "whsec_x")
    assert store.save_alert(alert(org=None), alert_body) == []
    assert [a.alert_id for a in store.alerts()] == ["a1"]
    assert store.deliveries() == []


def test_only_the_members_organization_gets_a_delivery(store):
    store.add_subscription("ORG1", "http://127.0.0.1:9/a", "whsec_x")
    other = store.add_subscription("ORG2", "http://127.0.0.1:9/b", "whsec_y")
    store.save_alert(alert(org="ORG1"), alert_body)
    assert all(d.subscription_id != other for d in store.deliveries())


def test_claimed_deliveries_are_leased(store):
    store.add_subscription("ORG1", "http://127.0.0.1:9/hook", "whsec_x")
    store.save_alert(alert(), alert_body)
    now = time.time() + 1
    assert len(store.claim_due(now, lease_s=30)) == 1
    assert store.claim_due(now, lease_s=30) == []  # leased: nobody else sends it meanwhile
    assert len(store.claim_due(now + 31, lease_s=30)) == 1  # lease expired: a crashed sender's work resumes


def test_attempts_are_recorded_until_delivered(store):
    store.add_subscription("ORG1", "http://127.0.0.1:9/hook", "whsec_x")
    store.save_alert(alert(), alert_body)
    job = store.claim_due(time.time() + 1, 30)[0]
    store.record_attempt(job, "http_error", 500, 3.0, "HTTP 500", next_attempt_at=time.time())
    job = store.claim_due(time.time() + 1, 30)[0]
    assert job.attempts == 1
    store.record_attempt(job, "success", 200, 2.0, None, None)
    [delivery] = store.deliveries()
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    attempts = [(a.outcome, a.status_code) for a in store.attempts(job.webhook_id)]
    assert attempts == [("http_error", 500), ("success", 200)]
    assert store.claim_due(time.time() + 100, 30) == []


def change(member, org, at_ms, day, npi=None):
    from streams.models import AttributionChange

    return AttributionChange(member_id=member, new_organization_id=org, new_npi=npi, rule="plurality", reason="r",
                             effective_date=day, explanation="{}", changed_at_ms=at_ms, method_id="m")


def test_attribution_history_is_kept_in_periods_and_redelivery_changes_nothing(store):
    attribution = store.attribution
    batch = [change("M1", "ORG-A", 1, "2025-01-01"), change("M2", "ORG-B", 2, "2025-01-01"),
             change("M1", "ORG-B", 3, "2025-03-01"), change("M2", None, 4, "2025-04-01")]
    attribution.record_many(batch[:2])
    attribution.record_many(batch[1:])  # M2's first change is delivered twice
    attribution.record_many([change("M1", "ORG-C", 5, "2025-06-01")])
    attribution.record_many([change("M1", "ORG-C", 5, "2025-06-01")])  # and a whole batch again
    assert [(h.organization_id, h.start_date, h.end_date) for h in attribution.history("M1")] == [
        ("ORG-A", "2025-01-01", "2025-03-01"), ("ORG-B", "2025-03-01", "2025-06-01"), ("ORG-C", "2025-06-01", None)]
    assert [(h.organization_id, h.end_date) for h in attribution.history("M2")] == [("ORG-B", "2025-04-01")]
    assert (attribution.current("M1").organization_id, attribution.current("M2").organization_id) == ("ORG-C", None)
    assert [c.member_id for c in attribution.members_of("ORG-C")] == ["M1"]


def test_a_subscription_receives_only_the_alert_types_it_asked_for(store):
    adt_only = store.add_subscription("ORG1", "http://127.0.0.1:9/a", "whsec_x", "adt.*")
    everything = store.add_subscription("ORG1", "http://127.0.0.1:9/b", "whsec_y")
    gap = alert("g1")
    gap.alert_type = "gap.opened"
    store.save_alert(alert(), alert_body)
    store.save_alert(gap, alert_body)
    assert sorted((d.subscription_id == adt_only, d.event_type) for d in store.deliveries()) == [
        (False, "adt.ed_visit"), (False, "gap.opened"), (True, "adt.ed_visit")]
    assert everything


def test_a_gap_keeps_its_latest_revision_whatever_order_alerts_arrive_in(store):
    from streams.models import GapInfo

    def info(status, revision):
        return GapInfo(gap_id="FMC|F|V1", measure_id="FMC", measure_title="t", trigger_id="F|V1", status=status,
                       window_start="2026-03-01", due="2026-03-08", revision=revision)

    store.gaps.record("M1", info("closed", 2))
    store.gaps.record("M1", info("open", 1))  # late, older: ignored
    assert [g.status for g in store.gaps.for_member("M1")] == ["closed"]
    assert store.gaps.for_member("M1", status="open") == []
    store.gaps.record("M1", info("open", 3))  # re-opened by a void
    assert [g.revision for g in store.gaps.for_member("M1", status="open")] == [3]


def test_reports_count_the_gaps_of_members_attributed_now_and_the_directory_keeps_the_latest(store):
    from streams.models import GapInfo, Provider

    def info(measure, trigger, status, due):
        return GapInfo(gap_id=f"{measure}|{trigger}", measure_id=measure, measure_title="t", trigger_id=trigger,
                       status=status, window_start="2026-01-01", due=due, revision=1)

    store.attribution.record_many([change("M1", "ORG-A", 1, "2025-01-01", "1000000001"),
                                   change("M2", "ORG-B", 2, "2025-01-01", "1000000002")])
    store.gaps.record("M1", info("COL-E", "2026", "open", "2026-12-31"))
    store.gaps.record("M1", info("FMC", "V1", "closed", "2026-03-08"))
    store.gaps.record("M2", info("COL-E", "2026", "open", "2026-12-31"))
    store.gaps.record("M2", info("COL-E", "2025", "missed", "2025-12-31"))
    assert [(m, g.gap_id) for m, _, g in store.gaps.of_organization("ORG-A")] == [("M1", "COL-E|2026")]
    assert sorted(store.gaps.outcomes(2026)) == [("1000000001", "COL-E", "open"), ("1000000001", "FMC", "closed"),
                                                 ("1000000002", "COL-E", "open")]  # not last year's
    store.directory.record_many([Provider(npi="1000000001", name="Old", role="PRIMARY_CARE_PHYSICIAN"),
                                 Provider(npi="1000000001", name="New", role="SPECIALIST", taxonomy="207RC0000X")])
    store.directory.record_many([Provider(npi="1000000001", name="New", role="SPECIALIST", taxonomy="207RC0000X")])
    row = store.directory.all()["1000000001"]
    assert (row.name, row.role, row.taxonomy) == ("New", "SPECIALIST", "207RC0000X")
