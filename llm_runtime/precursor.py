"""The precursor read-out of the forecast head: which kind of precursor a window's trend features look like, and how
often that kind was followed by each onset in training.

Why a second read-out beside the LM's: an onset label ("AF starts within 300 s") is a noisy target, because
the generator builds decoys (ectopy that rises and never converts) with the same builders as real precursors. The
simulator's scripts say exactly which precursor, if any, is under way at every second, a cleaner and denser target:
a class-balanced softmax learns the precursor *state* from the measured trend features, and the onset risk is the
state's training conversion rate, ``sum_k P(state k | window) * P(onset within h | state k, window length)``. On the
yardstick's validation patients this ranked AF onsets at h = 300 s with AUROC 0.75 against 0.69 for a logistic
regression fitted on the onset labels themselves from the same features (docs/TRAINING.md, "The precursor
read-out"). Numbers only, like :mod:`llm_runtime.probe`: the same object in training, evaluation and the agent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from llm_runtime.trend_columns import trend_columns

__all__ = ["PRECURSOR_ARRAYS", "PrecursorReadout", "readout_inputs", "window_bins"]

Floats = npt.NDArray[np.float64]

PRECURSOR_ARRAYS: tuple[str, ...] = ("windows_s", "fill", "mean", "scale", "weights", "bias", "rates")
"""The arrays of a read-out, saved with the prefix ``precursor_`` in the head's npz."""


def window_bins(windows_s: Floats, window_s: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Index of each window length's bin in the ascending grid ``windows_s``: the longest grid window at or below it
    (the agent's streaming cache reads 300-360 s, which fall in the 300-s bin), the shortest for anything below.

    Examples
    --------
    >>> window_bins(np.array([10.0, 60.0, 300.0]), [5, 10, 330, 600]).tolist()
    [0, 0, 2, 2]
    """
    index = np.searchsorted(windows_s, np.asarray(window_s, dtype=np.float64), side="right") - 1
    return np.clip(index, 0, len(windows_s) - 1).astype(np.int64)


def readout_inputs(trends: Floats, window_s: npt.ArrayLike, fill: Floats, windows_s: Floats) -> Floats:
    """(B, 3E + W): the trend columns (value, signed log, missing flag) and a one-hot of the window's bin; shared by
    the fit (before a read-out exists) and :meth:`PrecursorReadout.inputs`."""
    rows = np.asarray(trends, dtype=np.float64).reshape(-1, fill.size)
    one_hot = np.eye(len(windows_s))[window_bins(windows_s, window_s)]
    return np.hstack([trend_columns(rows, fill, rows.shape[0]), one_hot])


@dataclass(frozen=True, eq=False)
class PrecursorReadout:
    """Softmax over precursor states from trend features and the window's bin; conversion rates per state."""

    states: tuple[str, ...]  # "none" and the generator's precursor kinds
    windows_s: Floats  # (W,) ascending window grid of the rates
    fill: Floats  # (E,) training medians of the trend features (NaN: too few beats)
    mean: Floats  # (3E + W,)
    scale: Floats  # (3E + W,)
    weights: Floats  # (K, 3E + W)
    bias: Floats  # (K,)
    rates: Floats  # (H, A, W, K): P(onset of arrhythmia a within horizon h | state k, window bin w) in training

    def inputs(self, trends: Floats, window_s: npt.ArrayLike) -> Floats:
        return readout_inputs(trends, window_s, self.fill, self.windows_s)

    def standardised(self, trends: Floats, window_s: npt.ArrayLike) -> Floats:
        """(B, 3E + W): :meth:`inputs` standardised as in the fit."""
        out: Floats = (self.inputs(trends, window_s) - self.mean) / self.scale
        return out

    def state_probs(self, trends: Floats, window_s: npt.ArrayLike) -> Floats:
        """(B, K): P(precursor state | the window's trend features)."""
        z = self.standardised(trends, window_s) @ self.weights.T + self.bias
        e = np.exp(z - z.max(axis=1, keepdims=True))
        out: Floats = e / e.sum(axis=1, keepdims=True)
        return out

    def expected_rate(self, state_probs: Floats, window_s: npt.ArrayLike) -> Floats:
        """(B, H, A): the conversion rate expected under state probabilities (B, K), per horizon and arrhythmia."""
        rates = self.rates[:, :, window_bins(self.windows_s, window_s), :]  # (H, A, B, K)
        out: Floats = np.einsum("bk,habk->bha", state_probs, rates)
        return out

    def onset_risk(self, trends: Floats, window_s: npt.ArrayLike) -> Floats:
        """(B, H, A): expected conversion rate of the window's precursor state, per horizon and arrhythmia."""
        return self.expected_rate(self.state_probs(trends, window_s), window_s)

    def risk_logit(self, trends: Floats, window_s: npt.ArrayLike) -> Floats:
        """(B, H, A): logit of :meth:`onset_risk`, clipped to [1e-4, 1 - 1e-4]: what the head's mix reads."""
        risk = np.clip(self.onset_risk(trends, window_s), 1e-4, 1 - 1e-4)
        out: Floats = np.log(risk / (1 - risk))
        return out

    def arrays(self) -> dict[str, Floats]:
        return {f"precursor_{name}": getattr(self, name) for name in PRECURSOR_ARRAYS}

    @staticmethod
    def from_arrays(states: list[str], arrays: dict[str, Floats]) -> PrecursorReadout:
        return PrecursorReadout(tuple(states), **{name: arrays[f"precursor_{name}"] for name in PRECURSOR_ARRAYS})
