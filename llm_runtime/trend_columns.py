"""The forecast head's inputs from trend features: what the probe head and the precursor read-out both read."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["trend_columns"]

Floats = npt.NDArray[np.float64]


def trend_columns(trends: Floats | None, fill: Floats, rows: int) -> Floats:
    """The head's inputs from trend features (B, E): the values with NaN (too few beats) replaced by ``fill`` (the
    training medians), their signed log (rates and counts are heavy-tailed; a linear read-out needs both scales),
    and a missing flag per feature. ``trends`` None (no measurements) counts every feature missing."""
    if trends is None:
        trends = np.full((rows, fill.size), np.nan)
    values = np.asarray(trends, dtype=np.float64).reshape(rows, fill.size)
    missing = np.isnan(values)
    filled = np.where(missing, fill, values)
    out: Floats = np.hstack([filled, np.sign(filled) * np.log1p(np.abs(filled)), missing.astype(np.float64)])
    return out
