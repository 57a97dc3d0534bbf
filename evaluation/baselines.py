"""Supervised baselines trained on the benchmark's training patients, per (w, h) cell, on the same samples.

* ``gbt``: scikit-learn's HistGradientBoostingClassifier on RR/HRV and ectopy features (evaluation.features):
  our stand-in for CAMEL's XGBoost baseline.
* ``gbt_no_trend``: the same trees on the whole-window features only (no last-60-s or first-vs-second-half
  columns): how much of ``gbt`` the trend features carry.
* ``linear_probe``: logistic regression on the frozen encoder's embeddings pooled over the window (mean and
  standard deviation of each of the 64 dimensions over valid seconds).

Each cell gets one rhythm classifier and one binary classifier per arrhythmia for "onset within h".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.base import ClassifierMixin, clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from evaluation.data import CLASSES, ONSETS, RecordSource, Sample
from evaluation.embed import Embedder
from evaluation.features import FEATURE_NAMES, RecordBeats, record_beats, window_features
from evaluation.predictions import Predictions

__all__ = [
    "FeatureSource",
    "TabularBaseline",
    "beat_features",
    "gbt",
    "linear_probe",
    "pooled_embeddings",
    "without_trends",
]

FeatureSource = Callable[[Sequence[Sample]], npt.NDArray[np.float64]]


def gbt(seed: int) -> ClassifierMixin:
    return HistGradientBoostingClassifier(max_iter=150, learning_rate=0.1, max_leaf_nodes=15, random_state=seed)


def linear_probe(seed: int) -> ClassifierMixin:
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000, random_state=seed))


def beat_features(data: RecordSource) -> FeatureSource:
    cache: dict[str, RecordBeats] = {}

    def features(samples: Sequence[Sample]) -> npt.NDArray[np.float64]:
        rows = []
        for s in samples:
            if s.record_id not in cache:
                cache[s.record_id] = record_beats(data.record(s.record_id))
            rows.append(window_features(cache[s.record_id], s.anchor_s, s.window_s))
        return np.array(rows)

    return features


TREND_FREE = [i for i, name in enumerate(FEATURE_NAMES) if not name.startswith(("last60_", "delta_"))]
"""Columns of the whole-window features: everything but the last minute and the half-to-half changes."""


def without_trends(source: FeatureSource) -> FeatureSource:
    def features(samples: Sequence[Sample]) -> npt.NDArray[np.float64]:
        x = source(samples)
        return x[:, TREND_FREE] if x.ndim == 2 else x  # an empty sample list gives an empty 1-D array

    return features


def pooled_embeddings(data: RecordSource, embedder: Embedder) -> FeatureSource:
    def features(samples: Sequence[Sample]) -> npt.NDArray[np.float64]:
        rows = []
        for s in samples:
            rec = embedder(data.record(s.record_id))
            end = min(int(s.anchor_s), rec.embeddings.shape[1])
            emb = rec.embeddings[:, end - s.window_s : end]  # (n_sig, w, 64)
            ok = rec.valid[:, end - s.window_s : end]
            seconds = emb[ok] if ok.any() else np.zeros((1, emb.shape[2]), np.float32)  # (n_valid, 64)
            rows.append(np.concatenate([seconds.mean(0), seconds.std(0)]))
        return np.array(rows, dtype=np.float64)

    return features


class _Constant:
    """What a classifier trained on one class predicts: that class, always."""

    def __init__(self, label: Any) -> None:
        self.classes_ = np.array([label])

    def predict_proba(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.ones((x.shape[0], 1))


def _fit(template: ClassifierMixin, x: npt.NDArray[np.float64], y: Sequence[Any]) -> Any:
    if len(set(y)) < 2:
        return _Constant(y[0])
    return clone(template).fit(x, y)


def _proba(model: Any, x: npt.NDArray[np.float64], classes: Sequence[Any]) -> npt.NDArray[np.float64]:
    """Probabilities in ``classes`` order; a class the model never saw gets 0."""
    out = np.zeros((x.shape[0], len(classes)))
    p = model.predict_proba(x)
    for j, cls in enumerate(model.classes_):
        out[:, list(classes).index(cls)] = p[:, j]
    return out


class TabularBaseline:
    """One rhythm classifier and one onset classifier per arrhythmia, fitted on one cell's training samples."""

    def __init__(self, template: ClassifierMixin, features: FeatureSource) -> None:
        self.template = template
        self.features = features

    def fit_predict(self, train: Sequence[Sample], test: Sequence[Sample]) -> Predictions:
        x_train, x_test = self.features(train), self.features(test)
        rhythm = _fit(self.template, x_train, [s.label_class for s in train])
        onset = np.zeros((len(test), len(ONSETS)))
        for j, cls in enumerate(ONSETS):
            model = _fit(self.template, x_train, [s.onset[cls] for s in train])
            onset[:, j] = _proba(model, x_test, [0, 1])[:, 1]
        return Predictions(_proba(rhythm, x_test, CLASSES), onset)
