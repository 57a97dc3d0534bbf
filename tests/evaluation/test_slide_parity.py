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
    slid, fresh = split_pairs(path)
    with np.load(slid) as a, np.load(fresh) as b:
        assert a["x"].tolist() == [[0, 1, 2], [6, 7, 8]] and b["x"].tolist() == [[3, 4, 5], [9, 10, 11]]
        assert a["record_id"].tolist() == b["record_id"].tolist() == ["a", "b"]
    assert fresh.name == "test-w300-slide-fresh.npz"
