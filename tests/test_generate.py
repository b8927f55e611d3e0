"""The synthetic population and feed: deterministic, realistic, and parseable."""
import datetime as dt
from collections import Counter

from streams.adt.parse import parse_adt
from streams.adt.visits import ED_VISIT, apply
from streams.tools.generate import adt_feed, ed_visits, npi, population


def test_same_seed_and_start_same_feed():
    start = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
    a = adt_feed(population(5, 300), 5, 50, start)
    assert a == adt_feed(population(5, 300), 5, 50, start)
    assert a != adt_feed(population(6, 300), 6, 50, start)


def test_npis_pass_the_luhn_check():
    import random

    for _ in range(50):
        number = npi(random.Random(_))
        digits = [int(d) for d in "80840" + number]
        total = sum(d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(reversed(digits)))
        assert len(number) == 10 and total % 10 == 0


def test_feed_has_the_mess_an_hie_sends():
    pop = population(9, 1000)
    feed = adt_feed(pop, 9, 400)
    events = [parse_adt(m.encode(), 0) for m in feed]
    kinds = Counter(e.event_type for e in events)
    assert kinds["A08"] > kinds["A04"] > 0 and kinds["A01"] > 0 and kinds["A03"] > 0
    control_ids = Counter(e.message_control_id for e in events)
    assert any(n > 1 for n in control_ids.values())  # resent messages
    assert 0.4 < len(ed_visits(feed)) / 400 < 0.8
    assert 0.05 < sum(1 for m in pop.members if m.organization_id is None) / len(pop.members) < 0.3


def test_ed_visits_matches_what_visit_state_alerts_on():
    feed = adt_feed(population(2, 200), 2, 80)
    states, alerted = {}, set()
    for message in feed:
        event = parse_adt(message.encode(), 0)
        outcome = apply(states.get(event.visit_key), event, 0)
        states[event.visit_key] = outcome.state
        alerted |= {(a.facility, a.visit_number) for a in outcome.alerts if a.alert_type == ED_VISIT}
    assert alerted == ed_visits(feed)
