"""The schema, attribution history, gaps and reports on real SQLite and PostgreSQL (the outbox: test_outbox.py)."""

import time
from unittest import mock

from sqlalchemy import inspect


def test_migrations_create_the_schema(store):
    tables = set(inspect(store.engine).get_table_names())
    assert {"alerts", "subscriptions", "deliveries", "delivery_attempts", "alembic_version"} <= tables


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


def test_a_gap_keeps_its_latest_revision_whatever_order_alerts_arrive_in(store):
    from streams.models import GapInfo

    def info(status, revision):
        return GapInfo(gap_id="FMC|F|V1", measure_id="FMC", measure_title="t", trigger_id="F|V1", status=status,
                       window_start="2026-03-01", due="2026-03-08", revision=revision)

    store.gaps.record_many([("M1", info("closed", 2))])
    store.gaps.record_many([("M1", info("open", 1))])  # late, older: ignored
    assert [g.status for g in store.gaps.for_member("M1")] == ["closed"]
    assert store.gaps.for_member("M1", status="open") == []
    store.gaps.record_many([("M1", info("open", 3))])  # re-opened by a void
    assert [g.revision for g in store.gaps.for_member("M1", status="open")] == [3]


def test_reports_count_the_gaps_of_members_attributed_now_and_the_directory_keeps_the_latest(store):
    from streams.models import GapInfo, Provider

    def info(measure, trigger, status, due):
        return GapInfo(gap_id=f"{measure}|{trigger}", measure_id=measure, measure_title="t", trigger_id=trigger,
                       status=status, window_start="2026-01-01", due=due, revision=1)

    store.attribution.record_many([change("M1", "ORG-A", 1, "2025-01-01", "1000000001"),
                                   change("M2", "ORG-B", 2, "2025-01-01", "1000000002")])
    store.gaps.record_many([("M1", info("COL-E", "2026", "open", "2026-12-31"))])
    store.gaps.record_many([("M1", info("FMC", "V1", "closed", "2026-03-08"))])
    store.gaps.record_many([("M2", info("COL-E", "2026", "open", "2026-12-31"))])
    store.gaps.record_many([("M2", info("COL-E", "2025", "missed", "2025-12-31"))])
    assert [(m, g.gap_id) for m, _, g in store.gaps.of_organization("ORG-A")] == [("M1", "COL-E|2026")]
    assert sorted(store.gaps.outcomes(2026)) == [("1000000001", "COL-E", "open"), ("1000000001", "FMC", "closed"),
                                                 ("1000000002", "COL-E", "open")]  # not last year's
    store.directory.record_many([Provider(npi="1000000001", name="Old", role="PRIMARY_CARE_PHYSICIAN"),
                                 Provider(npi="1000000001", name="New", role="SPECIALIST", taxonomy="207RC0000X")])
    store.directory.record_many([Provider(npi="1000000001", name="New", role="SPECIALIST", taxonomy="207RC0000X")])
    row = store.directory.all()["1000000001"]
    assert (row.name, row.role, row.taxonomy) == ("New", "SPECIALIST", "207RC0000X")


def test_subscriptions_and_deliveries_from_before_0005_are_carried_over(tmp_path):
    from sqlalchemy import text

    from sinks.sql.migrate import upgrade
    from sinks.sql.sealing import Sealer
    from sinks.sql.store import Store, make_engine

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    upgrade(engine, "0004")
    with engine.begin() as c:
        c.execute(text("INSERT INTO subscriptions (id, organization_id, url, secret, active, created_at, event_types) "
                       "VALUES ('sub_old', 'ORG1', 'https://hooks.example.org/h', 'whsec_x', 0, 1.0, 'adt.*')"))
        c.execute(text("INSERT INTO alerts (alert_id, alert_type, member_id, organization_id, facility, event_type, "
                       "received_at_ms, created_at_ms, payload) VALUES ('a1', 'adt.ed_visit', 'M1', 'ORG1', 'F', "
                       "'A04', 5000, 5000, '{}')"))
        c.execute(text("INSERT INTO deliveries (webhook_id, alert_id, subscription_id, event_type, body, "
                       "received_at_ms, status, attempts, next_attempt_at) VALUES ('msg_1', 'a1', 'sub_old', "
                       "'adt.ed_visit', '{}', 5000, 'failed', 5, 0)"))
    engine.dispose()
    sealer = Sealer.generate()
    store = Store(url, sealer)
    with engine.connect() as c:  # the secret stored in clear before is sealed by the upgrade
        stored = c.execute(text("SELECT secret FROM subscriptions")).scalar_one()
    assert stored.startswith("fernet:") and sealer.open(stored) == "whsec_x"
    [sub] = store.subscriptions.of("ORG1")
    assert (sub["status"], sub["event_types"]) == ("paused", ["adt.*"])
    [d] = store.deliveries()
    assert (d.status, d.organization_id, d.member_id, d.created_at) == ("exhausted", "ORG1", "M1", 5.0)


def test_a_roster_loaded_twice_assigns_once_and_refuses_organizations_no_one_knows(store):
    from streams.models import Provider, RosterEntry

    store.subscriptions.add_organization("ORG-A", "A", "test")
    store.directory.record_many([Provider(npi="1000000001", name="Dr B", role="PRIMARY_CARE_PHYSICIAN",
                                          organization_id="ORG-B")])
    roster = [RosterEntry(member_id=m, organization_id=org)
              for m, org in (("M1", "ORG-A"), ("M2", "ORG-B"), ("M3", "ORG-TYPO"), ("M4", "ORG-TYPO"))]
    first = store.attribution.assign(roster, "cli:plan", "roster 1", "2026-01-01")
    assert [(o.member_id, o.organization_id) for o in first.overrides] == [("M1", "ORG-A"), ("M2", "ORG-B")]
    assert (first.already_assigned, first.unknown_organizations) == (0, {"ORG-TYPO": 2})
    # Again, as after a failed publish: the same overrides, nothing recorded twice.
    again = store.attribution.assign(roster, "cli:plan", "roster 1", "2026-01-01")
    assert [o.dispute_id for o in again.overrides] == [o.dispute_id for o in first.overrides]
    assert again.already_assigned == 2 and len(store.attribution.disputes(member_id="M1")) == 1
    # Without dates, loaded on one day and again on another: the second finds the first in force.
    undated = store.attribution.assign(roster[1:2], "cli:plan", "roster 3")
    with mock.patch("sinks.sql.attribution._now", return_value="2099-01-01T00:00:00Z"):
        next_day = store.attribution.assign(roster[1:2], "cli:plan", "roster 3")
    assert [o.dispute_id for o in next_day.overrides] == [o.dispute_id for o in undated.overrides]
    assert next_day.already_assigned == 1
    # Other dates are another assignment.
    later = store.attribution.assign(roster[:1], "cli:plan", "roster 2", "2026-07-01")
    assert later.already_assigned == 0 and len(store.attribution.disputes(member_id="M1")) == 2


def test_subscriptions_from_before_0008_are_sent_by_the_dispatcher_their_endpoint_hashes_to(tmp_path):
    from sqlalchemy import text

    from sinks.sql.migrate import upgrade
    from sinks.sql.outbox import Shard
    from sinks.sql.sealing import Sealer
    from sinks.sql.store import Store, make_engine
    from sinks.webhooks.egress import Egress
    from streams.models import Alert

    url, sealer = f"sqlite:///{tmp_path / 'old.db'}", Sealer.generate()
    engine = make_engine(url)
    upgrade(engine, "0007")
    ports = range(9000, 9006)
    with engine.begin() as c:
        c.execute(text("INSERT INTO organizations (id, name, plan_level, created_at) VALUES ('ORG1', 'O', 0, 1.0)"))
        for port in ports:
            c.execute(text(
                "INSERT INTO subscriptions (id, organization_id, url, endpoint, secret, status, event_types, filters, "
                "payload_format, scope, events_since_start, last_sent_at, created_at) VALUES (:id, 'ORG1', :url, "
                ":endpoint, :secret, 'active', '*', '{}', 'json-full', 'attributed', 0, 0, 1.0)"),
                {"id": f"sub_{port}", "url": f"http://127.0.0.1:{port}/h", "endpoint": f"http://127.0.0.1:{port}",
                 "secret": sealer.seal("whsec_x")})
    engine.dispose()
    store = Store(url, sealer, egress=Egress(["127.0.0.1"]))
    store.outbox.save_alerts([Alert(alert_id="a1", alert_type="adt.ed_visit", facility="F", event_type="A04",
                                    received_at_ms=5000, created_at_ms=5000, member_id="M1", organization_id="ORG1")])
    claims = [store.outbox.claim_due(time.time() + 1, 30, {}, 4, shard=Shard(i, 2)).jobs for i in range(2)]
    # Each subscription's delivery is claimed once, and not all by one dispatcher (a hash left at
    # its default would give every endpoint to the first).
    assert sorted(j.subscription_id for jobs in claims for j in jobs) == [f"sub_{port}" for port in ports]
    assert all(claims)
