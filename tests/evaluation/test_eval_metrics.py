"""Metric code against hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.metrics import auprc, auroc, bootstrap_ci, macro_f1, reliability


def test_macro_f1_hand_example() -> None:
    truth = ["sinus", "sinus", "sinus", "af", "af", "flutter"]
    pred = ["sinus", "sinus", "af", "af", "sinus", "flutter"]
    # sinus: TP 2, FP 1, FN 1 -> 4/6; af: TP 1, FP 1, FN 1 -> 2/4; flutter: TP 1 -> 1
    assert macro_f1(truth, pred, ("sinus", "af", "flutter")) == pytest.approx((4 / 6 + 0.5 + 1.0) / 3)


def test_macro_f1_skips_classes_absent_from_truth_and_prediction() -> None:
    assert macro_f1(["sinus", "af"], ["sinus", "af"], ("sinus", "af", "flutter")) == 1.0
    assert macro_f1(["sinus"], ["flutter"], ("sinus", "af", "flutter")) == 0.0  # both present classes score 0
    assert macro_f1([], [], ("sinus",)) is None


def test_auroc_hand_example_and_ties() -> None:
    # positives 0.35, 0.8; negatives 0.1, 0.4: pairs won 3 of 4
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert auroc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # a tie counts one half
    assert auroc([1, 1], [0.2, 0.3]) is None  # one class: undefined, not NaN


def test_auprc_hand_example() -> None:
    # thresholds 0.8 (P 1, R .5), 0.4 (P .5, R .5), 0.35 (P 2/3, R 1), 0.1 (P .5, R 1): .5*1 + .5*2/3
    assert auprc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert auprc([0, 0], [0.1, 0.2]) is None


def test_bootstrap_resamples_patients_not_samples() -> None:
    # patient a: three samples of value 1, patient b: one of value 0. Resampling patients gives only the means
    # of {a, a}, {a, b}, {b, b}: 1, 3/4, 0. Resampling windows would give other values too.
    values = np.array([1.0, 1.0, 1.0, 0.0])
    patients = ["a", "a", "a", "b"]
    seen = set()

    def stat(idx: np.ndarray) -> float:
        seen.add(round(float(values[idx].mean()), 6))
        return float(values[idx].mean())

    low, high = bootstrap_ci(patients, stat, n_boot=300, seed=1, level=1.0)  # type: ignore[misc]
    assert seen <= {1.0, 0.75, 0.0}
    assert (low, high) == (0.0, 1.0)
    assert bootstrap_ci(patients, lambda idx: None, n_boot=5) is None


def test_bootstrap_of_a_constant_is_that_constant() -> None:
    assert bootstrap_ci(["a", "b", "c"], lambda idx: 0.3, n_boot=20) == (pytest.approx(0.3), pytest.approx(0.3))


def test_reliability_hand_example() -> None:
    # bin 0 (p < .5): p .2, .2 with outcomes 0, 1 -> observed .5, gap .3; bin 1: p .9, .9 outcomes 1, 1 -> gap .1
    rel = reliability([0, 1, 1, 1], [0.2, 0.2, 0.9, 0.9], n_bins=2)
    assert rel is not None
    assert rel.ece == pytest.approx(0.5 * 0.3 + 0.5 * 0.1)
    assert rel.brier == pytest.approx((0.04 + 0.64 + 0.01 + 0.01) / 4)
    assert rel.bin_count == [2, 2]
    assert rel.bin_observed == [pytest.approx(0.5), pytest.approx(1.0)]


def test_auroc_and_auprc_match_their_definitions_on_ties() -> None:
    """The vectorised forms equal the pairwise AUROC and the threshold-by-threshold average precision."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(5, 60))
        y = rng.random(n) < 0.3
        y[0], y[1] = True, False
        s = np.round(rng.random(n), 1)  # many ties
        pos, neg = s[y], s[~y]
        pairwise = np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg])
        assert auroc(y, s) == pytest.approx(pairwise)
        ap, prev_recall = 0.0, 0.0
        for thr in np.unique(s)[::-1]:
            chosen = s >= thr
            tp = np.sum(chosen & y)
            ap += (tp / y.sum() - prev_recall) * tp / chosen.sum()
            prev_recall = tp / y.sum()
        assert auprc(y, s) == pytest.approx(ap)


def _cell(n: int, horizon: int, seed: int) -> tuple[list, object, object]:
    """Samples of one cell from 20 patients, a method that knows the labels and one that guesses."""
    import numpy as np

    from evaluation.data import CLASSES, Sample
    from evaluation.predictions import Predictions

    rng = np.random.default_rng(seed)
    labels = rng.choice(["sinus", "af", "flutter"], size=n)
    onsets = rng.integers(0, 2, size=n)
    samples = [
        Sample(
            f"r{i % 20}",
            f"p{i % 20}",
            "g",
            100.0 + i,
            30,
            horizon,
            str(labels[i]),
            {"af": int(onsets[i]), "flutter": 0, "vt": 0},
        )
        for i in range(n)
    ]
    truth = np.array([[float(c == lab) for c in CLASSES] for lab in labels])
    knows = Predictions(0.8 * truth + 0.05, np.stack([onsets * 0.8 + 0.1, np.zeros(n), np.zeros(n)], 1))
    guesses = Predictions(rng.dirichlet(np.ones(len(CLASSES)), size=n), rng.random((n, 3)))
    return samples, knows, guesses


def test_paired_difference_is_zero_against_itself_and_positive_against_guessing() -> None:
    from evaluation.scoring import paired_difference

    cells = [_cell(200, h, seed) for seed, h in enumerate((60, 300))]
    samples = [c[0] for c in cells]
    knows, guesses = [c[1] for c in cells], [c[2] for c in cells]
    same = paired_difference(samples, knows, knows, n_boot=50, seed=0, af_horizon_s=300)
    assert same["mean_macro_f1_diff"] == 0.0 and same["mean_macro_f1_diff_ci"] == (0.0, 0.0)
    better = paired_difference(samples, knows, guesses, n_boot=50, seed=0, af_horizon_s=300)
    assert better["mean_macro_f1_diff_ci"][0] > 0.3  # type: ignore[index]
    assert better["af_onset_auroc_diff_ci"][0] > 0.2  # type: ignore[index]
    worse = paired_difference(samples, guesses, knows, n_boot=50, seed=0, af_horizon_s=300)
    assert worse["mean_macro_f1_diff"] == -better["mean_macro_f1_diff"]
