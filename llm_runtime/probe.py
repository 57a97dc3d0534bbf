"""The forecast head of CAMEL's "probe" variant: linear read-outs of the LM's state after the ECG and evidence.

The ECG-LM reads the ECG tokens and the evidence line; at the end of the probe prompt (``PromptBook.probe``) the
hidden states of a few decoder layers are concatenated into one feature vector. Beside it the head may read the
evidence as numbers: the window's trend features (``core.measurements.analysis_trends``, the rate, variability and
ectopy of the whole window, its last minute and its change from first to second half), which the evidence line
gives the LM only as rounded words for the whole window. Per horizon, a softmax over the rhythm classes and one
logistic output per arrhythmia ("starts within h") read the standardised inputs. Onset outputs carry a Platt
calibration fitted on validation patients. Numbers only: this module does no I/O beyond its own file, so the head
is the same object in training, evaluation and the agent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.errors import CheckpointError
from core.measurements import TREND_FEATURE_NAMES
from llm_runtime.precursor import PrecursorReadout
from llm_runtime.prompts import ARRHYTHMIAS, RHYTHMS
from llm_runtime.trend_columns import trend_columns

__all__ = ["PROBE_FILE", "PROBE_HORIZONS", "ProbeHead", "head_inputs", "trend_columns"]

PROBE_FILE = "probe_head.npz"
PROBE_HORIZONS = (60, 180, 300, 600)
"""What a new head forecasts: ECGForecastBench's horizons, seconds."""

Floats = npt.NDArray[np.float64]


def _softmax(x: Floats) -> Floats:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    out: Floats = e / e.sum(axis=-1, keepdims=True)
    return out


def _sigmoid(x: Floats) -> Floats:
    out: Floats = 1.0 / (1.0 + np.exp(-x))
    return out


def head_inputs(features: Floats, trends: Floats | None, fill: Floats) -> Floats:
    """LM features (B, F) and trend features (B, E) -> the head's unstandardised input rows; ``fill`` empty: the
    LM features alone. Shared by the fit (before a head exists) and :meth:`ProbeHead.inputs`."""
    x = np.asarray(features, dtype=np.float64)
    return np.hstack([x, trend_columns(trends, fill, x.shape[0])]) if fill.size else x


@dataclass(frozen=True, eq=False)
class ProbeHead:
    """Linear read-outs, per horizon, of standardised LM features (and trend features, when ``trend_fill`` is set)."""

    horizons_s: tuple[int, ...]
    layers: tuple[int, ...]  # decoder layers whose last-position states are concatenated (-1: final, normed)
    mean: Floats  # (F,)
    scale: Floats  # (F,)
    rhythm_w: Floats  # (H, len(RHYTHMS), F)
    rhythm_b: Floats  # (H, len(RHYTHMS))
    onset_w: Floats  # (H, len(ARRHYTHMIAS), F)
    onset_b: Floats  # (H, len(ARRHYTHMIAS))
    platt: Floats  # (H, len(ARRHYTHMIAS), 2): calibrated logit = a * raw logit + b
    trend_fill: Floats = field(default_factory=lambda: np.zeros(0))  # (E,) medians; empty: the LM features only
    precursor: PrecursorReadout | None = None  # with ``mix``: onset risk also from the precursor state
    mix: Floats = field(default_factory=lambda: np.zeros(0))  # (H, A, 3): logit = a * raw + b * logit(risk) + c

    @property
    def reads_trends(self) -> bool:
        return self.trend_fill.size > 0

    def inputs(self, features: Floats, trends: Floats | None = None) -> Floats:
        return head_inputs(features, trends, self.trend_fill)

    def standardised(self, features: Floats, trends: Floats | None = None) -> Floats:
        """(B, F [+ 3E]): the read-outs' input rows, standardised as in the fit."""
        out: Floats = (self.inputs(features, trends) - self.mean) / self.scale
        return out

    def onset_raw(self, x: Floats) -> Floats:
        """(B, H, A): the LM read-out's onset logits of standardised rows, before calibration or mix."""
        out: Floats = np.einsum("hcf,bf->bhc", self.onset_w, x) + self.onset_b
        return out

    def onset_logits(self, raw: Floats, trends: Floats | None, window_s: npt.ArrayLike | None) -> Floats:
        """Calibrated onset logits (B, H, A) from the LM read-out's raw logits: Platt-scaled, or, for a head with a
        precursor read-out, mixed with the logit of the precursor state's conversion rate (fitted on validation)."""
        if self.precursor is None:
            out: Floats = self.platt[..., 0] * raw + self.platt[..., 1]
            return out
        if window_s is None:
            raise ValueError("this head's precursor read-out needs each row's window length")
        rows = np.full((raw.shape[0], self.precursor.fill.size), np.nan) if trends is None else trends
        risk_logit = self.precursor.risk_logit(rows, window_s)
        mixed: Floats = self.mix[..., 0] * raw + self.mix[..., 1] * risk_logit + self.mix[..., 2]
        return mixed

    def predict(
        self, features: Floats, trends: Floats | None = None, window_s: npt.ArrayLike | None = None
    ) -> list[tuple[dict[int, dict[str, float]], dict[int, dict[str, float]]]]:
        """LM features (B, F) and, for a head that reads them, trend features (B, E; None or NaN: not measured) and
        the seconds each row's window spans (B,) -> per row (rhythm_probs, onset_probs), keyed by horizon as the
        Forecast object."""
        x = self.standardised(features, trends)  # (B, F [+ 3E])
        rhythm = _softmax(np.einsum("hcf,bf->bhc", self.rhythm_w, x) + self.rhythm_b)  # (B, H, 4)
        onset = _sigmoid(self.onset_logits(self.onset_raw(x), trends, window_s))  # (B, H, 3)
        out = []
        for b in range(x.shape[0]):
            rows = {h: dict(zip(RHYTHMS, map(float, rhythm[b, i]), strict=True)) for i, h in enumerate(self.horizons_s)}
            ons = {
                h: dict(zip(ARRHYTHMIAS, map(float, onset[b, i]), strict=True)) for i, h in enumerate(self.horizons_s)
            }
            out.append((rows, ons))
        return out

    def save(self, directory: Path, meta: dict[str, Any]) -> Path:
        """Arrays to ``directory/probe_head.npz`` (no pickle), horizons, layers and ``meta`` beside them in JSON."""
        directory.mkdir(parents=True, exist_ok=True)
        names = ("mean", "scale", "rhythm_w", "rhythm_b", "onset_w", "onset_b", "platt", "trend_fill")
        arrays = {k: getattr(self, k) for k in names}
        if self.precursor is not None:
            arrays |= {**self.precursor.arrays(), "mix": self.mix}
        np.savez(directory / PROBE_FILE, **arrays)
        trends = list(TREND_FEATURE_NAMES) if self.reads_trends else []
        info = {"horizons_s": list(self.horizons_s), "layers": list(self.layers), "trend_features": trends, **meta}
        if self.precursor is not None:
            info["precursor_states"] = list(self.precursor.states)
        (directory / "probe_head.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        return directory / PROBE_FILE

    @staticmethod
    def load(directory: Path) -> ProbeHead:
        try:
            info = json.loads((directory / "probe_head.json").read_text(encoding="utf-8"))
            with np.load(directory / PROBE_FILE, allow_pickle=False) as data:
                arrays = {k: np.asarray(data[k], dtype=np.float64) for k in data.files}
            own = {k: v for k, v in arrays.items() if not k.startswith("precursor_")}
            precursor = None
            if "precursor_states" in info:
                precursor = PrecursorReadout.from_arrays(info["precursor_states"], arrays)
            head = ProbeHead(tuple(info["horizons_s"]), tuple(info["layers"]), **own, precursor=precursor)
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{directory}: unreadable forecast head ({exc})") from exc
        if head.reads_trends and info.get("trend_features") != list(TREND_FEATURE_NAMES):
            raise CheckpointError(f"{directory}: the head reads other trend features than this code computes")
        n_h, n_f = len(head.horizons_s), head.mean.shape[0]
        if head.rhythm_w.shape != (n_h, len(RHYTHMS), n_f) or head.onset_w.shape != (n_h, len(ARRHYTHMIAS), n_f):
            raise CheckpointError(f"{directory}: forecast head shapes do not match {n_h} horizons x {n_f} features")
        p = head.precursor
        if p is not None and (
            p.rates.shape != (n_h, len(ARRHYTHMIAS), p.windows_s.size, len(p.states))
            or p.weights.shape != (len(p.states), p.mean.size)
            or head.mix.shape != (n_h, len(ARRHYTHMIAS), 3)
        ):
            raise CheckpointError(f"{directory}: the precursor read-out's shapes do not match the head")
        return head

    @staticmethod
    def exists(directory: Path) -> bool:
        return (directory / PROBE_FILE).exists()
