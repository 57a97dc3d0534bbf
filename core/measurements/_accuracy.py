"""Scoring measurements against ground-truth beats: detector sensitivity/PPV, beat-label confusion, rate error.

Used by the tests and by ``bench/measurements_bench.py``. Reference beats inside stretches the ground truth marks
unusable (lead-off, saturation, motion) are excluded, as are detections there: no detector can be asked to see
beats through a disconnected lead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ._match import match_beats
from ._metrics import LeadAnalysis

__all__ = ["BEAT_CLASSES", "BeatScore", "match_beats", "score_beats", "true_rate_bpm"]

BEAT_CLASSES = ("N", "A", "V")


@dataclass(frozen=True)
class BeatScore:
    """Detection and labelling accuracy of one lead against ground truth."""

    n_ref: int
    n_test: int
    true_positives: int
    sensitivity: float  # Se = TP / reference beats
    ppv: float  # positive predictive value = TP / detections
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)  # confusion[true][predicted], matched beats
    true_counts: dict[str, int] = field(default_factory=dict)  # reference beats per class (usable stretches)

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_ref": self.n_ref,
            "n_test": self.n_test,
            "true_positives": self.true_positives,
            "sensitivity": round(self.sensitivity, 4),
            "ppv": round(self.ppv, 4),
            "confusion": self.confusion,
            "true_counts": self.true_counts,
        }


def score_beats(
    analysis: LeadAnalysis,
    ref_sample: npt.NDArray[np.int64],
    ref_symbol: npt.NDArray[np.str_],
    truth_unusable: npt.NDArray[np.bool_],
    tol_s: float = 0.050,
) -> BeatScore:
    """Score one analysed lead against reference beats (``truth_unusable``: ground truth's unusable samples)."""
    fs = analysis.measurements.fs
    keep_ref = ~truth_unusable[ref_sample]
    keep_test = ~truth_unusable[analysis.r_peaks]
    ref_s, ref_sym = ref_sample[keep_ref], ref_symbol[keep_ref]
    test_s, test_sym = analysis.r_peaks[keep_test], analysis.symbols[keep_test]
    ref_idx, test_idx = match_beats(ref_s, test_s, round(tol_s * fs))
    tp = int(ref_idx.size)
    confusion = {
        t: {p: int(np.sum((ref_sym[ref_idx] == t) & (test_sym[test_idx] == p))) for p in BEAT_CLASSES}
        for t in BEAT_CLASSES
    }
    return BeatScore(
        n_ref=int(ref_s.size),
        n_test=int(test_s.size),
        true_positives=tp,
        sensitivity=tp / ref_s.size if ref_s.size else float("nan"),
        ppv=tp / test_s.size if test_s.size else float("nan"),
        confusion=confusion,
        true_counts={c: int(np.sum(ref_sym == c)) for c in BEAT_CLASSES},
    )


def true_rate_bpm(ref_sample: npt.NDArray[np.int64], fs: float, truth_unusable: npt.NDArray[np.bool_]) -> float:
    """Reference heart rate: 60000 / mean RR over intervals that do not cross an unusable stretch."""
    bad_before = np.concatenate(([0], np.cumsum(truth_unusable)))
    clean = (bad_before[ref_sample[1:] + 1] - bad_before[ref_sample[:-1]]) == 0
    rr_ms = np.diff(ref_sample)[clean] * 1000.0 / fs
    return 60000.0 / float(rr_ms.mean()) if rr_ms.size else float("nan")
