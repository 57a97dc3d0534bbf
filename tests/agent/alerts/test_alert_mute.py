"""Per-patient forecast mute (issue #22): strict decoding, the policy's rules, and the service's history and
retained state.

While muted, forecast alerts are neither raised nor kept (an active one is resolved); "cannot assess" still is.
The mute ends by itself at its time; every change is stored with who, when and why, and published retained.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.alerts import (
    MAX_MUTE_S,
    SCHEMA_ALERT_MUTE,
    SCHEMA_MUTE_STATE,
    AlertPolicy,
    AlertSettings,
    ForecastSeen,
    MuteRequest,
    MuteRequested,
    PatientAlerts,
    TimerTick,
    decode_mute,
)
from core.errors import ProtocolError

from .alert_builders import evidence, forecast
from .test_alert_service import Clock, Wire, open_service

LEADS_OFF = evidence(hr_bpm=None, usable_fraction=0.1, signal_quality={"II": "leads_off", "V1": "leads_off"})


def payload(**fields: object) -> bytes:
    body = {"schema": SCHEMA_ALERT_MUTE, "action": "mute", "by": "nurse.kim", "reason": "known paroxysmal AF"}
    return json.dumps({**body, "duration_s": 7200, **fields}).encode()


def mute(duration_s: float = 3600.0, by: str = "nurse.kim", reason: str = "paced patient") -> MuteRequest:
    return MuteRequest("P001", "mute", by, reason, duration_s)


UNMUTE = MuteRequest("P001", "unmute", "dr.lee", None, None)


def feed(policy: AlertPolicy, state: PatientAlerts, at: float, af: float = 0.9, ev: Any = None) -> tuple[Any, Any]:
    return policy.decide(state, ForecastSeen(at, forecast(af=af), ev or evidence()))


# -- decoding ---------------------------------------------------------------------------------------------------------


def test_valid_mute_and_unmute() -> None:
    request = decode_mute(payload(patient_id="P001"), "P001", "nurse.kim")
    assert request == MuteRequest("P001", "mute", "nurse.kim", "known paroxysmal AF", 7200.0)
    unmute = json.dumps({"schema": SCHEMA_ALERT_MUTE, "action": "unmute"}).encode()  # by: the topic's user
    assert decode_mute(unmute, "P001", "dr.lee") == MuteRequest("P001", "unmute", "dr.lee", None, None)


@pytest.mark.parametrize(
    ("raw", "reason", "field"),
    [
        (b"{nope", "bad_json", None),
        (b"[" * 3000 + b"]" * 3000, "oversize", None),
        (b"[" * 2000 + b"]" * 2000, "bad_json", None),  # nests past the recursion limit
        (b'"mute"', "not_object", None),
        (payload(schema="ecgcast.alert_ack/1"), "bad_schema", "schema"),
        (payload(action=None), "missing_field", "action"),
        (payload(action="silence"), "bad_field", "action"),
        (payload(by=None), "wrong_user", "by"),
        (payload(by="dr.lee"), "wrong_user", "by"),  # a mute under another name
        (payload(by="x" * 129), "wrong_user", "by"),
        (payload(reason=None), "missing_field", "reason"),
        (payload(reason="   "), "bad_field", "reason"),
        (payload(reason="r" * 201), "bad_field", "reason"),
        (payload(reason="AF\nrm -rf"), "bad_field", "reason"),
        (payload(reason="AF\u2028next line"), "bad_field", "reason"),
        (payload(reason=["AF"]), "bad_field", "reason"),
        (payload(duration_s=None), "missing_field", "duration_s"),
        (payload(duration_s=MAX_MUTE_S + 1), "bad_field", "duration_s"),  # at most 24 h
        (payload(duration_s=30), "bad_field", "duration_s"),
        (payload(duration_s=-7200), "bad_field", "duration_s"),
        (payload(duration_s="2h"), "bad_field", "duration_s"),
        (payload(duration_s=True), "bad_field", "duration_s"),
        (payload(duration_s=float("nan")), "bad_field", "duration_s"),
        (payload(duration_s=float("inf")), "bad_field", "duration_s"),
        (payload(action="unmute"), "bad_field", "duration_s"),  # an unmute takes no duration
        (payload(until=1.9e9), "unknown_field", "until"),
        (payload(at=1.8e9), "unknown_field", "at"),  # the agent stamps the time
        (payload(patient_id="P002"), "wrong_patient", "patient_id"),
    ],
)
def test_malformed_requests_are_refused_with_a_reason(raw: bytes, reason: str, field: str | None) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_mute(raw, "P001", "nurse.kim")
    assert (info.value.reason, info.value.field) == (reason, field)
    assert info.value.detail  # a sentence a nurse's client can show


# -- policy -----------------------------------------------------------------------------------------------------------


def test_mute_suppresses_a_forecast_alert_that_would_otherwise_be_raised() -> None:
    policy = AlertPolicy(AlertSettings.model_validate({}))
    unmuted, muted = PatientAlerts("P001"), policy.decide(PatientAlerts("P001"), MuteRequested(1000.0, mute()))[0]
    assert muted.muted(1000.0) and muted.mute is not None and muted.mute.until == 4600.0
    raised = []
    for at in (1010.0, 1020.0, 1030.0):
        unmuted, events = feed(policy, unmuted, at)
        raised += [e.after.arrhythmia for e in events if e.type == "new"]
        muted, events = feed(policy, muted, at)
        assert not events
    assert raised == ["af"]  # the same forecasts raise an AF alert for an unmuted patient
    assert not muted.active()


def test_mute_resolves_active_forecast_alerts_with_who_and_why() -> None:
    policy = AlertPolicy(AlertSettings.model_validate({}))
    state = PatientAlerts("P001")
    for at in (1000.0, 1010.0):
        state, _ = feed(policy, state, at)
    (alert,) = state.active()
    state, events = policy.decide(state, MuteRequested(1020.0, mute(by="nurse.kim")))
    ((kind, before, after),) = [(e.type, e.before, e.after) for e in events]
    assert (kind, before.alert_id, after.state) == ("end", alert.alert_id, "resolved")
    assert (after.history[-1].reason, after.history[-1].by) == ("forecasts muted", "nurse.kim")
    assert not state.active()


def test_technical_alerts_are_still_raised_while_muted() -> None:
    policy = AlertPolicy(AlertSettings.model_validate({}))
    state, _ = policy.decide(PatientAlerts("P001"), MuteRequested(1000.0, mute()))
    state, events = feed(policy, state, 1010.0, ev=LEADS_OFF)
    assert [(e.type, e.after.kind) for e in events] == [("new", "cannot_assess")]
    state, events = feed(policy, state, 1020.0)  # signal back: the technical alert clears, no forecast alert
    assert [(e.type, e.after.kind, e.after.state) for e in events] == [("end", "cannot_assess", "cleared")]


def test_expiry_restores_alerting() -> None:
    policy = AlertPolicy(AlertSettings.model_validate({}))
    state, _ = policy.decide(PatientAlerts("P001"), MuteRequested(1000.0, mute(duration_s=600.0)))
    for at in (1100.0, 1200.0, 1590.0):
        state, events = feed(policy, state, at)
        assert not events
    state, events = policy.decide(state, TimerTick(1601.0))
    assert not events and state.mute is not None
    assert (state.mute.action, state.mute.at, state.mute.by, state.mute.reason) == (
        "expired",
        1600.0,
        None,
        "paced patient",
    )
    kinds = []
    for at in (1610.0, 1620.0):  # persistence starts afresh: k positive forecasts after the mute
        state, events = feed(policy, state, at)
        kinds += [(e.type, e.after.arrhythmia) for e in events]
    assert kinds == [("new", "af")]


def test_a_forecast_after_the_time_is_up_is_judged_unmuted_even_before_the_timer() -> None:
    policy = AlertPolicy(AlertSettings.model_validate({"defaults": {"persistence_k": 1, "persistence_n": 1}}))
    state, _ = policy.decide(PatientAlerts("P001"), MuteRequested(1000.0, mute(duration_s=600.0)))
    state, events = feed(policy, state, 1600.0)
    assert state.mute is not None and state.mute.action == "expired"
    assert [e.type for e in events] == ["new"]


def test_unmute_lifts_a_mute_and_is_a_no_op_otherwise() -> None:
    policy = AlertPolicy(AlertSettings.model_validate({}))
    never = PatientAlerts("P001")
    assert policy.decide(never, MuteRequested(1000.0, UNMUTE)) == (never, [])
    state, _ = policy.decide(never, MuteRequested(1000.0, mute()))
    state, events = policy.decide(state, MuteRequested(1100.0, UNMUTE))
    assert not events and state.mute is not None and (state.mute.action, state.mute.by) == ("unmuted", "dr.lee")
    assert not state.muted(1101.0)
    again = policy.decide(state, MuteRequested(1200.0, UNMUTE))  # a redelivered unmute changes nothing
    assert again == (state, [])


# -- service: history, retained state, restart -------------------------------------------------------------------------


def test_service_records_and_publishes_mutes_and_reloads_them(tmp_path: Path) -> None:
    wire, clock, store = Wire(), Clock(), tmp_path / "alerts.sqlite3"
    with open_service(store, wire, clock) as service:
        muted = service.mute(mute(duration_s=3600.0, by="nurse.kim", reason="known paroxysmal AF"))
        assert muted is not None and (muted.action, muted.until) == ("muted", clock.now + 3600.0)
        (topic, message, qos, retain) = wire.sent[-1]
        assert (topic, qos, retain) == ("ecg/v1/P001/alert/muted", 1, True)
        assert message == {
            "schema": SCHEMA_MUTE_STATE,
            "patient_id": "P001",
            "action": "muted",
            "at": clock.now,
            "by": "nurse.kim",
            "reason": "known paroxysmal AF",
            "until": clock.now + 3600.0,
        }
    clock.now += 60
    with open_service(store, wire, clock) as service:  # a restart keeps the mute in force
        for _ in range(3):
            clock.now += 10
            service.on_forecast("P001", forecast(af=0.9), evidence())
        assert not service.active("P001")
        clock.now += 3600
        service.tick()
        assert wire.messages()[-1]["action"] == "expired"
        for _ in range(2):
            clock.now += 10
            service.on_forecast("P001", forecast(af=0.9), evidence())
        assert [a.arrhythmia for a in service.active("P001")] == ["af"]
        history = service.mute_history("P001")
        assert [(m.action, m.by) for m in history] == [("expired", None), ("muted", "nurse.kim")]


def test_a_second_mute_replaces_the_first_and_unmute_is_published(tmp_path: Path) -> None:
    wire, clock = Wire(), Clock()
    with open_service(tmp_path / "a.sqlite3", wire, clock) as service:
        service.mute(mute(duration_s=600.0))
        clock.now += 60
        longer = service.mute(mute(duration_s=7200.0, reason="pacing study"))
        assert longer is not None and longer.until == clock.now + 7200.0
        clock.now += 60
        service.mute(UNMUTE)
        assert [m["action"] for m in wire.messages()] == ["muted", "muted", "unmuted"]
        service.mute(UNMUTE)  # nothing to lift: nothing stored, nothing published
        assert len(wire.sent) == 3 and len(service.mute_history("P001")) == 3


# -- the daemon's path: MQTT callback -> queue -> alert worker ---------------------------------------------------------


def test_the_daemon_applies_valid_mute_requests_and_refuses_malformed_ones(tmp_path: Path) -> None:
    import queue
    from types import SimpleNamespace

    from agent.daemon import Agent, AlertWorker
    from agent.settings import Settings

    agent = Agent(Settings.model_validate({"http": {"port": 0}}), with_model=False)
    try:
        for mid, body in enumerate((payload(), payload(duration_s=10 * MAX_MUTE_S), b"{nope")):
            message = SimpleNamespace(topic="ecg/v1/P001/alert/mute/nurse.kim", payload=body, mid=mid, qos=1)
            agent.on_mute(None, None, message)  # type: ignore[arg-type]
        for mid, topic in enumerate(("ecg/v1/P#/alert/mute/nurse.kim", "ecg/v1/P001/alert/mute/dr.lee"), 10):
            agent.on_mute(None, None, SimpleNamespace(topic=topic, payload=payload(), mid=mid, qos=1))  # type: ignore[arg-type]
        assert agent.acks.qsize() == 1  # only the valid request reaches the alert worker
        wire, clock = Wire(), Clock()
        with open_service(tmp_path / "a.sqlite3", wire, clock) as service:
            AlertWorker(service, agent.acks, queue.SimpleQueue()).step()
            state = service.mute_state("P001")
            assert state is not None and (state.action, state.by, state.until) == (
                "muted",
                "nurse.kim",
                clock.now + 7200,
            )
            assert wire.sent[-1][0] == "ecg/v1/P001/alert/muted"
    finally:
        agent.stop()
