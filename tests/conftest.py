"""Shared fixtures: a private mosquitto per test, never the shared broker on 1883, and one random-init encoder
(saved in our weights layout and exported to ONNX once per session) for the encoder and the agent's encoder stage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from agent.local_broker import LocalMosquitto
from encoder_onnx.model import ConvEncoder
from encoder_onnx.runtime import EncoderRuntime
from encoder_onnx.settings import EncoderSettings
from encoder_onnx.weights import save_encoder_weights
from main import main


@pytest.fixture
def broker() -> Iterator[LocalMosquitto]:
    """A fresh private broker (persistence on) for one test; ``broker.restart()`` keeps queued messages."""
    with LocalMosquitto() as instance:
        yield instance


@pytest.fixture(scope="session")
def encoder_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(weights .pt, exported .onnx) of a seeded random-init encoder."""
    root = tmp_path_factory.mktemp("encoder")
    torch.manual_seed(0)
    weights = root / "encoder.pt"
    save_encoder_weights(weights, ConvEncoder(), {"seed": 0, "note": "test fixture, untrained"})
    onnx_path = root / "encoder.onnx"
    # Exported through the CLI (the acceptance interface), once per session: exporting is the slow step.
    assert main(["export-encoder", "--weights", str(weights), "--out", str(onnx_path), "--real-records", "1"]) == 0
    return weights, onnx_path


@pytest.fixture
def runtime(encoder_files: tuple[Path, Path]) -> Iterator[EncoderRuntime]:
    weights, onnx_path = encoder_files
    settings = EncoderSettings(weights_path=weights, onnx_path=onnx_path, provider="cpu")
    with EncoderRuntime(onnx_path, settings) as rt:
        yield rt
