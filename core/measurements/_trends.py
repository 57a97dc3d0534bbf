"""Window features with trends, from one lead's labelled beats: what a forecaster's evidence and the tree baseline
read about the minutes before an onset.

Why trends: before an onset the signal is in how the rhythm changes across many beats (a rising PAC or PVC rate,
atrial runs, a drifting rate), not in any one beat; the last minute against the whole window and the second half
against the first carry most of it (docs/EVALUATION.md). Each part is computed the same way over the whole window,
its last 60 s and its two halves; NaN where undefined (too few beats), which tree models take as missing.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from ._metrics import LeadAnalysis

__all__ = ["TREND_FEATURE_NAMES", "analysis_trends", "trend_features", "ventricular_runs"]

_PART: Final = ("hr_bpm", "rr_cv", "rmssd_ms", "irregularity", "pnn50", "pac_per_min", "pvc_per_min", "vruns_per_min")
TREND_FEATURE_NAMES: Final[tuple[str, ...]] = (
    *(f"all_{k}" for k in _PART),
    *(f"last60_{k}" for k in _PART),
    *(f"delta_{k}" for k in _PART),
    "longest_vrun",
    "beats_per_s",
)
"""Order of :func:`trend_features`' vector: whole window, last 60 s, second half minus first half, then two more."""


def ventricular_runs(symbol: npt.NDArray[np.str_]) -> npt.NDArray[np.int64]:
    """Lengths of the runs of consecutive ventricular beats.

    Examples
    --------
    >>> ventricular_runs(np.array(list("NVVNVNVVV"))).tolist()
    [2, 1, 3]
    """
    edges = np.diff(np.concatenate([[0], (symbol == "V").astype(int), [0]]))
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


def _part(t_s: npt.NDArray[np.float64], symbol: npt.NDArray[np.str_], span_s: float) -> list[float]:
    """Rate, RR variability, NN irregularity, pNN50 and ectopy rates of the beats of one stretch."""
    nan = float("nan")
    minutes = max(span_s, 1.0) / 60.0
    rr = np.diff(t_s) * 1000.0
    normal_pair = (symbol[1:] == "N") & (symbol[:-1] == "N") if symbol.size > 1 else np.zeros(0, bool)
    nn = rr[normal_pair] if rr.size else rr
    dnn = np.diff(nn)
    runs = ventricular_runs(symbol)
    rmssd = float(np.sqrt(np.mean(dnn**2))) if dnn.size else nan
    return [
        60000.0 / float(rr.mean()) if rr.size >= 2 else nan,
        float(rr.std() / rr.mean()) if rr.size >= 2 else nan,
        rmssd,
        rmssd / float(nn.mean()) if dnn.size else nan,
        float(np.mean(np.abs(dnn) > 50)) if dnn.size else nan,
        float(np.sum(symbol == "A")) / minutes,
        float(np.sum(symbol == "V")) / minutes,
        float(np.sum(runs >= 3)) / minutes,
    ]


def trend_features(
    t_s: npt.NDArray[np.float64], symbol: npt.NDArray[np.str_], anchor_s: float, window_s: float
) -> npt.NDArray[np.float64]:
    """Features of the beats in [anchor - w, anchor), in :data:`TREND_FEATURE_NAMES` order.

    Parameters
    ----------
    t_s : (n_beats,) R-peak times of one lead, seconds, ascending.
    symbol : (n_beats,) beat labels 'N', 'A', 'V' (from :func:`classify_beats` / :func:`analyse_lead`).
    anchor_s, window_s : the window's end and length, seconds.

    Examples
    --------
    >>> t = np.arange(0.0, 120.0, 1.0)
    >>> x = trend_features(t, np.full(t.size, "N"), anchor_s=120.0, window_s=60.0)
    >>> round(float(x[TREND_FEATURE_NAMES.index("all_hr_bpm")]), 1), float(x[-1])
    (60.0, 1.0)
    """
    start = anchor_s - window_s
    inside = (t_s >= start) & (t_s < anchor_s)
    t, sym = t_s[inside], symbol[inside]
    last = t >= anchor_s - min(60.0, window_s)
    mid = start + window_s / 2
    first_half, second_half = t < mid, t >= mid
    whole = _part(t, sym, window_s)
    recent = _part(t[last], sym[last], min(60.0, window_s))
    delta = np.subtract(
        _part(t[second_half], sym[second_half], window_s / 2), _part(t[first_half], sym[first_half], window_s / 2)
    )
    longest = float(np.max(ventricular_runs(sym), initial=0))
    return np.array([*whole, *recent, *delta, longest, t.size / window_s], dtype=np.float64)


def analysis_trends(analysis: LeadAnalysis | None) -> npt.NDArray[np.float64]:
    """:func:`trend_features` of one whole analysed stretch: what the forecast head reads beside the LM (the agent
    analyses the window it forecasts from, evaluation the same window of a record, so both compute it alike). No
    analysis (no signal yet) gives all-NaN features, which the head treats as missing."""
    if analysis is None:
        return np.full(len(TREND_FEATURE_NAMES), np.nan)
    duration_s = analysis.measurements.duration_s
    t_s = analysis.r_peaks / analysis.measurements.fs
    return trend_features(t_s, analysis.symbols, anchor_s=duration_s, window_s=duration_s)
