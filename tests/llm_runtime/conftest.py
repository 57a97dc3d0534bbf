"""Fixtures on the tiny random backbone: fast, offline, deterministic."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

from llm_runtime.backbones import Backbone, load_backbone
from llm_runtime.model import EcgLanguageModel, EcgLmConfig
from llm_runtime.prompts import CHAT_FORMATS, PromptBook, questions_for
from llm_runtime.runner import ModelRunner, RunnerConfig

LEADS = ("ii", "v1")


@pytest.fixture(scope="session")
def tiny() -> Backbone:
    return load_backbone("tiny-random")


def make_model(seed: int = 0) -> EcgLanguageModel:
    """Tiny ECG-LM with every weight non-trivial: LoRA B starts at zero in peft, so randomise it here."""
    fresh = load_backbone("tiny-random")  # own copy: LoRA is injected in place
    torch.manual_seed(seed)
    model = EcgLanguageModel(fresh.lm, EcgLmConfig(hidden_size=fresh.lm.config.hidden_size))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    return model.eval()


def make_runner(config: RunnerConfig, horizons: tuple[int, ...] = (60,)) -> ModelRunner:
    backbone = load_backbone("tiny-random")
    prompts = PromptBook(backbone.tokenizer, CHAT_FORMATS["gemma"], LEADS, questions_for(horizons))
    return ModelRunner(make_model(), prompts, config)


@pytest.fixture
def streaming_runner(tiny: Backbone) -> Iterator[ModelRunner]:
    with make_runner(RunnerConfig(layout="streaming", window_s=12, slack_s=4, slide="rebuild")) as runner:
        yield runner


def ecg_seconds(n: int, seed: int = 0) -> torch.Tensor:
    """(n, n_leads, 64) random lead-second embeddings."""
    return torch.randn(n, len(LEADS), 64, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(name="ecg_seconds")
def ecg_seconds_fixture() -> Callable[..., torch.Tensor]:
    return ecg_seconds


@pytest.fixture(name="make_runner")
def make_runner_fixture() -> Callable[..., ModelRunner]:
    return make_runner
