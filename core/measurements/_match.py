"""One-to-one matching of beat times within a tolerance: for scoring, and for cross-checking leads."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["match_beats"]


def match_beats(
    ref_sample: npt.NDArray[np.int64], test_sample: npt.NDArray[np.int64], tol: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Pair each reference beat with the nearest detection within ``tol`` samples, one-to-one.

    Returns the indices into ``ref_sample`` and ``test_sample`` of the matched pairs. With ``tol`` under half the
    refractory period (e.g. 50 ms) no detection can be nearest to two reference beats that are both real.
    """
    if ref_sample.size == 0 or test_sample.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    right = np.clip(np.searchsorted(test_sample, ref_sample), 1, test_sample.size - 1)
    left = right - 1
    take_left = np.abs(ref_sample - test_sample[left]) <= np.abs(test_sample[right] - ref_sample)
    nearest = np.where(take_left, left, right)
    if test_sample.size == 1:
        nearest = np.zeros_like(ref_sample)
    close = np.abs(test_sample[nearest] - ref_sample) <= tol
    ref_idx = np.flatnonzero(close)
    test_idx, first = np.unique(nearest[close], return_index=True)
    return ref_idx[first].astype(np.int64), test_idx.astype(np.int64)
