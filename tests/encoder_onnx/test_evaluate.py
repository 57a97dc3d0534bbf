"""The linear-probe scorer on features with a known answer."""

from __future__ import annotations

import numpy as np

from encoder_onnx.evaluate import linear_probe


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.array(["AF"] * n + ["sinus"] * (3 * n) + ["VT"] * n)
    centres = {"AF": 0.0, "sinus": 3.0, "VT": -3.0}
    x = rng.normal(0, 0.3, size=(len(labels), 8)) + np.array([centres[c] for c in labels])[:, None]
    return x.astype(np.float32), labels


def test_separable_classes_score_far_above_chance() -> None:
    result = linear_probe("rhythm", "toy", blobs(50, 0), blobs(20, 1))
    assert result.classes == ["AF", "VT", "sinus"]
    assert result.accuracy > 0.95 and result.macro_f1 > 0.95
    assert result.chance_accuracy == 0.6  # majority class "sinus" is 3 of 5
    assert abs(result.chance_balanced_accuracy - 1 / 3) < 1e-12
    assert result.n_train == 250 and result.n_test == 100


def test_classes_missing_from_either_side_are_dropped() -> None:
    x_train, y_train = blobs(30, 2)
    x_test, y_test = blobs(10, 3)
    keep = y_test != "VT"
    result = linear_probe("rhythm", "toy", (x_train, y_train), (x_test[keep], y_test[keep]))
    assert result.classes == ["AF", "sinus"] and result.n_test == 40
