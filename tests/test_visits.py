"""Visit-state rules: one ED alert per visit, and one admission and one discharge alert, whatever the
feed repeats."""
from streams.adt.visits import ADMIT, CANCELLED, DISCHARGE, ED_VISIT, VisitState, alert_id, apply, expire
from streams.models import AdtEvent, Diagnosis


def adt(event_type, control_id, patient_class="E", visit="V1", emergency=None, facility_type=None):
    return AdtEvent(message_control_id=control_id, event_type=event_type, sending_facility="FAC",
                    received_at_ms=1000, member_id="M1", patient_class=patient_class, visit_number=visit,
                    emergency=patient_class == "E" if emergency is None else emergency,
                    facility_type=facility_type)


def run(*events):
    state, alerts = None, []
    for i, e in enumerate(events):
        outcome = apply(state, e, now_ms=10_000 + i)
        state = outcome.state
        alerts += outcome.alerts
    return state, alerts


def test_ed_registration_raises_one_alert():
    state, alerts = run(adt("A04", "1"))
    assert [a.alert_type for a in alerts] == [ED_VISIT]
    assert alerts[0].alert_id == alert_id(ED_VISIT, "FAC|V1")
    assert state.alerts_raised == [ED_VISIT]


def test_resent_messages_and_update_storms_raise_nothing_more():
    events = [adt("A04", "1"), adt("A04", "1"), adt("A04", "2")] + [adt("A08", str(i)) for i in range(3, 20)]
    events += [adt("A03", "30"), adt("A03", "31")]
    state, alerts = run(*events)
    assert [a.alert_type for a in alerts] == [ED_VISIT, DISCHARGE]
    assert state.status == "discharged"


def test_repeated_control_id_is_a_duplicate_without_state_change():
    state, _ = run(adt("A04", "1"))
    before = state.to_dict()
    outcome = apply(state, adt("A04", "1"), now_ms=99_999)
    assert outcome.duplicate and not outcome.alerts
    assert outcome.state.to_dict() == before


def test_discharge_from_an_emergency_facility_alone_is_an_ed_visit():
    _, alerts = run(adt("A03", "1", patient_class=None, emergency=True, facility_type="261QE0002X"))
    assert [(a.alert_type, a.event_type) for a in alerts] == [(ED_VISIT, "A03"), (DISCHARGE, "A03")]


def test_inpatient_admission_is_not_an_ed_visit_but_an_admission_and_a_discharge():
    _, alerts = run(adt("A01", "1", patient_class="I"), adt("A08", "2", patient_class="I"),
                    adt("A03", "3", patient_class="I"))
    assert [(a.alert_type, a.event_type) for a in alerts] == [(ADMIT, "A01"), (DISCHARGE, "A03")]
    assert alerts[0].alert_id == alert_id(ADMIT, "FAC|V1") != alerts[1].alert_id


def test_admitted_from_the_ed_raises_the_visit_then_the_admission():
    events = [adt("A04", "1"), adt("A06", "2", patient_class="I", emergency=True), adt("A03", "3", patient_class="I")]
    _, alerts = run(*events)
    assert [(a.alert_type, a.event_type) for a in alerts] == [(ED_VISIT, "A04"), (ADMIT, "A06"), (DISCHARGE, "A03")]


def test_an_outpatient_visit_raises_nothing():
    _, alerts = run(adt("A04", "1", patient_class="O"), adt("A08", "2", patient_class="O"),
                    adt("A03", "3", patient_class="O"))
    assert alerts == []


def test_admission_with_emergency_class_is_an_ed_visit():
    _, alerts = run(adt("A01", "1", patient_class="E"))
    assert len(alerts) == 1


def test_cancels_are_recorded():
    state, alerts = run(adt("A04", "1"), adt("A11", "2"))
    assert state.status == "cancelled"
    assert state.cancellations[0]["cancels"] == "admit"
    state, _ = run(adt("A04", "1"), adt("A03", "2"), adt("A13", "3"))
    assert state.status == "open" and state.discharge_time is None
    assert [c["event_type"] for c in state.cancellations] == ["A13"]


def test_a_cancel_withdraws_the_alerts_it_undoes_and_a_new_event_raises_them_again():
    _, alerts = run(adt("A04", "1"), adt("A11", "2"), adt("A11", "2"))  # the A11 resent: one notice
    visit, cancel = alerts
    assert (cancel.alert_type, cancel.cancels_alert_id, cancel.cancels_alert_type) == (
        CANCELLED, visit.alert_id, ED_VISIT)
    _, again = run(adt("A04", "1"), adt("A11", "2"), adt("A04", "3"))  # registered again after all
    assert [a.alert_type for a in again] == [ED_VISIT, CANCELLED, ED_VISIT]
    assert again[2].alert_id not in (again[0].alert_id, again[1].alert_id)  # a new alert, not a replay
    _, discharged = run(adt("A01", "1", "I"), adt("A03", "2", "I"), adt("A13", "3", "I"), adt("A03", "4", "I"))
    assert [(a.alert_type, a.cancels_alert_type) for a in discharged] == [
        (ADMIT, None), (DISCHARGE, None), (CANCELLED, DISCHARGE), (DISCHARGE, None)]
    assert discharged[2].cancels_alert_id == discharged[1].alert_id != discharged[3].alert_id
    assert run(adt("A03", "1", "O"), adt("A13", "2", "O"))[1] == []  # nothing was sent: nothing to withdraw
    _, both = run(adt("A04", "1"), adt("A06", "2", "I"), adt("A11", "3", "I"))  # admitted from the ED, cancelled
    withdrawn = [a for a in both if a.alert_type == CANCELLED]
    assert sorted(a.cancels_alert_type for a in withdrawn) == [ADMIT, ED_VISIT]
    assert len({a.alert_id for a in withdrawn}) == 2  # two notices, not one id kept twice


def test_a_cancel_withdraws_what_care_gaps_were_told_and_a_new_event_tells_them_again():
    def told(*events):
        return encounters(*(timed(e, "2026-03-01T10:00:00") for e in events),
                          fields=("kind", "withdrawn", "encounter_id"))

    # Raised again, it is a new encounter, under the key its new alert's id is made from.
    assert told(adt("A04", "1"), adt("A11", "2"), adt("A11", "2"), adt("A04", "3")) == [
        ("ed_visit", False, "FAC|V1"), ("ed_visit", True, "FAC|V1"), ("ed_visit", False, "FAC|V1|1")]
    assert told(adt("A01", "1", "I"), adt("A03", "2", "I"), adt("A13", "3", "I"), adt("A03", "4", "I")) == [
        ("inpatient_admission", False, "FAC|V1"), ("inpatient_discharge", False, "FAC|V1"),
        ("inpatient_discharge", True, "FAC|V1"), ("inpatient_discharge", False, "FAC|V1|1")]
    assert told(adt("A03", "1", "O"), adt("A13", "2", "O")) == []  # never told: nothing to withdraw


def test_a_different_visit_raises_its_own_alert():
    _, a1 = run(adt("A04", "1", visit="V1"))
    _, a2 = run(adt("A04", "1", visit="V2"))
    assert a1[0].alert_id != a2[0].alert_id


def test_alert_ids_are_stable_across_runs():
    _, first = run(adt("A04", "1"))
    _, again = run(adt("A08", "0"), adt("A04", "9"))
    assert first[0].alert_id == again[0].alert_id


def test_undischarged_ed_visits_close_after_the_configured_time():
    state, _ = run(adt("A04", "1"))
    assert not expire(state, now_ms=state.last_seen_ms + 59_000, after_s=60)
    assert expire(state, now_ms=state.last_seen_ms + 60_000, after_s=60)
    assert state.status == "auto_closed"
    discharged, _ = run(adt("A04", "1"), adt("A03", "2"))
    assert not expire(discharged, now_ms=discharged.last_seen_ms + 10**9, after_s=60)


def test_state_round_trips_through_a_dict():
    state, _ = run(adt("A04", "1"), adt("A11", "2"))
    assert VisitState.from_dict(state.to_dict()) == state


def encounters(*events, fields=("kind", "day", "member_id")):
    state, found = None, []
    for i, e in enumerate(events):
        outcome = apply(state, e, now_ms=10_000 + i)
        state, found = outcome.state, found + outcome.encounters
    return [tuple(getattr(e, f) for f in fields) for e in found]


def timed(event, when):
    event.admit_time, event.event_time = when, when
    return event


def test_care_gaps_hear_of_an_ed_visit_once_and_of_the_admission_that_followed():
    assert encounters(timed(adt("A04", "1"), "2026-03-01T22:10:00-05:00"), adt("A08", "2"), adt("A04", "3"),
                      timed(adt("A06", "4", patient_class="I"), "2026-03-02T01:00:00-05:00"),
                      timed(adt("A03", "5", patient_class="I"), "2026-03-05T11:00:00-05:00")) == [
        ("ed_visit", "2026-03-01", "M1"), ("inpatient_admission", "2026-03-02", "M1"),
        ("inpatient_discharge", "2026-03-05", "M1")]


def test_a_visit_without_a_member_id_tells_care_gaps_nothing():
    event = timed(adt("A04", "1"), "2026-03-01T10:00:00")
    event.member_id = None
    assert encounters(event) == []


def test_an_ed_visit_tells_care_gaps_its_icd10_diagnoses_principal_first():
    event = timed(adt("A04", "1"), "2026-03-01T10:00:00")
    event.diagnoses = [Diagnosis("F32.9", "I10"), Diagnosis("296.20", "I9"), Diagnosis("R45.851", None)]
    [encounter] = apply(None, event, now_ms=1).encounters
    assert encounter.diagnoses == ["F32.9", "R45.851"]


def test_diagnoses_sent_after_registration_reach_care_gaps_once():
    later = timed(adt("A08", "2"), "2026-03-01T10:00:00")
    later.diagnoses = [Diagnosis("F32.9", "I10")]
    again = timed(adt("A08", "3"), "2026-03-01T11:00:00")
    again.diagnoses = [Diagnosis("I10", "I10")]
    state, sent = None, []
    for i, event in enumerate([timed(adt("A04", "1"), "2026-03-01T09:00:00"), later, again]):
        outcome = apply(state, event, now_ms=i)
        state, sent = outcome.state, sent + outcome.encounters
    assert [(e.kind, e.diagnoses) for e in sent] == [("ed_visit", []), ("ed_visit", ["F32.9"])]


def test_an_icd9_principal_leaves_no_principal_rather_than_promoting_a_secondary_code():
    event = timed(adt("A04", "1"), "2026-03-01T10:00:00")
    event.diagnoses = [Diagnosis("296.20", "I9"), Diagnosis("F32.9", "I10")]
    [encounter] = apply(None, event, now_ms=1).encounters
    assert encounter.diagnoses == []
