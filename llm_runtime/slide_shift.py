"""The forecast head's correction for a slid KV cache: remove the feature shift that eviction leaves.

Why: a cache slid by eviction (``cache_slide``) keeps tokens that had read seconds now evicted. Their effect on
the probe features is small in angle (cosine 0.9997 to a fresh prefill's) but the head standardises every feature,
and on the yardstick's inputs the shift moved the rhythm read-out a lot (docs/LLM_RUNTIME.md, "Window slide by
eviction"). Most of it is common to all inputs: one vector per unit of staleness (``ContextLedger.staleness``),
fitted by least squares through the origin on validation pairs (slid cache, fresh prefill of the same seconds), is
subtracted before the head reads the features. A fresh cache has staleness 0 and is left as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from core.errors import CheckpointError

__all__ = ["SLIDE_SHIFT_FILE", "SlideShift"]

SLIDE_SHIFT_FILE = "slide_shift.npz"

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SlideShift:
    shift: Floats  # (F,) feature shift per unit of staleness
    fitted_on: dict[str, object]  # what it was fitted on (pairs file, inputs, staleness range)

    @staticmethod
    def fit(slid: Floats, fresh: Floats, staleness: Floats, fitted_on: dict[str, object]) -> SlideShift:
        """Least squares through the origin, per feature: (slid − fresh) ≈ staleness × shift."""
        s = np.asarray(staleness, dtype=np.float64)
        if slid.shape != fresh.shape or s.shape != (slid.shape[0],) or not float(s @ s) > 0:
            raise ValueError("slide shift: pairs of equal shape and some staleness above 0 are needed")
        return SlideShift((s @ (slid - fresh)) / float(s @ s), fitted_on)

    def correct(self, features: Floats, staleness: npt.ArrayLike) -> Floats:
        """(B, F) features read from caches of the given staleness (B,) -> as a fresh prefill's, approximately."""
        s = np.asarray(staleness, dtype=np.float64).reshape(-1, 1)
        if features.shape[1] != self.shift.shape[0]:
            raise ValueError(f"slide shift: {self.shift.shape[0]} features expected, got {features.shape[1]}")
        return features - s * self.shift

    def save(self, directory: Path) -> Path:
        path = directory / SLIDE_SHIFT_FILE
        np.savez(path, shift=self.shift, fitted_on=np.array(json.dumps(self.fitted_on)))
        return path

    @staticmethod
    def load(directory: Path) -> SlideShift | None:
        """The adapter's correction, or None where it has none (a head fitted and used on fresh prefills only)."""
        path = directory / SLIDE_SHIFT_FILE
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return SlideShift(np.asarray(data["shift"], dtype=np.float64), json.loads(str(data["fitted_on"])))
        except (KeyError, ValueError, OSError) as exc:
            raise CheckpointError(f"{path}: not a slide shift ({exc})") from exc
