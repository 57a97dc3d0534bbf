"""AlertPolicy.decide: the rules, tested without MQTT or SQLite."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest

from agent.alerts import (
    Ack,
    AckReceived,
    AlertEvent,
    AlertPolicy,
    AlertSettings,
    CannotAssess,
    Evidence,
    ForecastSeen,
    PatientAlerts,
    PatientResolved,
    TimerTick,
)
from core.errors import ProtocolError

from .alert_builders import evidence, forecast


def make_policy(**defaults: object) -> AlertPolicy:
    counter = itertools.count(1)
    settings = AlertSettings.model_validate({"defaults": defaults})
    return AlertPolicy(settings, new_id=lambda: f"a{next(counter)}")


def run(
    policy: AlertPolicy, af_probs: Sequence[float | tuple[float, float]], state: PatientAlerts | None = None
) -> tuple[PatientAlerts, list[list[AlertEvent]]]:
    """Feed one forecast per probability, 10 s apart; returns the final state and each step's events."""
    state = state or PatientAlerts("P001")
    steps = []
    for i, p in enumerate(af_probs):
        state, events = policy.decide(
            state, ForecastSeen(1000.0 + 10 * i, forecast(af=p, t=600.0 + 10 * i), evidence())
        )
        steps.append(events)
    return state, steps


def test_threshold_with_persistence_raises_one_advisory() -> None:
    state, steps = run(make_policy(), [0.6, 0.7, 0.8])
    assert steps[0] == []  # 1 of 3: not yet
    (event,) = steps[1]
    assert (event.type, event.before, event.reason) == ("new", None, "raised")
    alert = event.after
    assert (alert.state, alert.kind, alert.arrhythmia, alert.priority) == ("raised", "forecast", "af", "low")
    assert (alert.horizon_s, alert.probability, alert.threshold) == (60, 0.7, 0.5)
    assert steps[2] == []  # de-duplicated: still one active alert, no second "new"
    assert [a.alert_id for a in state.active()] == ["a1"]


def test_warming_up_windows_neither_raise_nor_clear() -> None:
    policy, state = make_policy(min_forecast_window_s=300), PatientAlerts("P001")
    for i, window_s in enumerate((60, 120, 240)):  # the stream's first minutes: high risk from short windows
        f = forecast(af=0.9, t=60.0 * (i + 1), window_s=window_s)
        state, events = policy.decide(state, ForecastSeen(1000.0 + 60 * i, f, evidence()))
        assert events == []
    state, events = policy.decide(state, ForecastSeen(1200.0, forecast(af=0.9, t=300.0), evidence()))
    assert events == []  # persistence starts at the first full window: 1 of 3
    state, events = policy.decide(state, ForecastSeen(1260.0, forecast(af=0.9, t=360.0), evidence()))
    assert [e.reason for e in events] == ["raised"]
    for t in (420.0, 480.0):  # a gap restarted the window: low risk from a short one does not clear the alert
        state, events = policy.decide(state, ForecastSeen(1000.0 + t, forecast(af=0.01, t=t, window_s=90), evidence()))
        assert events == []
    assert [a.arrhythmia for a in state.active()] == ["af"]


def test_min_forecast_window_is_configurable() -> None:
    policy, state = make_policy(min_forecast_window_s=60), PatientAlerts("P001")
    for i, expected in enumerate(([], ["raised"])):
        f = forecast(af=0.9, t=60.0 * (i + 1), window_s=60)
        state, events = policy.decide(state, ForecastSeen(1000.0 + 60 * i, f, evidence()))
        assert [e.reason for e in events] == expected
    with pytest.raises(ValueError, match="min_forecast_window_s"):
        make_policy(min_forecast_window_s=-1)


def test_one_off_spike_does_not_raise() -> None:
    state, steps = run(make_policy(), [0.05, 0.95, 0.05, 0.1, 0.9, 0.05])
    assert not any(steps)
    assert state.active() == []


def test_persistence_counts_k_of_n_not_consecutive() -> None:
    _, steps = run(make_policy(persistence_k=2, persistence_n=3), [0.6, 0.1, 0.6])
    assert [e.type for e in steps[2]] == ["new"]


def test_most_urgent_horizon_over_threshold_is_reported() -> None:
    state, _ = run(make_policy(), [(0.2, 0.7), (0.3, 0.8)])
    (alert,) = state.active()
    assert (alert.horizon_s, alert.probability) == (300, 0.8)
    state, _ = run(make_policy(), [(0.6, 0.9)], state)
    assert state.active()[0].horizon_s == 60


def test_hysteresis_band_holds_then_clears() -> None:
    policy = make_policy(hysteresis=0.15, clear_after=2)
    state, _ = run(policy, [0.7, 0.7])
    # 0.4 is under the 0.5 threshold but inside the band (>= 0.35): the alert holds however long it lasts
    state, steps = run(policy, [0.4, 0.4, 0.4, 0.3], state)
    assert steps[:3] == [[], [], []] and steps[3] == []  # first forecast below 0.35 only starts the count
    state, steps = run(policy, [0.2], state)
    (event,) = steps[0]
    assert (event.type, event.reason, event.after.state) == ("end", "cleared", "cleared")
    assert event.after.ended_at is not None
    assert state.active() == []


def test_clearing_resets_persistence() -> None:
    policy = make_policy(clear_after=1)
    state, _ = run(policy, [0.7, 0.7, 0.1])
    _, steps = run(policy, [0.7], state)
    assert steps == [[]]  # a fresh alert needs k of n again


def test_poor_signal_suppresses_forecast_and_says_cannot_assess() -> None:
    policy = make_policy()
    state = PatientAlerts("P001")
    leads_off = evidence(hr_bpm=None, usable_fraction=0.1, signal_quality={"II": "leads_off", "V1": "leads_off"})
    for i in range(3):
        state, events = policy.decide(state, ForecastSeen(1000.0 + i, forecast(af=0.9), leads_off))
        if i == 0:
            (event,) = events
            assert (event.type, event.after.kind, event.after.arrhythmia) == ("new", "cannot_assess", None)
            assert event.after.explanation.startswith("Cannot assess: signal quality")
            assert "II leads off" in event.after.explanation
        else:
            assert events == []  # one cannot-assess alert per patient, not one per forecast
    assert [a.kind for a in state.active()] == ["cannot_assess"]  # no AF alert from unassessable forecasts
    state, events = policy.decide(state, ForecastSeen(1010.0, forecast(af=0.05), evidence()))
    assert [(e.type, e.after.kind, e.after.state) for e in events] == [("end", "cannot_assess", "cleared")]


def test_scheduler_cannot_assess_observation() -> None:
    state, events = make_policy().decide(
        PatientAlerts("P001"), CannotAssess(5.0, evidence(signal_quality={"II": "noisy"}), "too noisy")
    )
    assert "too noisy" in events[0].after.explanation
    assert state.active()[0].priority == "low"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"signal_quality": {"II": "saturated", "V1": "gap"}}, "0 assessable leads, 1 needed: II saturated, V1 gap"),
        ({"usable_fraction": 0.3}, "30% of the recent window usable"),
        ({"hr_bpm": None}, "no measurable heart rate"),
    ],
)
def test_quality_gate_reasons(change: dict[str, object], problem: str) -> None:
    _, events = make_policy().decide(PatientAlerts("P001"), ForecastSeen(1.0, forecast(), evidence(**change)))
    assert problem in events[0].after.explanation


def test_ack_changes_state_and_stops_renotification() -> None:
    policy = make_policy(renotify_after_s=60)
    state, _ = run(policy, [0.7, 0.7])
    alert_id = state.active()[0].alert_id
    state, events = policy.decide(state, AckReceived(1030.0, Ack("P001", alert_id, "nurse.kim", None)))
    (event,) = events
    assert event.before is not None
    assert (event.type, event.reason, event.before.state, event.after.state) == (
        "update",
        "acknowledged",
        "raised",
        "acknowledged",
    )
    assert (event.after.acknowledged_by, event.after.acknowledged_at) == ("nurse.kim", 1030.0)
    assert [t.state for t in event.after.history] == ["raised", "acknowledged"]
    again, events = policy.decide(state, AckReceived(1031.0, Ack("P001", alert_id, "nurse.lee", None)))
    assert events == [] and again == state  # a redelivered ack changes nothing
    _, events = policy.decide(state, TimerTick(5000.0))
    assert events == []
    with pytest.raises(ProtocolError) as info:
        policy.decide(state, AckReceived(1032.0, Ack("P001", "nope", "x", None)))
    assert info.value.reason == "unknown_alert"


def test_renotify_after_timeout_up_to_the_limit() -> None:
    policy = make_policy(renotify_after_s=60, max_renotify=2)
    state, _ = run(policy, [0.7, 0.7])  # raised at t=1010
    state, events = policy.decide(state, TimerTick(1069.0))
    assert events == []
    counts = []
    for now in (1070.0, 1100.0, 1130.0, 1190.0, 1300.0):
        state, events = policy.decide(state, TimerTick(now))
        counts.append([(e.reason, e.after.renotified) for e in events])
    assert counts == [[("renotified", 1)], [], [("renotified", 2)], [], []]


def test_escalation_when_risk_keeps_rising_and_ack_is_withdrawn() -> None:
    policy = make_policy(af={"priority": "low", "max_priority": "medium"})
    state, _ = run(policy, [0.55, 0.6])  # raised at margin 0.1
    alert_id = state.active()[0].alert_id
    state, _ = policy.decide(state, AckReceived(1015.0, Ack("P001", alert_id, "nurse.kim", None)))
    state, steps = run(policy, [0.7, 0.8], state)  # margins 0.1 -> 0.2 -> 0.3: three rising, +0.2
    assert steps[0] == []
    (event,) = steps[1]
    assert event.before is not None
    assert (event.reason, event.before.priority, event.after.priority) == ("escalated", "low", "medium")
    assert (event.after.state, event.after.acknowledged_by) == ("raised", None)  # needs a fresh acknowledgement
    state, steps = run(policy, [0.85, 0.9, 0.95], state)
    assert not any(steps)  # already at max_priority
    assert state.active()[0].priority == "medium"


def test_a_vt_forecast_never_escalates_to_high() -> None:
    """Issue #21: forecasts are advisories, capped below high (which "VT now", a measured rhythm, keeps)."""
    policy = make_policy()
    state = PatientAlerts("P001")
    priorities = []
    for i, vt in enumerate([0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99]):  # margin rising the whole way
        seen = ForecastSeen(1000.0 + 10 * i, forecast(vt=vt, t=600.0 + 10 * i), evidence())
        state, _ = policy.decide(state, seen)
        priorities += [a.priority for a in state.active()]
    assert priorities and set(priorities) == {"medium"}


def test_no_escalation_when_risk_is_flat_or_falls() -> None:
    policy = make_policy()
    _, steps = run(policy, [0.7, 0.7, 0.75, 0.7, 0.72, 0.71, 0.8])
    assert [e.reason for step in steps for e in step] == ["raised"]


def test_per_patient_override() -> None:
    settings = AlertSettings.model_validate(
        {"patients": {"P002": {"af": {"raise_at": 0.3}, "persistence_k": 1, "persistence_n": 1}}}
    )
    policy = AlertPolicy(settings)
    ev = evidence()
    _, events_p1 = policy.decide(PatientAlerts("P001"), ForecastSeen(1.0, forecast(af=0.35), ev))
    _, events_p2 = policy.decide(PatientAlerts("P002"), ForecastSeen(1.0, forecast(af=0.35, patient_id="P002"), ev))
    assert events_p1 == []
    assert [(e.type, e.after.threshold) for e in events_p2] == [("new", 0.3)]
    assert policy.for_patient("P002").flutter.raise_at == 0.5  # untouched keys keep the unit default


def test_disabled_arrhythmia_never_alerts() -> None:
    _, steps = run(make_policy(af={"enabled": False}), [0.9, 0.9, 0.9])
    assert not any(steps)


def test_patient_resolved_ends_every_active_alert() -> None:
    policy = make_policy()
    state, _ = run(policy, [0.7, 0.7])
    state, _ = policy.decide(state, CannotAssess(1100.0, evidence(hr_bpm=None)))
    state, events = policy.decide(state, PatientResolved(1200.0, "discharged"))
    assert sorted((e.type, e.after.state, e.after.kind) for e in events) == [
        ("end", "resolved", "cannot_assess"),
        ("end", "resolved", "forecast"),
    ]
    assert state.active() == []


def test_vt_defaults_to_medium_priority() -> None:
    policy = make_policy()
    state = PatientAlerts("P001")
    events: list[AlertEvent] = []
    for i in range(2):
        state, events = policy.decide(state, ForecastSeen(float(i), forecast(vt=0.5), evidence()))
    assert [(e.after.arrhythmia, e.after.priority) for e in events] == [("vt", "medium")]


def test_evidence_without_measurements_is_not_assessable() -> None:
    from agent.alerts import build_evidence, quality_problem

    empty: Evidence = build_evidence(None, None, {"II": "leads_off"}, 60.0)
    assert quality_problem(empty, AlertSettings.model_validate({}).defaults.quality) is not None
