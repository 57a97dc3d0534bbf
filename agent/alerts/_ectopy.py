"""The ectopy advisory: "PVC burden high", from the rhythm monitor's measured windows (docs/ALERTS.md section 14).

Like a bedside monitor's "PVCs/min high" alarm it is a measured condition, not a forecast, and of low priority: a
nurse should look, nothing is under way that needs a response in seconds. It is judged on the monitor's shortest
window at each refresh (every ``monitor.interval_s`` of signal): *high* at or above ``raise_at``, raised once high
at every refresh for ``min_duration_s``; while raised a refresh still counts as high down to ``clear_below``
(hysteresis), and it clears once the burden has stayed under that for ``clear_after_s``. A window with too few beats
or too little measurable signal (quality "poor") is not judged at all: a noise burst neither raises nor clears it.

Durations are stream seconds (the window ends the monitor states), so replay speed and monitor load do not change
them; a refresh whose window ends before the last one judged (a new segment: the device restarted) starts afresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .settings import EctopyAdvisory

if TYPE_CHECKING:  # annotations only: importing it at run time pulls in scipy
    from core.measurements import EctopyBurden

__all__ = ["Judgement", "ectopy_evidence", "ectopy_text", "judge"]


@dataclass(frozen=True)
class Judgement:
    """One refresh seen through the advisory's thresholds."""

    window: EctopyBurden  # the window judged (the monitor's shortest)
    high: bool  # at or above the level that applies (raise_at, or clear_below while raised)


def judge(windows: Sequence[EctopyBurden], rule: EctopyAdvisory, holding: bool) -> Judgement | None:
    """The refresh's verdict on its shortest window; None when that window cannot be judged (too few beats, or
    less than half of it measurable)."""
    if not windows:
        return None
    window = windows[0]
    if window.pvc_burden is None or window.beats < rule.min_beats or window.quality == "poor":
        return None
    level = rule.clear_below if holding else rule.raise_at
    return Judgement(window, window.pvc_burden >= level)


def ectopy_evidence(lead: str | None, windows: Sequence[EctopyBurden], lasted_s: float) -> dict[str, Any]:
    """The alert's evidence: the shortest window's rate and share at the top level (as every alert states them),
    every window under ``ectopy``."""
    window = windows[0]
    return {
        "lead": lead,
        "window_s": window.window_s,
        "t_end_s": window.t_end_s,
        "hr_bpm": _rounded(window.hr_bpm),
        "pvc_per_min": _rounded(window.pvc_per_min),
        "pac_per_min": _rounded(window.pac_per_min),
        "usable_fraction": _rounded(window.clean_s / window.covered_s if window.covered_s else None),
        "ectopy": {"lasted_s": round(lasted_s, 1), "windows": [w.as_dict() for w in windows]},
    }


def ectopy_text(lead: str | None, windows: Sequence[EctopyBurden], lasted_s: float, rule: EctopyAdvisory) -> str:
    """E.g. ``PVC burden high (measured, an advisory, not a forecast): 21% of beats were PVCs over the last 60 s
    (threshold 10%, high at every refresh for 75 s); 19.6 PVC/min, HR 95 bpm, 2 couplets, no ventricular runs.
    PVC burden last 300 s: 20%. Lead V1, measured signal good (60 of 60 s).``"""
    window = windows[0]
    burden = 100 * (window.pvc_burden or 0.0)
    rate = f"{window.pvc_per_min:.1f} PVC/min" if window.pvc_per_min is not None else "PVC rate n/a"
    hr = f"HR {window.hr_bpm:.0f} bpm" if window.hr_bpm is not None else "HR not measurable"
    runs = (
        f"{window.ventricular_runs} ventricular runs (longest {window.longest_ventricular_run} beats)"
        if window.ventricular_runs
        else "no ventricular runs"
    )
    head = (
        f"PVC burden high (measured, an advisory, not a forecast): {burden:.0f}% of beats were PVCs over the last "
        f"{window.window_s:.0f} s (threshold {100 * rule.raise_at:.0f}%, high at every refresh for {lasted_s:.0f} s)"
        f"; {rate}, {hr}, {window.couplets} couplets, {runs}."
    )
    longer = [f"last {w.window_s:.0f} s: {100 * w.pvc_burden:.0f}%" for w in windows[1:] if w.pvc_burden is not None]
    where = f"Lead {lead}" if lead else "Best lead"
    tail = f" {where}, measured signal {window.quality} ({window.clean_s:.0f} of {window.covered_s:.0f} s)."
    return head + (f" PVC burden {', '.join(longer)}." if longer else "") + tail


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
