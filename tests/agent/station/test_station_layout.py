"""Issue #21 on the server side: fixed bed layout (one beds configuration, within the patient limits), the alarm
state as its own cue (priority and acknowledged apart), and honest staleness (values blanked, old forecasts hidden).
The page's side is in test_station_alarm_display.py."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from agent.settings import Settings
from agent.station import StationSettings, StationState
from agent.station._state import alarm_state
from core.errors import ProtocolError

from .test_station_mute import NOW, Clock
from .test_station_state import FS, alert_event, chunk, forecast_message, status_message, wire_alert

BEDS = {"P3": "12A", "P1": "12B", "P2": "14"}


def _state(**settings: object) -> tuple[StationState, Clock]:
    clock = Clock()
    return StationState(StationSettings.model_validate(settings), clock=clock), clock


def _wave(state: StationState, pid: str, t0: float = NOW, seconds: float = 1.0) -> None:
    state.on_wave(chunk(pid, 0, t0, np.zeros((2, round(seconds * FS)))))


def _order(state: StationState) -> list[str]:
    return [t["patient_id"] for t in state.snapshot()["tiles"]]


def test_alarm_state_keeps_priority_and_acknowledgement_apart() -> None:
    assert alarm_state([]) is None
    medium = wire_alert("a", priority="medium")
    high_acked = wire_alert("b", "acknowledged", "high")
    assert alarm_state([medium]) == {"priority": "medium", "acknowledged": False, "advisory": True}  # not high
    assert alarm_state([medium, high_acked]) == {"priority": "high", "acknowledged": True, "advisory": True}
    present = {**wire_alert("c", priority="high"), "kind": "present_rhythm"}
    assert alarm_state([high_acked, present]) == {"priority": "high", "acknowledged": False, "advisory": False}


def test_configured_beds_keep_their_places_through_data_acks_and_new_alerts() -> None:
    state, _ = _state(beds=BEDS)
    assert _order(state) == ["P3", "P1", "P2"]  # empty beds are laid out before any data
    empty = state.snapshot()["tiles"][0]
    assert (empty["bed"], empty["stale"], empty["hr_bpm"], empty["rhythm"]) == (
        "12A",
        True,
        None,
        "no data from this bed",
    )
    for pid in ("P0", "P2", "P1"):
        _wave(state, pid)
    first = state.take_updates()
    assert first.order == ["P3", "P1", "P2", "P0"]  # an unconfigured patient after the beds
    state.on_alert("P2", alert_event("new", wire_alert("a1", priority="high", pid="P2"), pid="P2"))
    updates = state.take_updates()
    assert updates.order is None and _order(state) == ["P3", "P1", "P2", "P0"]  # a new alert moves nothing
    state.on_alert("P2", alert_event("update", wire_alert("a1", "acknowledged", "high", "P2"), "acknowledged", "P2"))
    updates = state.take_updates()
    assert updates.order is None and updates.tiles[0]["alarm"]["acknowledged"] is True
    state.on_status("P1", status_message("P1", state="evicted"))
    updates = state.take_updates()
    assert updates.order is None and _order(state) == ["P3", "P1", "P2", "P0"]  # the bed stays, empty
    assert [(t["patient_id"], t["rhythm"]) for t in updates.tiles] == [("P1", "no data from this bed")]


def test_configured_beds_always_have_room_under_the_patient_limit() -> None:
    state, _ = _state(beds={"B1": "1", "B2": "2"}, max_patients=3)
    _wave(state, "X1")
    with pytest.raises(ProtocolError, match="at most 3 patients"):
        _wave(state, "X2")  # the third slot is B1's and B2's to fill
    _wave(state, "B1")
    _wave(state, "B2")
    assert set(state.patients) == {"X1", "B1", "B2"}


def test_no_signal_blanks_values_and_hides_the_old_forecast() -> None:
    state, clock = _state(stale_after_s=5.0)
    state.on_status("P1", status_message("P1", state="streaming", signal_quality={"II": "good", "V1": "good"}))
    beating = np.tile(np.sin(np.linspace(0, 20 * np.pi, round(10 * FS))) ** 31, (2, 1))  # a spike train
    state.on_wave(chunk("P1", 0, NOW, beating))
    state.on_forecast("P1", forecast_message("P1", 0.7, NOW))
    live = state.take_updates().tiles[0]
    assert (live["stale"], live["quality"], live["forecast_hidden"]) == (False, "good", None)
    assert live["hr_bpm"] is not None
    assert live["forecast"] is not None and live["last_wave_at"] == NOW

    clock.now = NOW + 5.5  # data stopped: within the stale limit plus one push, the tile is blanked
    stale = state.take_updates().tiles[0]
    assert (stale["stale"], stale["hr_bpm"], stale["quality"]) == (True, None, "no signal")
    assert stale["forecast"] is None and stale["forecast_hidden"] == "no signal: forecast hidden"
    assert stale["rhythm"] == "cannot assess" and stale["last_wave_at"] == NOW  # the page shows the age from it


def test_a_cannot_assess_alert_hides_the_retained_forecast() -> None:
    state, _ = _state()
    _wave(state, "P1")
    state.on_forecast("P1", forecast_message("P1", 0.7, NOW))
    technical = {**wire_alert("t1"), "kind": "cannot_assess", "arrhythmia": None, "horizon_s": None}
    technical.update(probability=None, threshold=None, ihe={"priority": "PL", "source": "ST"})
    state.on_alert("P1", alert_event("new", technical))
    tile = state.take_updates().tiles[0]
    assert tile["forecast"] is None and tile["forecast_hidden"].startswith("forecasts suppressed")
    assert tile["quality"] == "cannot assess"


def test_one_beds_configuration_shared_with_the_hospital_identity_and_the_limits() -> None:
    hospital = {"patients": {"P2": {"mrn": "M2", "bed": "3"}, "P1": {"mrn": "M1", "bed": "2"}, "P3": {"mrn": "M3"}}}
    assert Settings.model_validate({"hospital": hospital}).station.beds == {"P2": "3", "P1": "2"}  # in order
    refused = [
        ({"station": {"beds": {"P1": "9"}}, "hospital": hospital}, "hospital.patients.P1.bed is '2'"),
        ({"station": {"beds": {"X1": "9"}}, "buffer": {"provisioned_patients": ["P*"]}}, "provisioned"),
        ({"station": {"beds": {"P1": "1", "P2": "2"}}, "buffer": {"max_patients": 1}}, "buffer.max_patients"),
        ({"station": {"beds": {"P1": "1", "P2": "2"}, "max_patients": 1}}, "station.max_patients"),
        ({"station": {"beds": {"P/1": "1"}}}, "not a valid patient id"),
        ({"station": {"beds": {"P1": "a\nb"}}}, "printable characters"),
    ]
    for data, message in refused:
        with pytest.raises(ValidationError, match=message.replace(".", r"\.")):
            Settings.model_validate(data)
