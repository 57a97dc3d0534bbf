"""Fitting the onset calibration: Platt fits against hand-computed optima, per-arrhythmia maps only with data,
cross-fitting by patient, and the map written into adapter.json."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from evaluation.calibrate import (
    OnsetSample,
    cross_fitted,
    fit_onset_calibration,
    fit_platt,
    operating_point,
    write_calibration,
)
from evaluation.metrics import reliability
from llm_runtime.calibration import OnsetCalibration


def test_constant_scores_fit_the_base_rate() -> None:
    scale = fit_platt([0.5] * 40, [1] * 10 + [0] * 30, l2=1e-3)  # logit 0: only the intercept matters, at logit(1/4)
    assert scale.b == pytest.approx(math.log(1 / 3), abs=0.01)
    assert scale(0.5) == pytest.approx(0.25, abs=0.002)


def test_calibrated_scores_fit_the_identity() -> None:
    p = [0.2] * 5 + [0.8] * 5  # observed rates 1/5 and 4/5: already calibrated
    scale = fit_platt(p, [1, 0, 0, 0, 0, 1, 1, 1, 1, 0])
    assert scale.a == pytest.approx(1.0, abs=1e-6) and scale.b == pytest.approx(0.0, abs=1e-6)


def test_overconfident_scores_are_flattened() -> None:
    # 0.9 right 60 % of the time, 0.1 wrong 40 %: optimum b = 0, a = ln 1.5 / ln 9 = 0.1845
    p = [0.9] * 500 + [0.1] * 500
    y = [1] * 300 + [0] * 200 + [1] * 200 + [0] * 300
    scale = fit_platt(p, y)
    assert scale.a == pytest.approx(math.log(1.5) / math.log(9), abs=0.002)
    assert scale.b == pytest.approx(0.0, abs=0.002)
    assert scale(0.9) == pytest.approx(0.6, abs=0.002)


def test_scores_in_a_narrow_range_do_not_run_off() -> None:
    # nearly separable within 0.040-0.046 (what the first adapter gave): the slope stays bounded by the L2 pull
    p = [0.040 + 0.0001 * i for i in range(40)] + [0.044 + 0.0001 * i for i in range(20)]
    y = [0] * 40 + [1] * 20
    scale = fit_platt(p, y)
    assert 0 < scale.a < 200 and all(0 < scale(q) < 1 for q in p)
    assert scale(0.046) > scale(0.040)


def test_reversed_scores_give_no_negative_slope() -> None:
    scale = fit_platt([0.9] * 10 + [0.1] * 10, [0] * 10 + [1] * 10)
    assert scale.a > 0  # a map may not invert the ranking; it degenerates to (almost) the base rate


def _samples(cls: str, positives: int, negatives: int, horizon: int = 300) -> list[OnsetSample]:
    return [OnsetSample(horizon, cls, f"p{i % 3}", 0.6, 1) for i in range(positives)] + [
        OnsetSample(horizon, cls, f"p{i % 3}", 0.4, 0) for i in range(negatives)
    ]


def test_per_arrhythmia_maps_only_where_both_outcomes_are_frequent() -> None:
    data = _samples("af", 10, 30) + _samples("vt", 2, 30) + _samples("af", 1, 9, horizon=60)
    cal = fit_onset_calibration(data, min_per_outcome=8)
    assert set(cal.scales) == {60, 300}
    assert set(cal.scales[300]) == {"*", "af"} and set(cal.scales[60]) == {"*"}


def test_cross_fitting_maps_each_patient_without_its_own_labels() -> None:
    data = _samples("af", 12, 30)
    out = cross_fitted(data, min_per_outcome=100)
    assert len(out) == len(data) and all(0 < p < 1 for p in out)
    alone = [s for s in data if s.patient_id != "p0"]
    expected = fit_onset_calibration(alone, 100).apply({300: {"af": 0.6}})[300]["af"]
    assert out[0] == pytest.approx(expected)  # sample 0 belongs to p0


def test_write_calibration_keeps_the_other_keys(tmp_path: Path) -> None:
    (tmp_path / "adapter.json").write_text(json.dumps({"format": "ecgcast-adapter/1", "encoder_sha256": "abc"}))
    cal = fit_onset_calibration(_samples("af", 10, 30), 8, "val")
    write_calibration(tmp_path, cal)
    meta = json.loads((tmp_path / "adapter.json").read_text())
    assert meta["encoder_sha256"] == "abc"
    assert OnsetCalibration.from_meta(meta) == OnsetCalibration(
        {h: {k: type(s)(round(s.a, 6), round(s.b, 6)) for k, s in per.items()} for h, per in cal.scales.items()},
        "val",
    )


def test_weights_count_like_repeated_samples() -> None:
    weighted = fit_platt([0.5, 0.5], [1, 0], weights=[1.0, 3.0], l2=1e-3)  # one positive, three negatives' worth
    assert weighted(0.5) == pytest.approx(0.25, abs=0.01)
    p, y, w = [0.1, 0.3, 0.35, 0.9], [0, 1, 0, 1], [2.0, 1.0, 3.0, 1.0]
    repeated = reliability([0, 0, 1, 0, 0, 0, 1], [0.1, 0.1, 0.3, 0.35, 0.35, 0.35, 0.9])
    got = reliability(y, p, weights=w)
    assert got is not None and repeated is not None
    assert got.ece == pytest.approx(repeated.ece) and got.brier == pytest.approx(repeated.brier)
    assert got.bin_observed == repeated.bin_observed and got.bin_mean_prob == pytest.approx(repeated.bin_mean_prob)
    assert got.bin_count == [0, 1, 0, 2, 0, 0, 0, 0, 0, 1]  # counts stay samples


def test_operating_point_by_hand() -> None:
    data = [OnsetSample(300, "af", "p", p, y) for p, y in ((0.1, 0), (0.2, 0), (0.3, 1), (0.4, 0), (0.6, 1))]
    point = operating_point(data, [s.p for s in data])
    # t = 0.3: sensitivity 2/2, false-positive rate 1/3 -> J = 2/3 (t = 0.6: 1/2 - 0 = 1/2)
    assert point == pytest.approx(
        {"threshold": 0.3, "sensitivity": 1.0, "false_positive_rate": 1 / 3, "youden_j": 2 / 3}
    )
    assert operating_point(data[:2], [0.1, 0.2]) is None  # no positives
