"""Baselines train and predict on a tiny dataset; sample selection is by patient split and reproducible."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evaluation.baselines import TabularBaseline, beat_features, gbt, linear_probe, pooled_embeddings
from evaluation.cnn import CnnBaseline, CnnConfig
from evaluation.data import CLASSES, EvalData
from evaluation.embed import Embedder
from evaluation.features import FEATURE_NAMES
from simulators.benchmark import BenchDataset


def _data(root: Path) -> EvalData:
    return EvalData(BenchDataset(root))


def test_splits_are_disjoint_and_capped_selection_is_reproducible(tiny_bench: Path) -> None:
    data = _data(tiny_bench)
    train, test = data.samples("train", (10, 60)), data.samples("test", (10, 60))
    assert train and test
    assert not {s.patient_id for s in train} & {s.patient_id for s in test}
    capped = data.samples("test", (10, 60), cap=3, seed=1)
    assert capped == data.samples("test", (10, 60), cap=3, seed=1)
    assert len({s.key for s in capped}) == 3
    keys = data.inputs("test", 10, (60, 180), cap=2, seed=0)
    assert len(keys) == 2 and all(k[2] == 10 for k in keys)


def test_gbt_and_probe_predict_distributions(tiny_bench: Path, random_encoder: Path) -> None:
    data = _data(tiny_bench)
    train, test = data.samples("train", (30, 60)), data.samples("test", (30, 60))
    features = beat_features(data)
    x = features(test[:2])
    assert x.shape == (2, len(FEATURE_NAMES))
    for template, source in ((gbt, features), (linear_probe, pooled_embeddings(data, Embedder(random_encoder)))):
        pred = TabularBaseline(template(0), source).fit_predict(train, test)
        assert pred.rhythm.shape == (len(test), len(CLASSES))
        np.testing.assert_allclose(pred.rhythm.sum(axis=1), 1.0, atol=1e-6)
        assert ((pred.onset >= 0) & (pred.onset <= 1)).all()


def test_cnn_trains_and_predicts_every_horizon(tiny_bench: Path) -> None:
    data = _data(tiny_bench)
    cells = [(10, 60), (30, 60), (10, 180)]
    cnn = CnnBaseline(data, CnnConfig(horizons_s=(60, 180), epochs=1, channels=(1, 4, 8), batch_size=8))
    cnn.fit([s for cell in cells for s in data.samples("train", cell, cap=6, seed=0)])
    test = data.samples("test", (10, 180), cap=3) + data.samples("test", (30, 60), cap=3)
    pred = cnn.predict(test)
    assert pred.rhythm.shape == (len(test), len(CLASSES))
    np.testing.assert_allclose(pred.rhythm.sum(axis=1), 1.0, atol=1e-5)
