"""Slide parity: each input's pair is the agent's slid cache and a fresh prefill of exactly the seconds it holds."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from evaluation.data import EvalData
from evaluation.embed import Embedder
from evaluation.lm import input_evidence
from evaluation.slide_parity import SlidFeatures, split_pairs
from llm_runtime.backbones import load_backbone
from llm_runtime.model import EcgLanguageModel, EcgLmConfig
from llm_runtime.prompts import CHAT_FORMATS, PromptBook
from llm_runtime.runner import ModelRunner, RunnerConfig, ScoreRequest
from simulators.benchmark import BenchDataset

LAYERS = (1, -1)


def _forecaster(tiny_bench: Path, encoder: Path, slide: str) -> SimpleNamespace:
    """What SlidFeatures reads of an LmForecaster: a tiny probe runner (window 10 s, slack 4 s, lead II)."""
    backbone = load_backbone("tiny-random")
    torch.manual_seed(0)
    model = EcgLanguageModel(backbone.lm, EcgLmConfig(hidden_size=backbone.lm.config.hidden_size, lora=None)).eval()
    prompts = PromptBook(backbone.tokenizer, CHAT_FORMATS["gemma"], ("ii",), ())
    runner = ModelRunner(model, prompts, RunnerConfig("streaming", 10, 4, slide))  # type: ignore[arg-type]
    engine = SimpleNamespace(
        runner=runner,
        settings=SimpleNamespace(leads=("ii",)),
        probe_features=lambda requests: runner.probe_features(requests, LAYERS),
    )
    return SimpleNamespace(engine=engine, data=EvalData(BenchDataset(tiny_bench)), embedder=Embedder(encoder))


def test_the_pair_is_the_slid_cache_then_a_fresh_prefill_of_its_seconds(tiny_bench: Path, random_encoder: Path) -> None:
    forecaster = _forecaster(tiny_bench, random_encoder, "evict")
    record_id = forecaster.data.record_ids("test")[0]
    key = (record_id, 60.0, 10)
    slid = SlidFeatures(forecaster, feed_every_s=3)  # type: ignore[arg-type]  # the double above
    pair = slid.features(key)
    runner = forecaster.engine.runner
    assert runner.patient_ids == () and runner.stats.slides > 0 and slid.slid_inputs == 1
    half = pair.shape[0] // 2
    slid_x, fresh_x = pair[:half], pair[half:]
    assert not np.allclose(slid_x, fresh_x, atol=1e-6)  # the slid cache read the evicted seconds
    # the fresh half: a prefill of the seconds the slid cache held (10 + up to 4 of slack), read with the same request
    embedded = forecaster.embedder(forecaster.data.record(record_id))
    evidence = input_evidence(forecaster.data, key)
    candidates = []
    for held in range(10, 15):
        runner.prime("check", torch.from_numpy(embedded.lm_seconds(("ii",), 60 - held, 60)), 60 - held)
        candidates.append(runner.probe_features([ScoreRequest("check", evidence.text, evidence.trends)], LAYERS)[0])
        runner.finish(["check"])
    assert any(np.allclose(fresh_x, c.numpy(), atol=1e-5) for c in candidates)


def test_slide_parity_refuses_a_runner_that_rebuilds(tiny_bench: Path, random_encoder: Path) -> None:
    with pytest.raises(ValueError, match="eviction"):
        SlidFeatures(_forecaster(tiny_bench, random_encoder, "rebuild"), 10)  # type: ignore[arg-type]


def test_pairs_split_into_two_files_with_the_same_rows(tmp_path: Path) -> None:
    path = tmp_path / "test-w300-slide.npz"
    np.savez(path, x=np.arange(12.0).reshape(2, 6), record_id=np.array(["a", "b"]), anchor_s=np.array([1.0, 2.0]))
    slid, fresh = split_pairs(path, np.array([0.5, 0.25]))
    with np.load(slid) as a, np.load(fresh) as b:
        assert a["x"].tolist() == [[0, 1, 2], [6, 7, 8]] and b["x"].tolist() == [[3, 4, 5], [9, 10, 11]]
        assert a["record_id"].tolist() == b["record_id"].tolist() == ["a", "b"]
        assert a["staleness"].tolist() == b["staleness"].tolist() == [0.5, 0.25]
    assert fresh.name == "test-w300-slide-fresh.npz"


def test_staleness_replayed_from_the_schedule_is_the_runners_own(tiny_bench: Path, random_encoder: Path) -> None:
    """The runner's ledger after feeding equals the schedule's replay (which needs no model), and a fresh prefill
    of the same seconds reads 0."""
    forecaster = _forecaster(tiny_bench, random_encoder, "evict")
    record_id = forecaster.data.record_ids("test")[0]
    slid = SlidFeatures(forecaster, feed_every_s=3)  # type: ignore[arg-type]
    for anchor in (15.0, 33.0, 60.0):
        key = (record_id, anchor, 10)
        slid.features(key)
        replayed = slid.schedule.staleness(*slid.schedule.span(forecaster.data, key), 10)
        assert slid.last_staleness == pytest.approx(replayed)
    assert slid.last_staleness > 0.3  # streamed from 2 windows back: the oldest kept tokens read a window more
    runner = forecaster.engine.runner
    runner.prime("fresh", torch.zeros(12, 1, 64), 0)
    assert runner.staleness("fresh") == 0.0


def test_the_slide_shift_is_the_least_squares_shift_per_unit_of_staleness(tmp_path: Path) -> None:
    from llm_runtime.slide_shift import SlideShift

    rng = np.random.default_rng(0)
    fresh = rng.normal(size=(50, 4))
    staleness = rng.uniform(0.2, 0.6, size=50)
    true_shift = np.array([1.0, -2.0, 0.0, 0.5])
    slid = fresh + staleness[:, None] * true_shift + rng.normal(scale=1e-3, size=(50, 4))
    shift = SlideShift.fit(slid, fresh, staleness, {"pairs": "synthetic"})
    np.testing.assert_allclose(shift.shift, true_shift, atol=0.01)
    np.testing.assert_allclose(shift.correct(slid, staleness), fresh, atol=0.01)
    shift.save(tmp_path)
    again = SlideShift.load(tmp_path)
    assert again is not None and again.fitted_on == {"pairs": "synthetic"}
    np.testing.assert_array_equal(again.shift, shift.shift)
    assert SlideShift.load(tmp_path / "none") is None
    with pytest.raises(ValueError, match="staleness above 0"):
        SlideShift.fit(slid, fresh, np.zeros(50), {})
