"""The forecast head's precursor read-out: fitted on a table whose precursor state shows in the trend features, it
recognises the state, ranks converting windows above quiet ones, survives save/load, and the mix learns which
source carries the onset signal."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from core.measurements import TREND_FEATURE_NAMES
from llm_runtime.precursor import window_bins
from llm_runtime.probe import ProbeHead
from llm_runtime.prompts import ARRHYTHMIAS
from training.precursor import fit_mix, fit_precursor_readout

HORIZONS = (60, 300)
WINDOWS = (60, 300)
PAC = TREND_FEATURE_NAMES.index("last60_pac_per_min")
E = len(TREND_FEATURE_NAMES)


def _table(n: int, seed: int) -> dict[str, npt.NDArray[Any]]:
    """Windows in state "none" (few PACs, AF follows 5 % of the time) or "pac_rise" (many PACs, AF follows 70 %)."""
    rng = np.random.default_rng(seed)
    rising = rng.random(n) < 0.3
    trends = rng.normal(size=(n, E))
    trends[:, PAC] = np.where(rising, rng.normal(12.0, 3.0, n), rng.normal(1.0, 1.0, n))
    trends[rng.random((n, E)) < 0.02] = np.nan  # a few unmeasured features
    af = (rng.random(n) < np.where(rising, 0.7, 0.05)).astype(int)
    table: dict[str, npt.NDArray[Any]] = {
        "trends": trends,
        "window_s": rng.choice(WINDOWS, n),
        "state": np.where(rising, "pac_rise", "none"),
    }
    for h in HORIZONS:
        table[f"onset_af_{h}"] = af
        for name in ("flutter", "vt"):
            table[f"onset_{name}_{h}"] = np.zeros(n, int)
    return table


def _head(n_features: int, n_trends: int) -> ProbeHead:
    n_in, n_h = n_features + 3 * n_trends, len(HORIZONS)
    rng = np.random.default_rng(1)
    return ProbeHead(
        HORIZONS,
        (1, -1),
        mean=np.zeros(n_in),
        scale=np.ones(n_in),
        rhythm_w=rng.normal(size=(n_h, 4, n_in)),
        rhythm_b=np.zeros((n_h, 4)),
        onset_w=np.concatenate([rng.normal(size=(n_h, 3, n_features)), np.zeros((n_h, 3, 3 * n_trends))], axis=2),
        onset_b=np.zeros((n_h, 3)),
        platt=np.tile([1.0, 0.0], (n_h, 3, 1)),
        trend_fill=np.zeros(n_trends),
    )


def test_window_bins_take_the_longest_grid_window_at_or_below() -> None:
    assert window_bins(np.array([10.0, 60.0, 300.0, 600.0]), [1, 10, 59, 60, 330, 360, 599, 900]).tolist() == [
        0,
        0,
        0,
        1,
        2,
        2,
        2,
        3,
    ]


def test_readout_recognises_the_state_and_ranks_converting_windows_first() -> None:
    readout = fit_precursor_readout(_table(2000, seed=0), HORIZONS)
    assert readout.states == ("none", "pac_rise")
    assert readout.rates.shape == (len(HORIZONS), len(ARRHYTHMIAS), len(WINDOWS), 2)
    af = list(ARRHYTHMIAS).index("af")
    assert readout.rates[0, af, :, 1].min() > 0.6 > 0.1 > readout.rates[0, af, :, 0].max()
    test = _table(500, seed=1)
    probs = readout.state_probs(test["trends"], test["window_s"])
    assert np.mean(probs.argmax(1) == (test["state"] == "pac_rise")) > 0.95
    risk = readout.onset_risk(test["trends"], test["window_s"])
    rising = test["state"] == "pac_rise"
    assert np.median(risk[rising, 1, af]) > 0.6 > 0.15 > np.median(risk[~rising, 1, af])  # a few PAC rates unmeasured
    unmeasured = readout.onset_risk(np.full((1, E), np.nan), [330])  # no beats: a risk, not a crash
    assert np.isfinite(unmeasured).all()


def test_a_single_state_table_is_refused() -> None:
    table = _table(100, seed=0)
    table["state"] = np.full(100, "none")
    with pytest.raises(ValueError, match="one state"):
        fit_precursor_readout(table, HORIZONS)


def test_mix_weights_the_source_that_carries_the_onset(tmp_path: Path) -> None:
    head = _head(n_features=8, n_trends=E)
    readout = fit_precursor_readout(_table(2000, seed=0), HORIZONS)
    val = _table(800, seed=2)
    val["x"] = np.random.default_rng(3).normal(size=(800, 8))  # LM features that carry nothing
    mix = fit_mix(head, readout, val)
    af = list(ARRHYTHMIAS).index("af")
    assert mix.shape == (len(HORIZONS), len(ARRHYTHMIAS), 3)
    assert mix[0, af, 1] > 0.5 > 0.2 > abs(mix[0, af, 0])  # the LM read-out here reads noise
    assert mix[0, list(ARRHYTHMIAS).index("vt")].tolist() == [0.0, 1.0, 0.0]  # no VT onset on validation: risk as is

    mixed = replace(head, precursor=readout, mix=mix)
    with pytest.raises(ValueError, match="window length"):
        mixed.predict(val["x"][:2], val["trends"][:2])
    before = mixed.predict(val["x"][:5], val["trends"][:5], val["window_s"][:5])
    mixed.save(tmp_path, {"synthetic_data": True})
    loaded = ProbeHead.load(tmp_path)
    assert loaded.precursor is not None and loaded.precursor.states == ("none", "pac_rise")
    after = loaded.predict(val["x"][:5], val["trends"][:5], val["window_s"][:5])
    assert [o[300]["af"] for _, o in after] == pytest.approx([o[300]["af"] for _, o in before], abs=1e-12)
    risks = np.array([o[300]["af"] for _, o in mixed.predict(val["x"], val["trends"], val["window_s"])])
    rising = val["state"] == "pac_rise"
    assert np.median(risks[rising]) > 0.5 > 0.15 > np.median(risks[~rising])  # calibrated to the 70 % / 5 % rates


def test_a_head_whose_readout_shapes_disagree_is_refused(tmp_path: Path) -> None:
    head = _head(n_features=8, n_trends=E)
    readout = fit_precursor_readout(_table(400, seed=0), HORIZONS)
    replace(head, precursor=readout, mix=np.zeros((1, 3, 3))).save(tmp_path, {})
    with pytest.raises(Exception, match="precursor read-out"):
        ProbeHead.load(tmp_path)
