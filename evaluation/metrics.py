"""Forecast metrics: macro-F1, AUROC, AUPRC, patient-bootstrap intervals and calibration.

Small and explicit on purpose: these numbers go into a published table, so each is a few lines that a test checks
against a hand-computed example. Every function takes plain arrays and returns plain floats (None where a metric
is undefined, e.g. AUROC with one class present), never NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Reliability", "auprc", "auroc", "bootstrap_ci", "macro_f1", "reliability"]


def macro_f1(
    truth: Sequence[str] | npt.NDArray[np.str_], pred: Sequence[str] | npt.NDArray[np.str_], classes: Sequence[str]
) -> float | None:
    """Mean over ``classes`` present in truth or prediction of F1 = 2TP / (2TP + FP + FN).

    Classes absent from both are skipped (as scikit-learn with ``labels`` = the classes seen): a test set without
    flutter neither rewards nor punishes a model for flutter. None when no sample belongs to ``classes``.
    """
    t, p = np.asarray(truth), np.asarray(pred)
    scores = []
    for cls in classes:
        tp = int(np.sum((t == cls) & (p == cls)))
        fp = int(np.sum((t != cls) & (p == cls)))
        fn = int(np.sum((t == cls) & (p != cls)))
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else None


def auroc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float | None:
    """Probability that a random positive scores above a random negative (ties count one half)."""
    y, s = np.asarray(labels, bool), np.asarray(scores, float)
    pos, neg = s[y], s[~y]
    if not pos.size or not neg.size:
        return None
    ranks = _average_ranks(np.concatenate([pos, neg]))
    return float((ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


def _average_ranks(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """1-based ranks, ties sharing their mean rank (scipy's ``rankdata(method="average")``, vectorised: the
    bootstrap calls this thousands of times per table)."""
    from scipy.stats import rankdata

    return np.asarray(rankdata(x, method="average"), dtype=np.float64)


def auprc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float | None:
    """Average precision: sum over thresholds of (recall step) x precision, as scikit-learn computes it."""
    y, s = np.asarray(labels, bool), np.asarray(scores, float)
    if not y.any():
        return None
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last_of_tie = np.flatnonzero(np.diff(s_sorted, append=-np.inf) != 0)  # each threshold: all scores >= it chosen
    tp = np.cumsum(y_sorted)[last_of_tie]
    precision, recall = tp / (last_of_tie + 1), tp / int(y.sum())
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(steps * precision))


def bootstrap_ci(
    patients: Sequence[str],
    statistic: Callable[[npt.NDArray[np.int64]], float | None],
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float] | None:
    """Percentile interval of ``statistic(sample_indices)`` over patient resamples (with replacement).

    Samples of one patient are correlated (overlapping windows of one record), so the patient is the unit that is
    resampled, never the window. Resamples where the statistic is undefined are dropped; None if all are.
    """
    ids = np.asarray(patients)
    unique = np.unique(ids)
    by_patient = {p: np.flatnonzero(ids == p) for p in unique}
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        drawn = rng.choice(unique, size=unique.size, replace=True)
        value = statistic(np.concatenate([by_patient[p] for p in drawn]))
        if value is not None:
            values.append(value)
    if not values:
        return None
    tail = 100 * (1 - level) / 2
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


@dataclass(frozen=True)
class Reliability:
    """Calibration of probabilities against binary outcomes, in ``n_bins`` equal-width bins."""

    ece: float  # expected calibration error: bin-size-weighted mean |observed - predicted|
    brier: float  # mean squared error of the probability
    bin_mean_prob: list[float | None]
    bin_observed: list[float | None]
    bin_count: list[int]


def reliability(
    labels: npt.ArrayLike, probs: npt.ArrayLike, n_bins: int = 10, weights: npt.ArrayLike | None = None
) -> Reliability | None:
    """Bins of equal width; ``weights`` (e.g. inverse inclusion probabilities of a stratified draw) weight every
    mean, and ``bin_count`` stays the number of samples."""
    y, p = np.asarray(labels, float), np.clip(np.asarray(probs, float), 0.0, 1.0)
    if not y.size:
        return None
    w = np.ones_like(y) if weights is None else np.asarray(weights, float)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    mean_prob: list[float | None] = []
    observed: list[float | None] = []
    counts = []
    ece = 0.0
    for b in range(n_bins):
        inside = bins == b
        counts.append(int(inside.sum()))
        if not inside.any():
            mean_prob.append(None)
            observed.append(None)
            continue
        wb = w[inside]
        mean_prob.append(float(np.average(p[inside], weights=wb)))
        observed.append(float(np.average(y[inside], weights=wb)))
        ece += wb.sum() / w.sum() * abs(observed[-1] - mean_prob[-1])  # type: ignore[operator]
    return Reliability(float(ece), float(np.average((p - y) ** 2, weights=w)), mean_prob, observed, counts)
