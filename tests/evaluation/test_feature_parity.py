"""The head scored on two feature sets of the same inputs: identical features compare as equal, moved features as
apart, and feature sets of different inputs are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evaluation.data import EvalData
from evaluation.probe_eval import ProbeEvalConfig, ProbeInputs, compare_to_reference
from evaluation.probe_features import input_keys
from llm_runtime.probe import PROBE_HORIZONS, ProbeHead
from llm_runtime.prompts import ARRHYTHMIAS, RHYTHMS
from simulators.benchmark import BenchDataset

F = 6


def _head(rng: np.random.Generator) -> ProbeHead:
    h, r, a = len(PROBE_HORIZONS), len(RHYTHMS), len(ARRHYTHMIAS)
    platt = np.stack([np.ones((h, a)), np.zeros((h, a))], axis=-1)
    return ProbeHead(
        PROBE_HORIZONS, (0,), np.zeros(F), np.ones(F), rng.normal(size=(h, r, F)), np.zeros((h, r)),
        rng.normal(size=(h, a, F)), np.zeros((h, a)), platt,
    )  # fmt: skip


def test_compare_to_reference(tiny_bench: Path, tmp_path: Path) -> None:
    data = EvalData(BenchDataset(tiny_bench))
    keys = input_keys(data, "test", (10, 30), PROBE_HORIZONS, 6)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(len(keys), F))
    config = ProbeEvalConfig(tmp_path, tmp_path, tmp_path, n_boot=20)
    variants = {
        "reference": ProbeInputs(keys, x, None),
        "same": ProbeInputs(keys, x.copy(), None),
        "moved": ProbeInputs(keys, x + 3.0 * rng.normal(size=x.shape), None),
    }
    out = compare_to_reference(data, _head(rng), variants, "reference", config)
    assert out["inputs"] == len(keys)
    assert out["feature_gap_over_head_scale_median"]["same"] == 0.0
    assert out["feature_gap_over_head_scale_median"]["moved"] > 1.0
    assert out["same_minus_reference"]["mean_macro_f1_diff"] == 0.0
    assert out["same"]["mean_macro_f1"] == out["reference"]["mean_macro_f1"]
    assert out["moved"]["cells"] != out["reference"]["cells"]
    with pytest.raises(ValueError, match="different inputs"):
        compare_to_reference(
            data, _head(rng), {"reference": variants["reference"], "fewer": ProbeInputs(keys[1:], x[1:], None)},
            "reference", config,
        )  # fmt: skip
