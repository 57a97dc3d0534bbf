"""Issue #20: a forecast's earlier (trend) window is an earlier forecast's window when one ended there, not measured
twice; further off than the tolerance, or in another segment, it is measured afresh."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from agent.forecasting import ModelStats, ModelWorker
from agent.ingest_worker import SignalSnapshot
from agent.measured_windows import MeasuredWindow, MeasuredWindows
from core.measurements import measure_leads
from simulators.scenarios import generate_scenario

FS = 250.0
WINDOW_S = 60


def _window(segment: int, end_s: float, tag: float) -> MeasuredWindow:
    return MeasuredWindow(segment, round(end_s * FS), FS, SimpleNamespace(hr_bpm=tag))  # type: ignore[arg-type]


def test_the_nearest_window_within_tolerance_stands_in() -> None:
    kept = MeasuredWindows(window_s=300.0, tolerance_s=10.0)
    for end_s in (300.0, 360.0, 421.0):
        kept.remember("P1", _window(1, end_s, end_s))
    found = kept.ending_near("P1", 1, round(425.0 * FS), FS)
    assert found is not None and found.hr_bpm == 421.0
    assert kept.ending_near("P1", 1, round(395.0 * FS), FS) is None  # 35 s from the nearest
    assert kept.ending_near("P1", 2, round(421.0 * FS), FS) is None  # another segment: another stream
    assert kept.ending_near("P2", 1, round(421.0 * FS), FS) is None


def test_old_windows_and_other_segments_are_dropped() -> None:
    kept = MeasuredWindows(window_s=300.0, tolerance_s=10.0)
    kept.remember("P1", _window(1, 100.0, 1))
    kept.remember("P1", _window(1, 500.0, 2))  # 400 s later: the first can never be an earlier window again
    assert kept.ending_near("P1", 1, round(100.0 * FS), FS) is None
    kept.remember("P1", _window(2, 10.0, 3))  # a new segment starts the stream afresh
    assert kept.ending_near("P1", 1, round(500.0 * FS), FS) is None
    kept.forget("P1")
    assert kept.ending_near("P1", 2, round(10.0 * FS), FS) is None


class _Ingest:
    """Snapshots of one patient's record, ending wherever the test has got to."""

    def __init__(self, p_signal: np.ndarray) -> None:
        self.p_signal, self.end = p_signal, 0

    def snapshot(self, pid: str, seconds: float) -> SignalSnapshot:
        start = max(0, self.end - round(seconds * FS))
        return SignalSnapshot(pid, 1, FS, ("II", "V1"), self.p_signal[start : self.end], {}, self.end)


def _measuring_worker(ingest: _Ingest) -> Any:
    worker: Any = object.__new__(ModelWorker)  # only what measuring touches
    worker._ingest, worker._evidence, worker.stats = ingest, None, ModelStats()
    worker.engine = SimpleNamespace(settings=SimpleNamespace(window_s=WINDOW_S))
    worker.stage = SimpleNamespace(patients={})
    worker._measured = MeasuredWindows(window_s=float(WINDOW_S))
    return worker


def test_the_forecast_after_one_window_reuses_its_measurements() -> None:
    rec = generate_scenario("sinus_ectopy", seed=3, minutes=5.0, fs=FS, leads=("II", "V1"), noise="low")
    ingest = _Ingest(rec.p_signal.astype(np.float32))
    worker = _measuring_worker(ingest)
    n = WINDOW_S * round(FS)
    ingest.end = 2 * n
    worker._measure("P1")  # two windows held, none measured before: the earlier one is measured here
    assert (worker.stats.earlier_measured, worker.stats.earlier_reused) == (1, 0)

    ingest.end = 3 * n
    worker._measure("P1")
    assert (worker.stats.earlier_measured, worker.stats.earlier_reused) == (1, 1)
    reused = worker._measured.ending_near("P1", 1, 2 * n, FS)
    fresh = measure_leads(rec.p_signal[n : 2 * n].astype(np.float64), FS, ["II", "V1"])
    assert reused is not None and reused.pvc_count == fresh.pvc_count and reused.hr_bpm == fresh.hr_bpm

    ingest.end = 4 * n + round(20 * FS)  # 20 s past the window a forecast measured: outside the tolerance
    worker._measure("P1")
    assert (worker.stats.earlier_measured, worker.stats.earlier_reused) == (2, 1)
