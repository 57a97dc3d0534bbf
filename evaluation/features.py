"""RR/HRV and ectopy features of a window, for the gradient-boosting baseline (CAMEL's XGBoost analogue).

Beats come from ``core.measurements.analyse_lead`` (the agent's own QRS detector and beat labeller), run once
per record; a window's features are ``core.measurements.trend_features`` of the beats inside it (rate, RR
variability, NN irregularity, PAC/PVC rates and ventricular runs over the whole window, its last minute and the
change from its first to its second half), the one implementation the forecaster's evidence is to share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.measurements import TREND_FEATURE_NAMES, analyse_lead, trend_features
from evaluation.data import Record

__all__ = ["FEATURE_NAMES", "RecordBeats", "lead_index", "record_beats", "window_features"]

FEATURE_NAMES: tuple[str, ...] = TREND_FEATURE_NAMES


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


def window_features(beats: RecordBeats, anchor_s: float, window_s: float) -> npt.NDArray[np.float64]:
    """Features of the beats in [anchor - w, anchor): a vector in :data:`FEATURE_NAMES` order."""
    return trend_features(beats.t_s, beats.symbol, anchor_s, window_s)
