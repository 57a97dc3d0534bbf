"""The probe head's inputs: windows the benchmark lacks (the streaming cache's 330-360 s) re-key a benchmark
window's inputs and keep their labels; part files of another key list are refused, not resumed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evaluation.data import EvalData
from evaluation.probe_features import draw_weights, extract, input_keys, labels_of, source_window
from llm_runtime.probe import PROBE_HORIZONS
from simulators.benchmark import BenchDataset


@pytest.fixture(scope="module")
def data(tiny_bench: Path) -> EvalData:
    return EvalData(BenchDataset(tiny_bench))


def test_a_window_the_benchmark_lacks_is_drawn_from_the_window_below(data: EvalData) -> None:
    assert source_window(data, 30) == 30
    assert source_window(data, 45) == 30
    with pytest.raises(ValueError, match="no window at or below"):
        source_window(data, 5)


def test_a_test_split_without_a_frozen_subsample_is_drawn_per_window(data: EvalData) -> None:
    """A second source has no frozen LM subsample: its test inputs are a stratified draw, from test patients only."""
    keys = input_keys(data, "test", (10, 30), PROBE_HORIZONS[:1], 3)
    assert 0 < sum(k[2] == 10 for k in keys) <= 3 and 0 < sum(k[2] == 30 for k in keys) <= 3
    assert {k[0] for k in keys} <= set(data.record_ids("test"))


def test_stretched_inputs_keep_the_source_anchor_and_its_labels(data: EvalData) -> None:
    source = input_keys(data, "train", (30,), PROBE_HORIZONS[:1], 50)
    stretched = input_keys(data, "train", (45,), PROBE_HORIZONS[:1], 50)
    assert stretched == sorted((r, a, 45) for r, a, _ in source if a >= 45)
    assert stretched and all(a >= 45 for _, a, _ in stretched)
    plain = labels_of(data, "train", [(r, a, 30) for r, a, _ in stretched], PROBE_HORIZONS[:1])
    moved = labels_of(data, "train", stretched, PROBE_HORIZONS[:1])
    for name, values in plain.items():
        assert np.array_equal(values, moved[name]), name
    assert (moved["rhythm_60"] >= 0).all()
    weights = draw_weights(data, "train", stretched, PROBE_HORIZONS[:1])
    assert weights.shape == (len(stretched),) and (weights >= 1).all()


class _CountingFeatures:
    """Stands in for the LM: one feature per input, its anchor; counts the inputs it was asked for."""

    def __init__(self) -> None:
        self.calls = 0

    def features(self, key: tuple[str, float, int]) -> np.ndarray:
        self.calls += 1
        return np.array([key[1]], dtype=np.float32)


def test_extraction_resumes_its_own_parts_and_refuses_another_runs(tmp_path: Path) -> None:
    keys = [("r1", float(a), 30) for a in range(60, 60 + 50)]
    first = _CountingFeatures()
    extract(first, keys, tmp_path)  # type: ignore[arg-type]  # a double of LmForecaster.features
    again = _CountingFeatures()
    extract(again, keys, tmp_path)  # type: ignore[arg-type]
    assert first.calls == 50 and again.calls == 0
    with pytest.raises(ValueError, match="other inputs"):
        extract(_CountingFeatures(), [(r, a, 45) for r, a, _ in keys], tmp_path)  # type: ignore[arg-type]


def test_a_backward_process_shares_the_work_of_a_forward_one(tmp_path: Path) -> None:
    keys = [("r1", float(a), 30) for a in range(60, 60 + 130)]  # 4 parts of 40
    (tmp_path / "part-0000.npz").parent.mkdir(exist_ok=True)
    forward = _CountingFeatures()
    extract(forward, keys[:80], tmp_path)  # type: ignore[arg-type]  # a forward run stopped after two parts
    backward = _CountingFeatures()
    extract(backward, keys, tmp_path, from_end=True)  # type: ignore[arg-type]
    assert forward.calls == 80 and backward.calls == 50  # parts 3 and 2, then 1 and 0 are already there
    assert sorted(p.name for p in tmp_path.glob("part-*.npz")) == [f"part-{n:04d}.npz" for n in range(4)]
