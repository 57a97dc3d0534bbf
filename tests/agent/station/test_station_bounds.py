"""Issue #19 item 4 on the station: a cap on patients, evicted and silent tiles removed, retained messages of an
evicted patient kept out, bounded message sizes and histories, and drawing rings that grow with the data."""

from __future__ import annotations

import numpy as np
import pytest

from agent.station import StationSettings, StationState, WaveRing
from agent.station._messages import decode_mute_state
from agent.station._state import ACTIVE_KEPT, LIMIT_ALARM, TREND_KEPT
from agent.station._wave import FIRST_SLOTS
from core.errors import ProtocolError

from .test_station_mute import NOW, Clock, mute_state
from .test_station_state import FS, alert_event, chunk, forecast_message, status_message, wire_alert


def _state(**settings: object) -> tuple[StationState, Clock]:
    clock = Clock()
    return StationState(StationSettings.model_validate(settings), clock=clock), clock


def _wave(state: StationState, pid: str, seq: int = 0, n: int = 1) -> None:
    state.on_wave(chunk(pid, seq, NOW + seq, np.zeros((2, n))))


def test_one_sample_waves_on_new_ids_stop_at_the_cap_with_an_alarm_and_cost_kilobytes() -> None:
    state, _ = _state(max_patients=50)
    refused = 0
    for i in range(2000):
        try:
            _wave(state, f"n{i:05d}")
        except ProtocolError as exc:  # the feed counts these under ("wave", "patient_limit")
            assert exc.reason == "patient_limit"
            refused += 1
    assert len(state.patients) == 50 and refused == 1950
    assert [t["source"] for t in state.technical()] == [LIMIT_ALARM]
    full = WaveRing(300.0, 125.0)
    full.append(chunk("P", 0, NOW, np.zeros((2, round(300 * FS)))))
    for view in state.patients.values():
        assert view.ring.nbytes == FIRST_SLOTS * (8 + 2 * 4)  # 4 kB, where a full 300-s strip is 600 kB
        assert view.ring.nbytes * 100 < full.nbytes
    state.on_status("n00000", status_message("n00000", state="evicted"))
    assert state.technical() == []  # a slot is free again
    _wave(state, "n01999")
    assert "n01999" in state.patients


def test_an_evicted_patient_is_removed_and_its_retained_messages_do_not_bring_it_back() -> None:
    state, _ = _state()
    for pid in ("P1", "P2"):
        _wave(state, pid)
    state.take_updates()
    state.on_status("P1", status_message("P1", state="evicted"))
    updates = state.take_updates()
    assert updates.order == ["P2"] and set(state.patients) == {"P2"}  # the page drops the tile not in the order
    # a reconnect delivers P1's retained messages again, in any order: none of them brings the tile back
    state.on_forecast("P1", forecast_message("P1", 0.7, NOW - 100))
    state.on_mute("P1", decode_mute_state(mute_state(), "P1"))
    state.on_alert("P1", alert_event("end", wire_alert("a1", state="resolved")))
    state.on_status("P1", status_message("P1", state="evicted"))
    assert set(state.patients) == {"P2"} and [t["patient_id"] for t in state.snapshot()["tiles"]] == ["P2"]
    assert state.detail("P1") is None
    _wave(state, "P1")  # the patient streams again: the agent holds it again
    assert set(state.patients) == {"P1", "P2"}


def test_a_retained_forecast_first_then_the_evicted_status_removes_the_tile() -> None:
    state, _ = _state()
    state.on_forecast("P3", forecast_message("P3", 0.2, NOW - 50))  # arrives before the status on a reconnect
    assert "P3" in state.patients
    state.on_status("P3", status_message("P3", state="evicted"))
    assert "P3" not in state.patients
    state.on_status("P3", status_message("P3", state="streaming"))  # the agent holds it again
    assert "P3" in state.patients


def test_a_silent_tile_is_forgotten_unless_it_has_an_active_alert() -> None:
    state, clock = _state(forget_after_s=900.0)
    for pid in ("quiet", "alarmed", "talking"):
        _wave(state, pid)
    state.on_alert("alarmed", alert_event("new", wire_alert("a1", pid="alarmed"), pid="alarmed"))
    state.take_updates()
    clock.now = NOW + 600
    state.on_status("talking", status_message("talking", state="stale"))  # the agent still holds it
    state.on_forecast("quiet", forecast_message("quiet", 0.1, NOW + 600))  # a forecast is not a sign of life
    clock.now = NOW + 901
    updates = state.take_updates()
    assert set(state.patients) == {"alarmed", "talking"} and updates.order == ["alarmed", "talking"]
    clock.now = NOW + 1600
    state.take_updates()
    assert set(state.patients) == {"alarmed"}  # an alarm is never hidden by a timeout


def test_messages_larger_than_max_message_bytes_are_refused_before_they_are_kept() -> None:
    state, _ = _state(max_message_bytes=2048)
    padded = [{"event": "gap", "seq": i, "samples": 250} for i in range(60)]
    with pytest.raises(ProtocolError, match=r"station\.max_message_bytes") as info:
        state.on_status("P1", status_message("P1", state="streaming", events=padded))
    assert info.value.reason == "oversize" and "P1" not in state.patients
    state.on_status("P1", status_message("P1", state="streaming", events=padded[:3]))
    assert state.patients["P1"].status is not None


def test_active_alerts_and_the_trend_are_bounded_per_patient() -> None:
    state, _ = _state(trend_s=86400.0)
    for i in range(ACTIVE_KEPT):
        state.on_alert("P1", alert_event("new", wire_alert(f"a{i}")))
    with pytest.raises(ProtocolError) as info:
        state.on_alert("P1", alert_event("new", wire_alert("one-too-many")))
    assert info.value.reason == "too_many_alerts" and len(state.patients["P1"].alerts) == ACTIVE_KEPT
    state.on_alert("P1", alert_event("update", wire_alert("a0", state="acknowledged")))  # a known one still updates
    forecast = forecast_message("P1", 0.3, NOW)
    for i in range(TREND_KEPT + 100):
        state.on_forecast("P1", forecast.model_copy(update={"published_at": NOW + i}))
    trend = state.patients["P1"].trend
    assert len(trend) == TREND_KEPT and trend[-1][0] == NOW + TREND_KEPT + 99


def test_the_drawing_ring_grows_to_its_capacity_and_keeps_every_sample() -> None:
    ring = WaveRing(capacity_s=20.0, draw_hz=125.0)  # 2,500 slots at 125 Hz
    ramp = np.arange(round(30 * FS), dtype=np.float32)
    sizes = []
    for seq, start in enumerate(range(0, ramp.size, 125)):
        block = ramp[start : start + 125]
        ring.append(chunk("P1", seq, NOW + start / FS, np.vstack([block, -block])))
        sizes.append(ring.nbytes)
    assert sizes[0] == FIRST_SLOTS * (8 + 2 * 4) and sizes[-1] == 2500 * (8 + 2 * 4) and sorted(sizes) == sizes
    strip = ring.last(20.0)
    np.testing.assert_array_equal(strip.p_signal[:, 0], ramp[::2][-2500:])
    np.testing.assert_allclose(strip.t, NOW + np.arange(ramp.size)[::2][-2500:] / FS)
