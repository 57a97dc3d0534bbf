"""The rhythm monitor (issue 22, ectopy and noise surfaced): the agent's own ingest worker is fed a WFDB record the
test writes (about 20 % PVCs, a 20-s burst of electrode motion), a chunk a second as the device would send it, and
the monitor refreshes every 15 s of signal. Its status field states the PVC burden of the last minute and the last
5 minutes within 5 points of the annotations, and the burst as degraded quality for its duration, good after it.
No broker: tests/agent/test_ectopy_replay.py runs the same record through ``main.py replay`` and mosquitto."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.ingest import RawWave
from agent.ingest_worker import IngestWorker
from agent.patient import CompletedWindows
from agent.rhythm_monitor import RhythmMonitor
from agent.settings import MonitorSettings, Settings
from agent.station._state import quality_badge, with_measured_quality
from core.measurements import EctopyBurden
from core.wire import decode_status
from simulators.faults import Publish, device_actions
from simulators.records import AnnotatedRecord

from .ectopy_record import BURST_S, annotated_pvc_burden, read_pvc_record, write_pvc_record

PID = "bed-22"
INTERVAL_S = 15.0


class _Connection:
    """The MQTT connection as the ingest worker uses it; keeps the status messages it publishes."""

    def __init__(self) -> None:
        self.statuses: list[dict[str, Any]] = []

    def ack(self, mid: int, qos: int) -> None:
        return None

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        if topic.endswith("/status"):
            self.statuses.append(json.loads(payload))


class _Sink:
    """Stands in for the alert service: keeps every refresh the monitor hands on."""

    def __init__(self) -> None:
        self.refreshes: list[tuple[str, tuple[EctopyBurden, ...], str | None]] = []

    def on_ectopy(self, patient_id: str, windows: Sequence[EctopyBurden], lead: str | None = None) -> None:
        self.refreshes.append((patient_id, tuple(windows), lead))


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> AnnotatedRecord:
    written: AnnotatedRecord = read_pvc_record(write_pvc_record(tmp_path_factory.mktemp("wfdb")))
    return written


def stream(record: AnnotatedRecord, monitor: RhythmMonitor, worker: IngestWorker) -> list[dict[str, Any]]:
    """Every chunk through the ingest worker, the monitor looking after each; the ``measured`` field after every
    refresh, in order."""
    payloads = [
        a.payload
        for a in device_actions(record, PID, t_start=1.7e9, encoding="b64", rng=np.random.default_rng(0))
        if isinstance(a, Publish)
    ]
    measured = []
    for i, payload in enumerate(payloads):
        worker.handle_batch([RawWave(PID, payload, i, 1, 0.0)])
        if monitor.refresh_due():
            measured.append(monitor.status_fields(PID)["measured"])
    return measured


@pytest.fixture(scope="module")
def run(record: AnnotatedRecord) -> tuple[list[dict[str, Any]], _Sink, IngestWorker, RhythmMonitor, _Connection]:
    connection = _Connection()
    completed: list[CompletedWindows] = []
    worker = IngestWorker(Settings(), connection, None, completed.append)  # type: ignore[arg-type]
    sink = _Sink()
    monitor = RhythmMonitor(MonitorSettings(), worker, sink)
    worker.extra_status = monitor.status_fields
    return stream(record, monitor, worker), sink, worker, monitor, connection


def overlaps_burst(start_s: float, end_s: float) -> bool:
    return bool(start_s < BURST_S[1] and end_s > BURST_S[0])


def test_refreshed_every_interval_of_signal(run: Any) -> None:
    measured = run[0]
    ends = [m["t_end_s"] for m in measured]
    assert len(ends) >= 14 and set(np.diff(ends)) == {INTERVAL_S}  # at least every 30 s, as asked
    assert all(m["interval_s"] == INTERVAL_S and m["lead"] in ("II", "V1") for m in measured)


def test_pvc_burden_within_5_points_of_the_annotations(run: Any, record: AnnotatedRecord) -> None:
    last = run[0][-1]
    one_min, five_min = last["windows"]
    assert (one_min["window_s"], five_min["window_s"]) == (60.0, 300.0)
    for window in (one_min, five_min):
        truth = annotated_pvc_burden(record, window["t_end_s"], window["window_s"])
        assert abs(window["pvc_burden"] - truth) <= 0.05, (window, truth)
    assert five_min["pvc_burden"] == pytest.approx(0.2, abs=0.05)
    assert five_min["hr_bpm"] == pytest.approx(72.0, abs=6.0)
    assert five_min["beats"] >= 200 and five_min["covered_s"] == last["t_end_s"]
    for m in run[0]:  # every clean minute, too
        window = m["windows"][0]
        if window["covered_s"] == 60.0 and not overlaps_burst(m["t_end_s"] - 60.0, m["t_end_s"]):
            truth = annotated_pvc_burden(record, m["t_end_s"], 60.0)
            assert abs(window["pvc_burden"] - truth) <= 0.05, (m["t_end_s"], window["pvc_burden"], truth)


def test_noise_burst_is_degraded_quality_for_its_duration_then_good(run: Any) -> None:
    for m in run[0]:
        newest = (m["t_end_s"] - INTERVAL_S, m["t_end_s"])
        if overlaps_burst(*newest):
            assert m["quality"] in ("degraded", "poor"), m
        elif newest[0] >= BURST_S[1] + 2.0 or newest[1] <= BURST_S[0]:
            assert m["quality"] == "good", m
        window = m["windows"][0]
        if overlaps_burst(m["t_end_s"] - 60.0, m["t_end_s"]) and m["t_end_s"] >= BURST_S[0] + 15.0:
            assert window["quality"] != "good" and window["clean_s"] <= 60.0 - 10.0, m
    assert run[0][-1]["windows"][0]["quality"] == "good"  # the last minute is clean again


def test_the_burst_does_not_add_pvcs(run: Any, record: AnnotatedRecord) -> None:
    during = next(m for m in run[0] if m["t_end_s"] >= BURST_S[1] + 10.0)["windows"][0]
    truth = annotated_pvc_burden(record, during["t_end_s"], 60.0)
    assert during["pvc_burden"] <= truth + 0.05  # the burst's dozens of false wide "beats" are left out


def test_status_carries_the_measurements_and_the_station_reads_noise(run: Any) -> None:
    measured, _, worker, _, connection = run
    worker.publish_status(worker.patients[PID], 1.7e9 + 300.0)
    status = decode_status(json.dumps(connection.statuses[-1]).encode(), PID)
    assert (
        status.measured is not None
        and status.measured.windows[1].pvc_burden == measured[-1]["windows"][1]["pvc_burden"]
    )
    noisy = next(m for m in measured if m["quality"] != "good")
    degraded = status.model_copy(update={"measured": status.measured.model_copy(update={"quality": noisy["quality"]})})
    lead = status.measured.lead
    assert lead is not None
    merged = with_measured_quality({**status.signal_quality, lead: "good"}, degraded.measured)
    assert merged[lead] == "noisy" and quality_badge(merged)[0] == "noisy"


def test_every_refresh_reaches_the_ectopy_advisory(run: Any) -> None:
    measured, sink, *_ = run
    assert len(sink.refreshes) == len(measured)
    pid, windows, lead = sink.refreshes[-1]
    assert (pid, lead, [w.window_s for w in windows]) == (PID, measured[-1]["lead"], [60.0, 300.0])


def test_a_patient_ingest_let_go_is_forgotten(record: AnnotatedRecord) -> None:
    worker = IngestWorker(Settings(), _Connection(), None, lambda c: None)  # type: ignore[arg-type]
    monitor = RhythmMonitor(MonitorSettings(interval_s=5.0), worker)
    stream(record, monitor, worker)
    assert monitor.status_fields(PID)
    worker.release([PID])
    monitor.refresh_due()
    assert monitor.status_fields(PID) == {}


def test_monitor_settings_refuse_slow_or_unordered_windows() -> None:
    with pytest.raises(ValueError, match="less than or equal to 30"):
        MonitorSettings(interval_s=60.0)
    with pytest.raises(ValueError, match="shortest first"):
        MonitorSettings(windows_s=(300, 60))


def test_default_config_enables_the_monitor(tmp_path: Path) -> None:
    from agent.settings import load_settings

    settings = load_settings(Path("config/default.yaml"), env={})
    assert settings.monitor == MonitorSettings()
    assert settings.alerts.defaults.ectopy.raise_at == 0.10


def test_the_station_words_each_window_in_one_line(run: Any) -> None:
    from agent.station._state import measured_lines
    from core.wire import MeasuredRhythm

    one_min, five_min = measured_lines(MeasuredRhythm.model_validate(run[0][-1]))
    assert one_min.startswith("Last 1 min: PVC ") and five_min.startswith("Last 5 min: PVC ")
    assert "of beats (" in five_min and "; HR 7" in five_min and five_min.endswith("measurable)")
    assert measured_lines(None) == []


def test_a_patient_on_hold_is_not_measured(record: AnnotatedRecord) -> None:
    """A cluster replica replaying a partition it took over holds its patients: history is not stated as now."""
    worker = IngestWorker(Settings(), _Connection(), None, lambda c: None)  # type: ignore[arg-type]
    held = [True]
    monitor = RhythmMonitor(MonitorSettings(), worker, hold=lambda pid: held[0])
    assert stream(record, monitor, worker) == [] and monitor.status_fields(PID) == {}
    held[0] = False
    assert monitor.refresh_due() == 1 and monitor.status_fields(PID)["measured"]["t_end_s"] == 239.0
