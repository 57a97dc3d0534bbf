"""The station's pure parts: settings, password hashes and sessions, the drawing ring, and the per-patient state."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

import agent.station
from agent.alerts import Alert
from agent.settings import load_settings
from agent.station import (
    SessionStore,
    StationSettings,
    StationState,
    WaveRing,
    hash_password,
    heart_rate_bpm,
    order,
    priority_rank,
    quality_badge,
    rhythm_summary,
    verify_password,
)
from agent.station._messages import AlertMessage, ForecastMessage, decode_alert, decode_forecast
from core.errors import ProtocolError
from core.measurements import measure
from core.protocol import WaveChunk
from core.wire import StatusMessage, decode_status
from simulators import generate_scenario

from .ward import forecast_for

FS = 250.0


def chunk(pid: str, seq: int, t0: float, samples: np.ndarray, leads: tuple[str, ...] = ("II", "V1")) -> WaveChunk:
    return WaveChunk(pid, "dev", seq, t0, FS, leads, samples.astype(np.float32))


def alert(alert_id: str, state: str = "raised", priority: str = "low", **extra: object) -> dict:
    return {"alert_id": alert_id, "state": state, "priority": priority, "kind": "forecast", "raised_at": 1.0, **extra}


def wire_alert(alert_id: str, state: str = "raised", priority: str = "low", pid: str = "P1") -> dict[str, Any]:
    """A complete alert as the agent publishes it (``Alert.to_wire``)."""
    return Alert.model_validate(
        {
            "alert_id": alert_id, "patient_id": pid, "state": state, "priority": priority, "kind": "forecast",
            "arrhythmia": "vt", "horizon_s": 300, "probability": 0.6, "threshold": 0.5, "explanation": "advisory",
            "evidence": {"hr_bpm": 80.0}, "raised_at": 1.0, "updated_at": 1.0, "last_notified_at": 1.0,
        }
    ).to_wire()  # fmt: skip


def alert_event(type_: str, after: dict[str, Any], reason: str = "raised", pid: str = "P1") -> AlertMessage:
    body = {"schema": "ecgcast.alert/1", "type": type_, "reason": reason, "before": None, "after": after}
    return decode_alert(json.dumps(body).encode(), pid)


def status_message(pid: str = "P1", **fields: object) -> StatusMessage:
    return decode_status(json.dumps({"schema": "ecgcast.status/1", "patient_id": pid, **fields}).encode(), pid)


def forecast_message(pid: str, af: float, published_at: float, **fields: object) -> ForecastMessage:
    body = json.loads(forecast_for(pid, af, 0.0, 0.05, 100.0).to_json())
    return decode_forecast(json.dumps({**body, "published_at": published_at, **fields}).encode(), pid)


def test_exports_are_curated() -> None:
    assert set(agent.station.__all__) == {
        "SessionStore", "StationServer", "StationSettings", "StationState", "WaveRing", "hash_password",
        "heart_rate_bpm", "order", "priority_rank", "quality_badge", "rhythm_summary", "verify_password",
    }  # fmt: skip


def test_settings_default_off_and_in_default_yaml() -> None:
    settings = load_settings()
    assert settings.station == StationSettings()
    assert settings.station.enabled is False and settings.station.host == "127.0.0.1"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"enabled": True}, "station.users or station.proxy_user_header"),
        ({"users": {"kim": "plain-text"}}, "station.users.kim"),
        ({"tls_cert_file": "cert.pem"}, "set together"),
        ({"proxy_user_header": "X Remote"}, "pattern"),
        ({"colour": "red"}, "Extra inputs"),
    ],
)
def test_settings_refuse_unsafe_or_unknown(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        StationSettings.model_validate(fields)


def test_password_hash_round_trip_and_refusals() -> None:
    stored = hash_password("s3cret")
    assert stored.startswith("scrypt$") and "s3cret" not in stored
    assert verify_password("s3cret", stored)
    assert not verify_password("S3cret", stored)
    assert hash_password("s3cret") != stored  # salted
    assert not verify_password("s3cret", "scrypt$1$2$3$not-base64!$x")
    assert not verify_password("s3cret", "md5$abc")
    with pytest.raises(ValueError, match="empty"):
        hash_password("")


def test_sessions_expire_and_close() -> None:
    now = [0.0]
    store = SessionStore(ttl_s=60, clock=lambda: now[0])
    token = store.open("kim")
    assert store.user(token) == "kim" and store.user("forged") is None and store.user(None) is None
    now[0] = 61.0
    assert store.user(token) is None
    token = store.open("kim")
    store.close(token)
    assert store.user(token) is None


def test_wave_ring_decimates_across_chunks_and_serves_increments() -> None:
    ring = WaveRing(capacity_s=4.0, draw_hz=125.0)
    ramp = np.arange(1000, dtype=np.float32)  # 4 s at 250 Hz, in chunks of odd length so the phase must carry
    for seq, start in enumerate(range(0, 1000, 75)):
        block = ramp[start : start + 75]
        ring.append(chunk("P1", seq, 100.0 + start / FS, np.vstack([block, -block]), ("II", "V1")))
    strip = ring.last(4.0)
    assert ring.fs == 125.0 and strip.sig_name == ("II", "V1")
    np.testing.assert_array_equal(strip.p_signal[:, 0], ramp[::2])  # every other sample, no phase slip
    np.testing.assert_allclose(strip.t, 100.0 + np.arange(0, 1000, 2) / FS)
    cursor = strip.end_count
    ring.append(chunk("P1", 99, 104.0, np.ones((2, 10))))
    increment = ring.since(cursor)
    assert increment.p_signal.shape == (5, 2) and increment.t[0] == pytest.approx(104.0)
    assert ring.last(4.0).p_signal.shape[0] == 500  # capacity kept
    ring.append(chunk("P1", 100, 105.0, np.ones((1, 10)), ("II",)))  # new lead set: starts afresh
    assert ring.last(10).sig_name == ("II",) and ring.count == 5


def test_live_heart_rate_agrees_with_the_measurements_module() -> None:
    record = generate_scenario("sinus_stable", seed=5, minutes=0.25, fs=FS, leads=("II", "V1"), noise="low")
    ring = WaveRing(capacity_s=10.0, draw_hz=125.0)
    p = record.p_signal.astype(np.float32)
    for k in range(10):
        ring.append(chunk("P1", k, 50.0 + k, p[k * 250 : (k + 1) * 250].T))
    hr, beats = heart_rate_bpm(ring.last(10.0))
    reference = measure(p[:2500, 0], FS, lead="II").hr_bpm
    assert hr is not None and reference is not None and abs(hr - reference) < 5
    assert 50.0 <= beats[0] < beats[-1] <= 60.0
    flat = WaveRing(capacity_s=10.0, draw_hz=125.0)
    flat.append(chunk("P2", 0, 0.0, np.zeros((2, 2500))))
    assert heart_rate_bpm(flat.last(10.0))[0] is None


def test_quality_badges_and_rhythm_words() -> None:
    assert quality_badge({"II": "good", "V1": "good"}) == ("good", {"II": "good", "V1": "good"})
    assert quality_badge({"II": "good", "V1": "leads_off"})[0] == "leads off"
    assert quality_badge({"II": "saturated"})[0] == "noisy"
    assert quality_badge({"II": "gap"})[0] == "cannot assess"
    assert quality_badge({})[0] == "cannot assess"
    assert rhythm_summary(None) == "cannot assess"
    assert rhythm_summary({"hr_bpm": None}) == "cannot assess"
    regular = {"hr_bpm": 72.0, "rr_irregularity": 0.03, "pac_count": 0, "pvc_count": 2, "duration_s": 60.0}
    assert rhythm_summary(regular) == "regular RR (irregularity 0.03); 2 PVC in 60 s"
    irregular = {"hr_bpm": 110.0, "rr_irregularity": 0.18, "ventricular_run_count": 1, "duration_s": 60.0}
    assert rhythm_summary(irregular).startswith("irregular RR (irregularity 0.18); 1 ventricular run")


def test_priority_rank_and_display_order() -> None:
    """Issue #21: acknowledgement never changes a rank (it has its own cue), and the layout is fixed: configured
    beds in their order, then other patients by id, whatever their alerts."""
    assert priority_rank([]) == 0
    assert priority_rank([alert("a", priority="medium")]) == 2
    assert priority_rank([alert("a", priority="medium")]) < priority_rank([alert("b", "acknowledged", "high")])
    assert order(["P3", "P1", "P9", "P2"], {"P2": "12A", "P7": "12B"}) == ["P2", "P7", "P1", "P3", "P9"]


def test_state_follows_the_alert_lifecycle_and_pushes_changes() -> None:
    now = [1000.0]
    state = StationState(StationSettings(stale_after_s=5.0, beds={"P1": "12A"}), clock=lambda: now[0])
    state.on_status("P1", status_message(state="streaming", signal_quality={"II": "good", "V1": "noisy"}))
    state.on_alert("P1", alert_event("new", wire_alert("a1", priority="medium")))
    updates = state.take_updates()
    assert [a["alert_id"] for a in updates.new_alerts] == ["a1"] and updates.order == ["P1"]
    tile = updates.tiles[0]
    assert tile["bed"] == "12A" and tile["quality"] == "no signal" and tile["rank"] == 2 and tile["stale"]
    assert tile["alarm"] == {"priority": "medium", "acknowledged": False, "advisory": True}
    assert tile["quality_by_lead"]["V1"] == "noisy"
    state.on_alert("P1", alert_event("update", wire_alert("a1", "acknowledged", "medium"), "acknowledged"))
    assert state.take_updates().tiles[0]["alerts"][0]["state"] == "acknowledged"
    state.on_alert("P1", alert_event("end", wire_alert("a1", "cleared", "medium"), "cleared"))
    assert state.take_updates().tiles[0]["alerts"] == []
    assert [a["state"] for a in state.detail("P1")["history"]] == ["cleared"]  # type: ignore[index]
    with pytest.raises(ProtocolError, match="after"):
        alert_event("new", None)  # type: ignore[arg-type]

    state.on_wave(chunk("P1", 0, 5.0, np.zeros((2, 250))))
    updates = state.take_updates()
    assert updates.waves[0]["patient_id"] == "P1" and len(updates.waves[0]["leads"]["II"]) == 125
    assert updates.tiles[0]["stale"] is False
    assert state.take_updates().waves == []  # nothing new
    now[0] += 6.0
    assert state.take_updates().tiles[0]["stale"] is True  # went stale without any message


def test_forecast_trend_is_bounded_and_detail_has_the_window() -> None:
    state = StationState(StationSettings(trend_s=120.0))
    window = {"start": 900.0, "end": 960.0, "segment": 1}
    for k in range(5):
        forecast = forecast_message("P1", 0.1 * k, 1000.0 + 60 * k, window=window)
        state.on_forecast("P1", forecast)
    state.on_forecast("P1", forecast)  # the retained forecast again, after a reconnect: no second point
    state.on_forecast("P1", forecast_message("P1", 0.4, 1150.0, window=window))  # late arrival: kept in time order
    detail = state.detail("P1")
    assert detail is not None
    assert [p["at"] for p in detail["timeline"]] == [1120.0, 1150.0, 1180.0, 1240.0]
    assert detail["risk"] == pytest.approx(0.4) and detail["forecast_window"]["end"] == 960.0
    assert state.detail("nobody") is None


def test_a_tile_that_fails_to_build_is_a_placeholder_and_a_technical_alarm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence in depth behind validation: one tile failing must not turn /api/state into a 500 for every patient."""
    state = StationState(StationSettings(beds={"P2": "7"}))
    for pid in ("P1", "P2"):
        state.on_status(pid, status_message(pid, state="streaming"))
    real = state._tile
    monkeypatch.setattr(state, "_tile", lambda view: 1 / 0 if view.patient_id == "P2" else real(view))
    snapshot = state.snapshot()
    tiles = {t["patient_id"]: t for t in snapshot["tiles"]}
    assert tiles["P1"]["state"] == "streaming"
    assert (
        tiles["P2"]["bed"] == "7" and "cannot be shown" in tiles["P2"]["rhythm"] and tiles["P2"]["strip"]["t0"] is None
    )
    assert [a["source"] for a in snapshot["technical"]] == ["station_tile"]
    assert [t["patient_id"] for t in state.take_updates().tiles] == ["P1", "P2"]
    state.raise_technical("station_feed", "x")
    state.raise_technical("station_feed", "y")
    assert [(a["source"], a["detail"], a["count"]) for a in state.technical()][1] == ("station_feed", "y", 2)
    state.clear_technical("station_feed")
    assert [a["source"] for a in state.technical()] == ["station_tile"]
