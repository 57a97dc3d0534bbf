"""The probe variant's fits: the grounded projector and the forecast head (on synthetic features)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import CheckpointError
from core.measurements import TREND_FEATURE_NAMES
from llm_runtime.probe import PROBE_HORIZONS, ProbeHead
from training.probe import (
    HeadRecipe,
    fit_probe_head,
    grounded_projector,
    load_split,
    operating_points,
    train_head,
)


def test_grounded_projector_sends_each_seconds_token_to_its_words() -> None:
    rng = np.random.default_rng(0)
    words = {k: torch.randn(32) for k in ("sinus", "af", "N", "V")}
    rhythm = rng.choice(["sinus", "af"], size=400)
    beat = rng.choice(["N", "V"], size=400)
    # tokens that code the labels linearly (plus noise), as the supervised encoder's do
    tokens = np.stack([(rhythm == "af"), (beat == "V")], 1).astype(np.float32) @ rng.normal(size=(2, 64))
    tokens = (tokens + 0.01 * rng.normal(size=tokens.shape)).astype(np.float32)
    weight, bias = grounded_projector(tokens, list(rhythm), list(beat), words)
    assert weight.shape == (32, 64) and bias.shape == (32,)
    projected = torch.from_numpy(tokens) @ weight.T + bias
    target = torch.stack([(words[r] + words[b]) / 2 for r, b in zip(rhythm, beat, strict=True)])
    assert float((projected - target).norm() / target.norm()) < 0.05


def _features(n: int, seed: int) -> dict[str, np.ndarray]:
    """Features whose first columns carry the rhythm and an AF-onset signal; the last horizon is missing for some
    rows (-1), as at a record's end."""
    rng = np.random.default_rng(seed)
    rhythm = rng.integers(0, 4, size=n)
    af_onset = rng.integers(0, 2, size=n)
    x = rng.normal(size=(n, 12))
    x[np.arange(n), rhythm] += 3.0
    x[:, 4] += 2.0 * af_onset
    trends = rng.normal(size=(n, len(TREND_FEATURE_NAMES)))
    trends[rng.random(trends.shape) < 0.05] = np.nan  # too few beats for some features
    out: dict[str, np.ndarray] = {"x": x, "trends": trends, "layers": np.array([9, -1]), "window_s": np.full(n, 300)}
    for h in PROBE_HORIZONS:
        out[f"rhythm_{h}"] = rhythm.copy()
        out[f"onset_af_{h}"] = af_onset.copy()
        out[f"onset_flutter_{h}"] = rng.integers(0, 2, size=n)
        out[f"onset_vt_{h}"] = np.zeros(n, dtype=np.int64)  # one class only: no classifier, probability ~0
    out[f"rhythm_{PROBE_HORIZONS[-1]}"][: n // 10] = -1
    return out


def test_head_reads_rhythm_and_onset_and_handles_missing_labels() -> None:
    train, val, test = _features(600, 0), _features(300, 1), _features(300, 2)
    head = fit_probe_head(train, val, (9, -1))
    out = head.predict(test["x"], test["trends"])
    for i, h in enumerate(PROBE_HORIZONS):
        guess = np.array([max(r[h], key=r[h].__getitem__) for r, _ in out])
        truth = np.array(["sinus", "af", "flutter", "vt"])[test[f"rhythm_{h}"]]
        assert np.mean(guess == truth) > 0.8, h
        p_af = np.array([o[h]["af"] for _, o in out])
        assert p_af[test[f"onset_af_{h}"] == 1].mean() > p_af[test[f"onset_af_{h}"] == 0].mean() + 0.3
        assert max(o[h]["vt"] for _, o in out) < 1e-6
        assert head.platt[i, 0, 0] > 0  # calibrated on validation, same direction as the raw score


def test_train_head_writes_a_head_the_runtime_loads(tmp_path: Path) -> None:
    np.savez(tmp_path / "train.npz", **_features(300, 0))
    np.savez(tmp_path / "val.npz", **_features(150, 1))
    path = train_head(tmp_path, tmp_path / "adapter")
    head = ProbeHead.load(path.parent)
    assert head.horizons_s == PROBE_HORIZONS and head.layers == (9, -1)


def test_calibration_weights_inputs_back_to_the_splits_own_frequencies() -> None:
    """Validation inputs drawn with onsets over-represented: weighting negatives up lowers the calibrated risk."""
    train, val, test = _features(600, 0), _features(300, 1), _features(300, 2)
    plain = fit_probe_head(train, val, (9, -1))
    val_weighted = {**val, "weight": np.where(val["onset_af_60"] == 1, 1.0, 5.0)}
    weighted = fit_probe_head(train, val_weighted, (9, -1), HeadRecipe(weighted_calibration=True))
    assert np.array_equal(fit_probe_head(train, val_weighted, (9, -1)).platt, plain.platt)  # off by default
    mean_af = lambda head: np.mean([o[60]["af"] for _, o in head.predict(test["x"], test["trends"])])  # noqa: E731
    assert mean_af(weighted) < mean_af(plain) - 0.1


def test_a_split_reads_its_extra_window_grids_as_more_rows(tmp_path: Path) -> None:
    np.savez(tmp_path / "train.npz", **_features(30, 0))
    np.savez(tmp_path / "train-w330-360.npz", **_features(20, 1))
    np.savez(tmp_path / "train-zero-ecg.npz", **_features(5, 2))  # an ablation is not training data
    rows = load_split(tmp_path, "train")
    assert len(rows["x"]) == 50 and len(rows["rhythm_60"]) == 50 and list(rows["layers"]) == [9, -1]
    with pytest.raises(FileNotFoundError, match=r"val\.npz"):
        load_split(tmp_path, "val")


def test_operating_point_bounds_false_positives_per_forecast_on_validation() -> None:
    train, val = _features(600, 0), _features(2000, 1)
    val["window_s"][:1000] = 60  # too short for the streaming cache: not used
    head = fit_probe_head(train, val, (9, -1))
    points = operating_points(head, val, alert_horizons=(60, 300), max_fpr=0.05)
    af = points["af"]
    assert af["negatives"] + af["positives"] == 1000
    assert af["fpr_per_forecast"] <= 0.06
    assert af["tpr_per_forecast"] > 3 * af["fpr_per_forecast"]  # the AF-onset column carries signal
    assert points["vt"]["positives"] == 0 and points["vt"]["tpr_per_forecast"] == 0.0


def test_the_head_reads_the_trend_features_beside_the_lm() -> None:
    """An onset signal only the trend features carry (a rising PAC rate, say): a head that reads them finds it, one
    that reads the LM features alone cannot; a forecast without measurements counts every trend as missing."""
    train, val, test = _features(600, 0), _features(300, 1), _features(300, 2)
    column = TREND_FEATURE_NAMES.index("delta_pac_per_min")
    for split in (train, val, test):
        split["onset_flutter_300"] = (split["trends"][:, column] > 0.5).astype(np.int64)
        split["trends"][:, column] = np.nan_to_num(split["trends"][:, column])
    i = PROBE_HORIZONS.index(300)
    gap = {}
    for trends in (True, False):
        head = fit_probe_head(train, val, (9, -1), HeadRecipe(trends=trends))
        p = np.array([o[300]["flutter"] for _, o in head.predict(test["x"], test["trends"])])
        positive = test["onset_flutter_300"] == 1
        gap[trends] = p[positive].mean() - p[~positive].mean()
        assert head.reads_trends is trends and head.platt.shape[0] == len(PROBE_HORIZONS) > i
    assert gap[True] > 0.3 and abs(gap[False]) < 0.1
    head = fit_probe_head(train, val, (9, -1))
    unmeasured = head.predict(test["x"][:3], None)
    assert all(0.0 <= o[300]["flutter"] <= 1.0 for _, o in unmeasured)


def test_a_head_fitted_on_other_trend_features_is_refused(tmp_path: Path) -> None:
    head = fit_probe_head(_features(300, 0), _features(150, 1), (9, -1))
    head.save(tmp_path, {})
    info = json.loads((tmp_path / "probe_head.json").read_text())
    assert info["trend_features"] == list(TREND_FEATURE_NAMES)
    info["trend_features"] = info["trend_features"][::-1]
    (tmp_path / "probe_head.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="other trend features"):
        ProbeHead.load(tmp_path)


def test_train_head_asks_for_trend_features_the_files_lack(tmp_path: Path) -> None:
    for name, n in (("train", 300), ("val", 150)):
        np.savez(tmp_path / f"{name}.npz", **{k: v for k, v in _features(n, 0).items() if k != "trends"})
    with pytest.raises(ValueError, match="no trend features"):
        train_head(tmp_path, tmp_path / "adapter")
    head = ProbeHead.load(train_head(tmp_path, tmp_path / "adapter", HeadRecipe(trends=False)).parent)
    assert not head.reads_trends
