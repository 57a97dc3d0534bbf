"""Present-rhythm detection: is AF or VT under way at the end of the measured window, and for how long?

Read from the agent's own measurements only (``core.measurements.rhythm_spans`` on the best lead of the recent
window), never from the language model: its rhythm output answers "which rhythm in h seconds", a forecast, and a
present-rhythm alert relabelling a forecast would be the very confusion this alert kind exists to remove.

A rhythm's *run* is the unbroken row of spans at the end of the window that look like it; its length is a lower
bound on how long the rhythm has lasted, in whole spans (the oldest may straddle the onset). Its *gap* is the row of
spans at the end that do not. The policy extends either across measurements while each new one reaches back to the
end of the previous window, so a short window (or a long one) states durations in stream seconds either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median
from typing import TYPE_CHECKING, Any, Final

from .settings import AfDetection, VtDetection

if TYPE_CHECKING:  # annotations only: importing it at run time pulls in scipy
    from core.measurements import RhythmSpan

__all__ = ["MIN_VENTRICULAR_RUN", "RhythmRun", "absent_s", "measured_run"]

MIN_VENTRICULAR_RUN: Final = 3  # a ventricular run is three or more consecutive ventricular beats (by definition)


@dataclass(frozen=True)
class RhythmRun:
    """The spans at the end of the measured window that look like ``rhythm``, oldest first (empty: not now)."""

    rhythm: str
    spans: tuple[RhythmSpan, ...]

    @property
    def present(self) -> bool:
        return bool(self.spans)

    @property
    def run_s(self) -> float:
        return sum(s.end_s - s.start_s for s in self.spans)

    def summary(self, lasted_s: float) -> dict[str, Any]:
        """What the alert states about the run: how long, how fast, how irregular, how ventricular."""
        rates = [s.hr_bpm for s in self.spans if s.hr_bpm is not None]
        indices = [s.rr_irregular_index for s in self.spans if s.rr_irregular_index is not None]
        ventricular = [s.ventricular_fraction for s in self.spans if s.ventricular_fraction is not None]
        return {
            "rhythm": self.rhythm,
            "lasted_s": round(lasted_s, 1),
            "spans": len(self.spans),
            "hr_bpm": _rounded(sum(rates) / len(rates) if rates else None),
            "rr_irregular_index": _rounded(median(indices) if indices else None),
            "ventricular_fraction": _rounded(sum(ventricular) / len(ventricular) if ventricular else None),
            "longest_ventricular_run": max((s.longest_ventricular_run for s in self.spans), default=0),
        }


def measured_run(
    rhythm: str, spans: tuple[RhythmSpan, ...], detection: AfDetection | VtDetection, holding: bool = False
) -> RhythmRun:
    """The trailing run of spans that meet ``detection``'s rule for ``rhythm`` ("af" or "vt"); ``holding`` (an
    alert is active) applies the lower AF hold level."""
    n = _trailing(_verdicts(spans, detection, holding))
    return RhythmRun(rhythm, spans[len(spans) - n :])


def absent_s(spans: tuple[RhythmSpan, ...], detection: AfDetection | VtDetection, window_s: float) -> float:
    """Seconds at the end of the window in which an active alert's rhythm no longer holds; a window too short to
    hold one span shows no rhythm at all, so it counts as absent throughout."""
    if not spans:
        return window_s
    n = _trailing([not looks for looks in _verdicts(spans, detection, holding=True)])
    return sum(span.end_s - span.start_s for span in spans[len(spans) - n :])


def _verdicts(spans: tuple[RhythmSpan, ...], detection: AfDetection | VtDetection, holding: bool) -> list[bool]:
    """Per span, whether it looks like the rhythm. VT must also still be going when the window ends (it ends in a
    ventricular run): a 10-s span can be mostly VT that stopped two seconds ago, and VT is not then "now"."""
    looks = [_looks_like(span, detection, holding) for span in spans]
    if looks and isinstance(detection, VtDetection) and spans[-1].trailing_ventricular_run < MIN_VENTRICULAR_RUN:
        looks[-1] = False
    return looks


def _trailing(matches: list[bool]) -> int:
    """How many spans at the end match; the newest must, and a single span that does not is bridged when an older
    one matches again. Measured AF dips under the level in one span now and then (a burst of noise, a stretch that
    happens to look regular): one odd span must not restart a run of minutes."""
    count = pending = 0
    for match in reversed(matches):
        if match:
            count, pending = count + pending + 1, 0
        elif count and not pending:
            pending = 1
        else:
            break
    return count


def _looks_like(span: RhythmSpan, detection: AfDetection | VtDetection, holding: bool) -> bool:
    if isinstance(detection, AfDetection):
        level = detection.hold_irregular_index if holding else detection.min_irregular_index
        return span.rr_irregular_index is not None and span.rr_irregular_index >= level
    return (
        span.hr_bpm is not None
        and span.hr_bpm >= detection.min_rate_bpm
        and span.ventricular_fraction is not None
        and span.ventricular_fraction >= detection.min_ventricular_fraction
        and span.longest_ventricular_run >= MIN_VENTRICULAR_RUN
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
