"""Window measurements kept for reuse: the window before a forecast's is usually one already measured.

Each forecast measures its window and, for trends (heart-rate change, ectopy per minute before), the window of the
same length before it. At a 60-s cadence and a 300-s window, that earlier window is the forecast window of five
forecasts ago. Measuring a 300-s window of two leads costs ~0.16 s on the 2-core development machine, a third of a
forecast (docs/BENCHMARKS.md, "Agent end to end"), so each patient's recent window measurements are kept and the
nearest one stands in for the earlier window when it ended within ``tolerance_s`` of where it should.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from core.measurements import Measurements

__all__ = ["MeasuredWindow", "MeasuredWindows"]


@dataclass(frozen=True)
class MeasuredWindow:
    """One measured window of a patient's stream: its segment, where it ended (segment sample clock), and fs."""

    segment: int
    end_index: int
    fs: float
    measurements: Measurements


@dataclass
class MeasuredWindows:
    """Per patient, the windows measured in the last ``window_s + tolerance_s`` seconds of its stream.

    Why a tolerance: forecasts come when the scheduler finds a patient due, a second or two late each time, so five
    forecasts ago ended a few seconds before the ideal earlier window's end. Within 10 s of a 300-s window (3 %),
    per-minute rates and the mean heart rate barely move; further off, the earlier window is measured afresh.
    """

    window_s: float
    tolerance_s: float = 10.0
    _by_patient: dict[str, deque[MeasuredWindow]] = field(default_factory=dict)

    def remember(self, patient_id: str, window: MeasuredWindow) -> None:
        """Keep ``window``; drop this patient's windows of another segment or too old to be an earlier window."""
        kept = self._by_patient.setdefault(patient_id, deque())
        oldest = window.end_index - round((self.window_s + self.tolerance_s) * window.fs)
        while kept and (kept[0].segment != window.segment or kept[0].end_index < oldest):
            kept.popleft()
        kept.append(window)

    def ending_near(self, patient_id: str, segment: int, end_index: int, fs: float) -> Measurements | None:
        """Measurements of the kept window of ``segment`` whose end is nearest ``end_index``, if within tolerance."""
        tolerance = self.tolerance_s * fs
        near = [w for w in self._by_patient.get(patient_id, ()) if w.segment == segment and w.fs == fs]
        best = min(near, key=lambda w: abs(w.end_index - end_index), default=None)
        if best is None or abs(best.end_index - end_index) > tolerance:
            return None
        return best.measurements

    def forget(self, patient_id: str) -> None:
        self._by_patient.pop(patient_id, None)
