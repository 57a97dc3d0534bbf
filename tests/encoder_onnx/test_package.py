"""The package's public surface and CLI wiring."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import encoder_onnx
from main import build_parser

ROOT = Path(__file__).resolve().parents[2]


def test_exported_members() -> None:
    assert encoder_onnx.__all__ == [
        "EmbeddingRing",
        "EmbeddingWindow",
        "EncoderRuntime",
        "EncoderSettings",
        "EncoderStage",
        "RuntimeState",
        "encode_ready",
        "ensure_onnx",
    ]
    for name in encoder_onnx.__all__:
        assert getattr(encoder_onnx, name).__name__ == name


def test_encoder_section_in_root_settings() -> None:
    from agent.settings import load_settings

    settings = load_settings()
    assert settings.encoder.provider == "auto"
    # the default is the encoder the shipped LM adapter was trained with (checked by the agent at start-up)
    assert settings.encoder.weights_path == ROOT / "models" / "forecaster" / "encoder.pt"


def test_cli_parses_train_group_and_export() -> None:
    parser = build_parser()
    args = parser.parse_args(["train", "encoder", "--steps", "5", "--out", "x", "--resume", "--set", "lr=1e-3"])
    assert (args.stage, args.steps, args.out, args.resume, args.overrides) == (
        "encoder",
        5,
        Path("x"),
        True,
        ["lr=1e-3"],
    )
    args = parser.parse_args(["export-encoder", "--out", "m.onnx"])
    assert args.out == Path("m.onnx") and args.func.__name__ == "cmd_export"


def test_help_does_not_import_torch_or_onnxruntime() -> None:
    code = "import sys, main; main.build_parser(); print('torch' in sys.modules, 'onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_export_cli_wrote_the_fixture_model(encoder_files: tuple[Path, Path]) -> None:
    """The session fixture exports through ``python main.py export-encoder``; its output is a real model."""
    assert encoder_files[1].stat().st_size > 100_000
