"""Calibration of onset probabilities: Platt scaling per horizon (and per arrhythmia where data allowed).

The agent compares onset probabilities with fixed thresholds (``alerts.*.raise_at``), so the number it reads must
mean what it says. The LM's P("yes") is a softmax over two option sequences and is not calibrated by training.
An adapter may carry a map fitted on validation patients (``evaluation.calibrate``) in ``adapter.json``::

    "calibration": {"method": "platt", "onset": {"300": {"af": [a, b], "*": [a, b]}}, ...}

and the runtime applies ``p' = sigmoid(a * logit(p) + b)`` where onset probabilities are produced. ``"*"`` is the
horizon's fallback for arrhythmias without a map of their own; a horizon absent from the map is left as scored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import CheckpointError

__all__ = ["ANY_ARRHYTHMIA", "OnsetCalibration", "PlattScale"]

ANY_ARRHYTHMIA = "*"
_EPS = 1e-6  # probabilities are clipped to [eps, 1 - eps] before the logit


@dataclass(frozen=True)
class PlattScale:
    """``p -> sigmoid(a * logit(p) + b)``: a > 0 keeps the order of risks; a = 1, b = 0 is the identity."""

    a: float
    b: float

    def __call__(self, p: float) -> float:
        q = min(max(p, _EPS), 1 - _EPS)
        z = self.a * math.log(q / (1 - q)) + self.b
        return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


@dataclass(frozen=True)
class OnsetCalibration:
    """horizon (s) -> arrhythmia (or ``"*"``) -> Platt scale, plus where it was fitted (for the model card)."""

    scales: Mapping[int, Mapping[str, PlattScale]]
    fitted_on: str = ""

    def apply(self, onset: Mapping[int, Mapping[str, float]]) -> dict[int, dict[str, float]]:
        out: dict[int, dict[str, float]] = {}
        for horizon, probs in onset.items():
            per = self.scales.get(horizon, {})
            out[horizon] = {}
            for cls, p in probs.items():
                scale = per.get(cls, per.get(ANY_ARRHYTHMIA))
                out[horizon][cls] = scale(p) if scale is not None else p
        return out

    def to_meta(self) -> dict[str, Any]:
        onset = {
            str(h): {cls: [round(s.a, 6), round(s.b, 6)] for cls, s in per.items()} for h, per in self.scales.items()
        }
        return {"method": "platt", "onset": onset, "fitted_on": self.fitted_on}

    @staticmethod
    def from_meta(meta: Mapping[str, Any]) -> OnsetCalibration | None:
        """The adapter's calibration (``adapter.json``), None when it has none; a
        malformed one is an error naming the bad entry, never silently ignored."""
        raw = meta.get("calibration")
        if raw is None:
            return None
        if not isinstance(raw, Mapping) or raw.get("method") != "platt" or not isinstance(raw.get("onset"), Mapping):
            raise CheckpointError("adapter calibration: expected {'method': 'platt', 'onset': {horizon: {...}}}")
        scales: dict[int, dict[str, PlattScale]] = {}
        for horizon, per in raw["onset"].items():
            if not str(horizon).isdigit() or not isinstance(per, Mapping):
                raise CheckpointError(f"adapter calibration.onset[{horizon!r}]: expected horizon seconds -> map")
            scales[int(horizon)] = {}
            for cls, pair in per.items():
                ok = isinstance(pair, list | tuple) and len(pair) == 2
                if not ok or not all(isinstance(x, int | float) and math.isfinite(x) for x in pair) or pair[0] <= 0:
                    raise CheckpointError(
                        f"adapter calibration.onset[{horizon}][{cls!r}]: expected [a > 0, b] finite, got {pair!r}"
                    )
                scales[int(horizon)][str(cls)] = PlattScale(float(pair[0]), float(pair[1]))
        return OnsetCalibration(scales, str(raw.get("fitted_on", "")))
