"""Beat-by-beat scoring in the manner of ANSI/AAMI EC57: QRS and ventricular-beat sensitivity and +P.

Input is any annotated record reduced to arrays (reference R-peak samples and symbols, the unusable mask, ``fs``)
plus the detections and their labels, so the same function scores the synthetic generator's records and any
third-party annotated database. As in EC57, a detection matches a reference beat within 150 ms; beats inside
stretches marked unusable are left out on both sides, as :func:`score_beats` does. Not implemented from EC57:
the 5-minute learning period, and the per-beat-class (F, Q) columns, which the three-class labeller has no use for.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ._checks import check_fs

__all__ = ["Ec57Score", "gross_ec57", "pair_beats", "score_ec57"]

EC57_TOLERANCE_S = 0.150


@dataclass(frozen=True)
class Ec57Score:
    """Beat-by-beat counts of one record (or, from :func:`gross_ec57`, of several summed)."""

    qrs_tp: int  # reference beats matched by a detection
    qrs_fn: int  # reference beats no detection matched
    qrs_fp: int  # detections that match no reference beat
    v_tp: int  # reference 'V' matched by a detection labelled 'V'
    v_fn: int  # reference 'V' missed or labelled otherwise
    v_fp: int  # detections labelled 'V' whose reference beat is not 'V', or that match none (bxb's "O" row)
    records: int = 1

    @property
    def qrs_se(self) -> float:
        """QRS sensitivity TP / (TP + FN); NaN with no reference beats."""
        return _ratio(self.qrs_tp, self.qrs_tp + self.qrs_fn)

    @property
    def qrs_ppv(self) -> float:
        """QRS positive predictivity TP / (TP + FP); NaN with no detections."""
        return _ratio(self.qrs_tp, self.qrs_tp + self.qrs_fp)

    @property
    def v_se(self) -> float:
        """Ventricular-beat sensitivity; NaN when the reference has no 'V' (EC57 leaves it undefined)."""
        return _ratio(self.v_tp, self.v_tp + self.v_fn)

    @property
    def v_ppv(self) -> float:
        """Ventricular-beat positive predictivity; NaN when nothing was labelled 'V'."""
        return _ratio(self.v_tp, self.v_tp + self.v_fp)

    def as_dict(self) -> dict[str, Any]:
        """Counts and the four rates (rounded to 4 places, ``None`` where undefined), JSON-ready."""
        rates = {"qrs_se": self.qrs_se, "qrs_ppv": self.qrs_ppv, "v_se": self.v_se, "v_ppv": self.v_ppv}
        counts = {k: getattr(self, k) for k in ("records", "qrs_tp", "qrs_fn", "qrs_fp", "v_tp", "v_fn", "v_fp")}
        return counts | {k: None if np.isnan(v) else round(v, 4) for k, v in rates.items()}


def _ratio(num: int, den: int) -> float:
    return num / den if den else float("nan")


def score_ec57(
    ref_sample: npt.ArrayLike,
    ref_symbol: npt.ArrayLike,
    test_sample: npt.ArrayLike,
    test_symbol: npt.ArrayLike,
    fs: float,
    unusable: npt.ArrayLike | None = None,
    *,
    tol_s: float = EC57_TOLERANCE_S,
) -> Ec57Score:
    """Score detections and their labels against reference beats of one record, EC57-style.

    Parameters
    ----------
    ref_sample, ref_symbol : array_like, shape (n_ref,)
        Reference R-peak sample indices (increasing) and beat symbols; 'V' is ventricular, anything else is not.
    test_sample, test_symbol : array_like, shape (n_test,)
        Detected R-peak sample indices (increasing) and their labels, e.g. ``LeadAnalysis.r_peaks`` and
        ``.symbols``.
    fs : float
        Sampling rate in Hz (turns ``tol_s`` into samples).
    unusable : array_like of bool, shape (sig_len,), optional
        Samples the reference marks unusable; beats and detections on them are not scored.
    tol_s : float, default 0.150
        Match window, EC57's 150 ms.

    Returns
    -------
    Ec57Score
        Counts; ``.qrs_se``, ``.qrs_ppv``, ``.v_se``, ``.v_ppv`` give the rates.

    Examples
    --------
    >>> from core.measurements import score_ec57
    >>> s = score_ec57([100, 300, 500], ["N", "V", "N"], [102, 330, 700], ["N", "V", "V"], fs=250.0)
    >>> (s.qrs_tp, s.qrs_fn, s.qrs_fp, s.v_tp, s.v_fp), round(s.qrs_se, 3), s.v_ppv
    ((2, 1, 1, 1, 1), 0.667, 0.5)
    """
    fs = check_fs(fs)
    ref_s, ref_sym = np.asarray(ref_sample, dtype=np.int64), np.asarray(ref_symbol).astype(str)
    test_s, test_sym = np.asarray(test_sample, dtype=np.int64), np.asarray(test_symbol).astype(str)
    if unusable is not None:
        bad = np.asarray(unusable, dtype=bool)
        keep_ref, keep_test = ~bad[ref_s], ~bad[test_s]
        ref_s, ref_sym, test_s, test_sym = ref_s[keep_ref], ref_sym[keep_ref], test_s[keep_test], test_sym[keep_test]
    ref_idx, test_idx = pair_beats(ref_s, test_s, round(tol_s * fs))
    ref_v, test_v = ref_sym == "V", test_sym == "V"
    v_tp = int(np.sum(ref_v[ref_idx] & test_v[test_idx]))
    return Ec57Score(
        qrs_tp=int(ref_idx.size),
        qrs_fn=int(ref_s.size - ref_idx.size),
        qrs_fp=int(test_s.size - test_idx.size),
        v_tp=v_tp,
        v_fn=int(ref_v.sum()) - v_tp,
        v_fp=int(test_v.sum()) - v_tp,
    )


def pair_beats(
    ref_sample: npt.NDArray[np.int64], test_sample: npt.NDArray[np.int64], tol: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """One-to-one pairs within ``tol`` samples, closest pairs first (indices into each array, by reference order).

    Unlike :func:`match_beats`, this stays one-to-one and takes the better pair when the window is wider than half
    an RR interval (EC57's 150 ms at 200+ bpm), where one detection can lie within reach of two reference beats.
    """
    if ref_sample.size == 0 or test_sample.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    right = np.searchsorted(test_sample, ref_sample)
    ref_c = np.concatenate((np.arange(ref_sample.size), np.arange(ref_sample.size)))
    test_c = np.concatenate((right - 1, right))
    inside = (test_c >= 0) & (test_c < test_sample.size)
    ref_c, test_c = ref_c[inside], test_c[inside]
    dist = np.abs(test_sample[test_c] - ref_sample[ref_c])
    close = dist <= tol
    order = np.argsort(dist[close], kind="stable")
    ref_free = np.ones(ref_sample.size, dtype=bool)
    test_free = np.ones(test_sample.size, dtype=bool)
    pairs: list[tuple[int, int]] = []
    for r, t in zip(ref_c[close][order].tolist(), test_c[close][order].tolist(), strict=True):
        if ref_free[r] and test_free[t]:
            ref_free[r] = test_free[t] = False
            pairs.append((r, t))
    pairs.sort()
    out = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    return out[:, 0], out[:, 1]


def gross_ec57(scores: Iterable[Ec57Score]) -> Ec57Score:
    """Gross statistics: counts summed over records (EC57's "gross" row), so long records weigh more.

    Examples
    --------
    >>> from core.measurements import Ec57Score, gross_ec57
    >>> long = Ec57Score(qrs_tp=990, qrs_fn=10, qrs_fp=0, v_tp=5, v_fn=0, v_fp=1)
    >>> short = Ec57Score(qrs_tp=0, qrs_fn=10, qrs_fp=0, v_tp=0, v_fn=0, v_fp=0)
    >>> g = gross_ec57([long, short])
    >>> g.records, round(g.qrs_se, 3), round(g.v_ppv, 3)
    (2, 0.98, 0.833)
    """
    fields = ("qrs_tp", "qrs_fn", "qrs_fp", "v_tp", "v_fn", "v_fp", "records")
    totals = dict.fromkeys(fields, 0)
    for s in scores:
        for f in fields:
            totals[f] += getattr(s, f)
    return Ec57Score(**totals)
