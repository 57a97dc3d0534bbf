"""Present-rhythm alerts ("AF now", "VT now"): raised after the stated duration of measured rhythm, standing down the
matching forecast, cleared with hysteresis, never raised on a stable record; stored, restored and parsed like every
other alert. The policy is fed 10-s rhythm spans directly, then the spans the agent measures on synthetic records."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.alerts import (
    AlertEvent,
    AlertPolicy,
    AlertService,
    AlertSettings,
    CannotAssess,
    ForecastSeen,
    MuteRequest,
    MuteRequested,
    PatientAlerts,
    build_evidence,
    ihe_codes,
)
from agent.station._messages import decode_alert
from core.errors import ConfigError
from core.measurements import RhythmSpan, analyse_best_lead, rhythm_spans
from core.protocol import Topics
from simulators import generate_scenario

from .alert_builders import evidence, forecast

SPAN_S = 10.0


def span(end_s: float, kind: str) -> RhythmSpan:
    """One 10-s span of the measured window (seconds from its start) that looks like sinus, AF or VT."""
    values: dict[str, tuple[float, float, float, int]] = {  # hr, irregular index, ventricular share, V-run
        "sinus": (72.0, 0.03, 0.0, 0),
        "af": (112.0, 0.18, 0.0, 0),
        "af_weak": (110.0, 0.07, 0.0, 0),  # under the raise level, over the hold level
        "vt": (170.0, 0.02, 1.0, 28),
        "vt_over": (165.0, 0.02, 0.85, 20),  # mostly VT, but the window ends in sinus beats
    }
    hr, index, ventricular, run = values[kind]
    return RhythmSpan(
        start_s=end_s - SPAN_S,
        end_s=end_s,
        n_beats=round(hr / 6),
        hr_bpm=hr,
        rr_irregular_index=None if kind.startswith("vt") else index,
        ventricular_fraction=ventricular,
        longest_ventricular_run=run,
        trailing_ventricular_run=run if kind == "vt" else 0,
    )


def measured(t_end: float, *kinds: str) -> Any:
    """Evidence of a window ending at stream time ``t_end`` whose spans are ``kinds``, oldest first."""
    spans = tuple(span(SPAN_S * (i + 1), kind) for i, kind in enumerate(kinds))
    return evidence(t_end_s=t_end, window_s=SPAN_S * len(kinds), rhythm_spans=spans)


def make_policy(**defaults: Any) -> AlertPolicy:
    counter = itertools.count(1)
    return AlertPolicy(AlertSettings.model_validate({"defaults": defaults}), new_id=lambda: f"a{next(counter)}")


def feed(
    policy: AlertPolicy, windows: list[tuple[float, tuple[str, ...]]], af: float = 0.05, vt: float = 0.01
) -> tuple[PatientAlerts, list[tuple[float, AlertEvent]]]:
    """One forecast per (t_end, span kinds) window; returns the final state and every (t_end, event)."""
    state, seen = PatientAlerts("P001"), []
    for t_end, kinds in windows:
        obs = ForecastSeen(1000.0 + t_end, forecast(af=af, vt=vt, t=t_end), measured(t_end, *kinds))
        state, events = policy.decide(state, obs)
        seen += [(t_end, e) for e in events]
    return state, seen


def every(step_s: float, start: float, stop: float, kinds: tuple[str, ...]) -> list[tuple[float, tuple[str, ...]]]:
    return [(float(t), kinds) for t in np.arange(start, stop + 1e-9, step_s)]


def timeline(kinds: list[str], window_spans: int = 2) -> list[tuple[float, tuple[str, ...]]]:
    """Windows of ``window_spans`` spans, one per 10 s, over a rhythm given span by span (the first ends at 10 s)."""
    return [(SPAN_S * (i + 1), tuple(kinds[i + 1 - window_spans : i + 1])) for i in range(window_spans - 1, len(kinds))]


# --- raising after the stated duration ----------------------------------------------------------------------------


def test_af_is_raised_once_it_has_lasted_the_minimum_duration_across_short_windows() -> None:
    """20-s windows every 5 s (the end-to-end test's cadence): the run is carried from window to window."""
    windows = every(5, 100, 120, ("sinus", "sinus")) + every(5, 125, 130, ("sinus", "af"))
    windows += every(5, 135, 175, ("af", "af"))
    _, seen = feed(make_policy(), windows)
    ((t_end, event),) = seen
    alert = event.after
    assert (event.type, alert.kind, alert.arrhythmia, alert.state) == ("new", "present_rhythm", "af", "raised")
    assert t_end == 145.0  # the run's first span (115-125) was seen at 125; 30 s of it at 145
    assert alert.window is not None and (alert.window.start_s, alert.window.end_s) == (115.0, 145.0)
    assert alert.evidence["present_rhythm"]["lasted_s"] >= 30.0
    assert (alert.horizon_s, alert.probability, alert.threshold, alert.model_id) == (None, None, None, None)


def test_one_long_window_can_show_the_whole_duration_at_once() -> None:
    """300-s windows every 60 s (the shipped cadence): three AF spans at the end of one window are enough."""
    _, seen = feed(make_policy(), [(600.0, ("sinus",) * 27 + ("af",) * 3)])
    ((_, event),) = seen
    assert event.after.evidence["present_rhythm"]["spans"] == 3
    assert event.after.window is not None and event.after.window.start_s == 570.0


def test_a_shorter_run_raises_nothing_and_a_break_restarts_it() -> None:
    policy = make_policy()
    _, seen = feed(policy, [(600.0, ("sinus",) * 28 + ("af",) * 2)])
    assert seen == []  # 20 s < 30 s
    # 20 s of AF, then two sinus spans in a row (a break, not a single odd span), then 20 s of AF: never 30 s
    _, seen = feed(policy, [(600.0, ("af", "af", "sinus", "sinus", "af", "af"))])
    assert seen == []
    windows = [(100.0, ("af", "af")), (110.0, ("af", "sinus")), (120.0, ("sinus", "af")), (130.0, ("af", "af"))]
    assert feed(policy, windows)[1] == []
    assert feed(policy, timeline(["af_weak"] * 8))[1] == []  # the hold level keeps an alert, it never raises one


def test_a_single_odd_span_inside_a_run_is_bridged() -> None:
    _, seen = feed(make_policy(), [(600.0, ("sinus", "af", "af", "sinus", "af", "af"))])
    ((_, event),) = seen
    assert event.after.evidence["present_rhythm"]["lasted_s"] == 50.0


def test_vt_is_raised_high_priority_as_a_physiological_alert() -> None:
    _, seen = feed(make_policy(), [(300.0, ("sinus", "sinus", "vt"))])
    ((_, event),) = seen
    alert = event.after
    assert (alert.kind, alert.arrhythmia, alert.priority) == ("present_rhythm", "vt", "high")
    assert alert.to_wire()["ihe"] == {"priority": "PH", "source": "SP"} == ihe_codes("present_rhythm", "high")
    assert alert.explanation.startswith(
        "Ventricular tachycardia under way (a detected present rhythm, not a forecast): 100% of beats ventricular "
        "at 170 bpm (VT from 100 bpm), longest run 28 beats, over the last 10 s."
    )
    assert "Measured on lead II" in alert.explanation


def test_vt_that_stopped_before_the_window_ended_is_not_now() -> None:
    assert feed(make_policy(), [(300.0, ("sinus", "sinus", "vt_over"))])[1] == []


def test_af_explanation_states_a_present_rhythm_with_its_measured_evidence() -> None:
    _, seen = feed(make_policy(), [(600.0, ("af",) * 4)])
    text = seen[0][1].after.explanation
    assert text.startswith(
        "Atrial fibrillation under way (a detected present rhythm, not a forecast): RR irregularly irregular "
        "(irregular index 0.18, AF from 0.08) at 112 bpm, over the last 40 s."
    )
    assert "may begin" not in text and "Forecast advisory" not in text
    assert seen[0][1].after.priority == "medium"


# --- standing the forecast down -----------------------------------------------------------------------------------


def test_af_now_stands_down_the_af_forecast_and_keeps_it_down_while_af_lasts() -> None:
    policy = make_policy()
    sinus = every(10, 100, 120, ("sinus", "sinus"))
    af = every(10, 130, 300, ("af", "af"))
    state, seen = feed(policy, sinus + af, af=0.9, vt=0.9)
    kinds = [(t, e.type, e.after.kind, e.after.arrhythmia) for t, e in seen]
    assert kinds[:2] == [(110.0, "new", "forecast", "af"), (110.0, "new", "forecast", "vt")]
    raised = next(t for t, e in seen if e.after.kind == "present_rhythm")
    stood_down = [(t, e) for t, e in seen if e.type == "end"]
    ((t_end, end),) = stood_down
    assert t_end == raised and end.after.arrhythmia == "af"  # the same forecast, at the same measurement
    assert (end.after.state, end.reason) == ("resolved", "resolved")
    assert end.after.history[-1].reason == "atrial fibrillation under way: present-rhythm alert"
    assert not [e for t, e in seen if t > raised and e.after.kind == "forecast"]  # no AF forecast while AF lasts
    active = sorted((a.kind, a.arrhythmia) for a in state.active())
    assert active == [("forecast", "vt"), ("present_rhythm", "af")]  # the VT forecast is not AF's to stand down


def test_the_forecast_needs_fresh_persistence_after_the_rhythm_ends() -> None:
    _, seen = feed(make_policy(), timeline(["af"] * 6 + ["sinus"] * 6), af=0.9)
    ends = [(t, e.after.kind) for t, e in seen if e.type == "end"]
    news = [(t, e.after.kind) for t, e in seen if e.type == "new"]
    assert news[0] == (30.0, "present_rhythm")  # 20-s windows: 30 s of AF seen at 30
    assert ends == [(90.0, "present_rhythm")]  # sinus spans from 70 on: absent for 30 s at 90
    assert news[1:] == [(100.0, "forecast")]  # k=2 fresh positive forecasts: 90 and 100


def test_a_forecast_mute_does_not_mute_a_present_rhythm() -> None:
    policy = make_policy()
    state = PatientAlerts("P001")
    request = MuteRequest("P001", "mute", "nurse.kim", "known paroxysmal AF", 3600.0)
    state, _ = policy.decide(state, MuteRequested(1000.0, request))
    state, events = policy.decide(state, ForecastSeen(1100.0, forecast(af=0.9), measured(600.0, *("af",) * 3)))
    assert [(e.type, e.after.kind) for e in events] == [("new", "present_rhythm")]


# --- clearing with hysteresis -------------------------------------------------------------------------------------


def test_af_now_holds_through_a_weaker_stretch_and_clears_after_its_absence_lasted() -> None:
    kinds = ["af"] * 4 + ["af_weak"] * 6 + ["sinus"] * 5  # af_weak: under the raise level, over the hold level
    state, seen = feed(make_policy(), timeline(kinds))
    assert [(t, e.type) for t, e in seen] == [(30.0, "new"), (130.0, "end")]  # sinus from 100 on: 30 s at 130
    end = seen[-1][1]
    assert (end.after.state, end.reason) == ("cleared", "cleared")
    assert end.after.history[-1].reason == "atrial fibrillation no longer measured for 30 s"
    assert state.active() == []


def test_one_sinus_measurement_does_not_clear() -> None:
    state, seen = feed(make_policy(), timeline(["af"] * 4 + ["sinus", "af", "af", "sinus", "af"]))
    assert [e.type for _, e in seen] == ["new"]
    (alert,) = state.active()
    assert alert.window is not None and (alert.window.start_s, alert.window.end_s) == (0.0, 90.0)


def test_an_unassessable_signal_neither_raises_nor_clears() -> None:
    policy = make_policy()
    state, _ = feed(policy, [(100.0, ("af",) * 4)])
    leads_off = evidence(signal_quality={"II": "leads_off", "V1": "leads_off"}, hr_bpm=None, t_end_s=200.0)
    for at in (1200.0, 1300.0):
        state, _ = policy.decide(state, CannotAssess(at, leads_off))
    assert [a.kind for a in state.active()] == ["present_rhythm", "cannot_assess"]


def test_switching_a_rhythm_off_resolves_its_stored_alert() -> None:
    state, _ = feed(make_policy(), [(100.0, ("af",) * 4)])
    off = make_policy(present_rhythm={"af": {"enabled": False}})
    state, events = off.decide(state, ForecastSeen(1200.0, forecast(), measured(200.0, *("af",) * 4)))
    ((event),) = events
    assert (event.after.state, event.after.history[-1].reason) == (
        "resolved",
        "present-rhythm alerting disabled for this rhythm",
    )


# --- on measured synthetic records ---------------------------------------------------------------------------------


def replay(name: str, seed: int, window_s: int = 20, cadence_s: int = 5) -> tuple[float, list[tuple[int, AlertEvent]]]:
    """The agent's path off-line: measure the last ``window_s`` every ``cadence_s`` (analyse_best_lead,
    rhythm_spans, build_evidence) and feed the policy; every forecast is a quiet one. Returns the AF onset, if
    any, and every (t_end, event)."""
    record = generate_scenario(name, seed=seed, minutes=3.0, fs=250.0, leads=("II", "V1"), noise="low")
    policy, state, seen = make_policy(), PatientAlerts("P001"), []
    n = round(window_s * record.fs)
    for t_end in range(window_s, int(record.duration_s) + 1, cadence_s):
        end = round(t_end * record.fs)
        analysis = analyse_best_lead(record.p_signal[end - n : end], record.fs, record.sig_name)
        ev = build_evidence(
            analysis.measurements, None, {"II": "good", "V1": "good"}, float(window_s),
            t_end_s=float(t_end), rhythm=rhythm_spans(analysis),
        )  # fmt: skip
        state, events = policy.decide(state, ForecastSeen(float(t_end), forecast(t=float(t_end)), ev))
        seen += [(t_end, e) for e in events]
    return float(record.onsets.get("AF", "nan")), seen


@pytest.mark.parametrize("seed", [0, 6])
def test_a_measured_af_episode_raises_af_now_within_the_stated_delay(seed: int) -> None:
    """Stated delay (docs/ALERTS.md): min_duration_s + one span + one cadence, counted from the onset."""
    onset, seen = replay("af_onset", seed)
    ((t_end, event),) = seen
    assert (event.type, event.after.kind, event.after.arrhythmia) == ("new", "present_rhythm", "af")
    assert onset + 30.0 - SPAN_S <= t_end <= onset + 30.0 + SPAN_S + 5, (onset, t_end)


@pytest.mark.parametrize(("name", "seed"), [("sinus_stable", 1), ("sinus_ectopy", 2), ("sinus_tachy_exertion", 0)])
def test_a_stable_record_raises_no_present_rhythm(name: str, seed: int) -> None:
    """Stable sinus, an ectopy decoy (trigeminy: irregular beat to beat, but a repeating pattern), exertion."""
    assert replay(name, seed)[1] == []


# --- stored, restored, published and parsed like any other alert ---------------------------------------------------


def test_stored_alert_continues_after_a_restart_and_parses_at_the_station(tmp_path: Path) -> None:
    published: list[bytes] = []
    now = [1_800_000_000.0]
    settings = AlertSettings.model_validate({"store_path": str(tmp_path / "alerts.sqlite3")})

    def open_service() -> AlertService:
        return AlertService(
            settings, None, lambda t, p, q, r: published.append(p), Topics("ecg/v1"), clock=lambda: now[0]
        )

    with open_service() as service:
        service.on_forecast("P001", forecast(af=0.9, t=600.0), measured(600.0, *("af",) * 4))
        (alert,) = service.active("P001")
    with open_service() as restarted:
        assert [a.alert_id for a in restarted.active("P001")] == [alert.alert_id]
        now[0] += 60
        assert restarted.on_forecast("P001", forecast(af=0.9, t=660.0), measured(660.0, *("af",) * 4)) == []
        now[0] += 60
        (cleared,) = restarted.on_forecast("P001", forecast(t=720.0), measured(720.0, *("sinus",) * 4))
        assert (cleared.type, cleared.after.alert_id) == ("end", alert.alert_id)
    messages = [decode_alert(payload, "P001") for payload in published]
    assert [(m.type, m.after.kind) for m in messages] == [("new", "present_rhythm"), ("end", "present_rhythm")]
    assert json.loads(published[0])["after"]["ihe"] == {"priority": "PM", "source": "SP"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"af": {"min_duration_s": 5}}, "min_duration_s"),
        ({"af": {"hold_irregular_index": 0.1}}, "hold_irregular_index 0.1 is above"),
        ({"vt": {"min_ventricular_fraction": 0.4}}, "min_ventricular_fraction"),
        ({"flutter": {}}, "flutter"),
    ],
)
def test_bad_present_rhythm_config_is_refused(tmp_path: Path, override: dict[str, Any], message: str) -> None:
    from agent.settings import load_settings

    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps({"alerts": {"defaults": {"present_rhythm": override}}}))
    with pytest.raises(ConfigError, match=message):
        load_settings(path, env={})
