"""A tiny benchmark (two scenarios, three 4-minute patients each: one test patient per scenario) and random
encoder weights, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulators.benchmark import BenchSpec, build_from_spec

TINY = BenchSpec("tiny-eval", "t", seed=7, patients_per_scenario=3, minutes=4.0, scenarios=("af_onset", "sinus_stable"))


@pytest.fixture(scope="session")
def tiny_bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    build_from_spec(TINY, out, workers=1)
    return out


@pytest.fixture(scope="session")
def random_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from encoder_onnx.model import ConvEncoder
    from encoder_onnx.weights import save_encoder_weights

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("encoder") / "encoder.pt"
    save_encoder_weights(path, ConvEncoder(), {"source": "random init for tests"})
    return path
