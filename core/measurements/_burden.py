"""Ectopy burden, runs, rate and measurable share of a recent window, from a log of labelled beats.

Why from a log and not from one analysis of the whole window: a monitor refreshing "the last 5 minutes" every
15 s would analyse 5 minutes again each time; it analyses only the new seconds (with some context before them),
keeps their beats, and summarises any window of the log here. The caller leaves out the beats that sat in noise
(:func:`core.measurements.noisy_beats`) and marks the interval after a left-out stretch as unknown (NaN), so a
noise burst neither adds false PVCs nor joins the beats on either side into one run.

The burden is a share of beats, as a Holter report states it (ventricular beats in couplets and runs included);
per-minute rates are per *measurable* minute, so a strip that was half noise does not halve them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from ._metrics import _ventricular_runs

__all__ = ["DEGRADED_BELOW", "POOR_BELOW", "EctopyBurden", "WindowQuality", "ectopy_burden", "window_quality"]

WindowQuality = Literal["good", "degraded", "poor"]
DEGRADED_BELOW: Final = 0.9  # under 90 % of a window measurable (more than 6 s of a minute lost): degraded
POOR_BELOW: Final = 0.5  # under half measurable: its numbers rest on less signal than they leave out


@dataclass(frozen=True)
class EctopyBurden:
    """One window's numbers. ``None`` means "not measurable here", never zero."""

    window_s: float  # the window asked for, ending at t_end_s
    t_end_s: float  # stream seconds of the window's end
    covered_s: float  # seconds of the window the log holds (less while a stream is young)
    clean_s: float  # seconds of it that were measurable: usable signal outside noise
    quality: WindowQuality  # good / degraded / poor, from clean_s / covered_s
    beats: int  # beats counted (outside noise)
    hr_bpm: float | None  # 60000 / mean RR of the measurable intervals (ectopic beats included)
    pvc: int
    pac: int
    pvc_burden: float | None  # share of the counted beats labelled 'V'
    pac_burden: float | None  # share labelled 'A'
    pvc_per_min: float | None  # per measurable minute
    pac_per_min: float | None
    couplets: int  # runs of exactly two 'V'
    ventricular_runs: int  # runs of three or more 'V'
    longest_ventricular_run: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, floats rounded for a status message."""
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def window_quality(clean_s: float, covered_s: float) -> WindowQuality:
    """'good', 'degraded' or 'poor' by the measurable share of a window (nothing covered is poor)."""
    share = clean_s / covered_s if covered_s > 0 else 0.0
    if share < POOR_BELOW:
        return "poor"
    return "degraded" if share < DEGRADED_BELOW else "good"


def ectopy_burden(
    beat_s: npt.NDArray[np.float64],
    symbols: npt.NDArray[np.str_],
    rr_prev_ms: npt.NDArray[np.float64],
    second_s: npt.NDArray[np.float64],
    clean: npt.NDArray[np.float64],
    t_end_s: float,
    window_s: float,
) -> EctopyBurden:
    """Summarise the beats and seconds of ``[t_end_s - window_s, t_end_s)``.

    Parameters
    ----------
    beat_s, symbols, rr_prev_ms : (n_beats,) beat times (stream seconds, ascending), labels 'N' / 'A' / 'V', and
        the RR interval ending at each beat (NaN where unknown: after a gap or a stretch of noise; such a NaN also
        ends a ventricular run).
    second_s, clean : (n_seconds,) start of each logged second and the share of it that was measurable (0-1).
    t_end_s, window_s : the window.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(0.5, 60.0, 0.75)  # 80 beats in 60 s, every fifth a PVC
    >>> sym = np.array(["V" if i % 5 == 4 else "N" for i in range(t.size)])
    >>> rr = np.concatenate(([np.nan], np.full(t.size - 1, 750.0)))
    >>> b = ectopy_burden(t, sym, rr, np.arange(60.0), np.ones(60), t_end_s=60.0, window_s=60.0)
    >>> b.beats, b.pvc, b.pvc_burden, round(b.hr_bpm), b.quality
    (80, 16, 0.2, 80, 'good')
    """
    start = t_end_s - window_s
    inside = (beat_s >= start) & (beat_s < t_end_s)
    sym, rr = symbols[inside], rr_prev_ms[inside]
    seconds = (second_s >= start) & (second_s < t_end_s)
    covered_s, clean_s = float(seconds.sum()), float(clean[seconds].sum())
    n, n_v, n_a = int(sym.size), int((sym == "V").sum()), int((sym == "A").sum())
    runs = _ventricular_runs(sym, rr)
    finite = rr[np.isfinite(rr)]
    minutes = clean_s / 60.0
    return EctopyBurden(
        window_s=float(window_s),
        t_end_s=float(t_end_s),
        covered_s=covered_s,
        clean_s=round(clean_s, 3),
        quality=window_quality(clean_s, covered_s),
        beats=n,
        hr_bpm=60000.0 / float(finite.mean()) if finite.size >= 2 else None,
        pvc=n_v,
        pac=n_a,
        pvc_burden=n_v / n if n else None,
        pac_burden=n_a / n if n else None,
        pvc_per_min=n_v / minutes if minutes > 0 else None,
        pac_per_min=n_a / minutes if minutes > 0 else None,
        couplets=int((runs == 2).sum()),
        ventricular_runs=int((runs >= 3).sum()),
        longest_ventricular_run=int(runs.max(initial=0)),
    )
