"""RR/HRV and ectopy features of a window, for the gradient-boosting baseline (CAMEL's XGBoost analogue).

Beats come from ``core.measurements.analyse_lead`` (the agent's own QRS detector and beat labeller), run once
per record; a window's features are computed from the beats inside it. Features: rate, RR variability,
irregularity of normal-to-normal intervals, PAC/PVC rates, couplets and ventricular runs, over the whole window
and over its last minute, and the change between the window's first and second half (precursor trends).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.measurements import analyse_lead
from evaluation.data import Record

__all__ = ["FEATURE_NAMES", "RecordBeats", "lead_index", "record_beats", "window_features"]

_PART = ("hr_bpm", "rr_cv", "rmssd_ms", "irregularity", "pnn50", "pac_per_min", "pvc_per_min", "vruns_per_min")
FEATURE_NAMES: tuple[str, ...] = (
    *(f"all_{k}" for k in _PART),
    *(f"last60_{k}" for k in _PART),
    *(f"delta_{k}" for k in _PART),
    "longest_vrun",
    "beats_per_s",
)


@dataclass(frozen=True)
class RecordBeats:
    fs: float
    t_s: npt.NDArray[np.float64]  # (n_beats,) R-peak times
    symbol: npt.NDArray[np.str_]  # (n_beats,) 'N' | 'A' | 'V'


def lead_index(record: Record) -> int:
    names = [n.upper() for n in record.sig_name]
    for preferred in ("II", "MLII", "ECG1", "ECG"):
        if preferred in names:
            return names.index(preferred)
    return 0


def record_beats(record: Record) -> RecordBeats:
    lead = lead_index(record)
    sig = record.p_signal[:, lead].astype(np.float64)
    analysis = analyse_lead(sig, record.fs, record.sig_name[lead])
    return RecordBeats(record.fs, analysis.r_peaks / record.fs, analysis.symbols)


def _ventricular_runs(symbol: npt.NDArray[np.str_]) -> npt.NDArray[np.int64]:
    """Lengths of the runs of consecutive ventricular beats."""
    edges = np.diff(np.concatenate([[0], (symbol == "V").astype(int), [0]]))
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


def _part(t_s: npt.NDArray[np.float64], symbol: npt.NDArray[np.str_], span_s: float) -> list[float]:
    """Features of the beats of one stretch; NaN where undefined (the trees handle missing values)."""
    nan = float("nan")
    minutes = max(span_s, 1.0) / 60.0
    rr = np.diff(t_s) * 1000.0
    normal_pair = (symbol[1:] == "N") & (symbol[:-1] == "N") if symbol.size > 1 else np.zeros(0, bool)
    nn = rr[normal_pair] if rr.size else rr
    dnn = np.diff(nn)
    runs = _ventricular_runs(symbol)
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


def window_features(beats: RecordBeats, anchor_s: float, window_s: float) -> npt.NDArray[np.float64]:
    """Features of the beats in [anchor - w, anchor): a vector in :data:`FEATURE_NAMES` order."""
    start = anchor_s - window_s
    inside = (beats.t_s >= start) & (beats.t_s < anchor_s)
    t, sym = beats.t_s[inside], beats.symbol[inside]
    last = t >= anchor_s - min(60.0, window_s)
    mid = start + window_s / 2
    first_half, second_half = t < mid, t >= mid
    whole = _part(t, sym, window_s)
    recent = _part(t[last], sym[last], min(60.0, window_s))
    delta = np.subtract(
        _part(t[second_half], sym[second_half], window_s / 2), _part(t[first_half], sym[first_half], window_s / 2)
    )
    longest = float(np.max(_ventricular_runs(sym), initial=0))
    return np.array([*whole, *recent, *delta, longest, t.size / window_s], dtype=np.float64)
