"""A tiny curriculum (tiny-random backbone, 2-minute records, one 30-s horizon) shared by the training tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

ENCODER = Path(__file__).resolve().parents[2] / "models" / "forecaster" / "encoder.pt"

_COMMON = {
    "batch_size": 2,
    "train_patients": 3,
    "eval_patients": 2,
    "samples_per_patient": 2,
    "window_s": [8],
    "eval_window_s": 8,
    "record_minutes": 2,
    "eval_every": 100,
    "eval_samples": 4,
    "warmup_steps": 1,
}


def write_curriculum(root: Path, steps: int = 6, lr: float = 1e-2, stages: tuple[str, ...] | None = None) -> Path:
    """Four stage files plus a curriculum that lists them; returns the curriculum path."""
    names = stages or ("classify", "measure", "converse", "forecast")
    refs = []
    for name in names:
        path = root / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"stage": name, "steps": steps, "lr": lr, **_COMMON}), encoding="utf-8")
        refs.append({"config": str(path)})
    run = {
        "name": "tiny",
        "backbone": "tiny-random",
        "seed": 3,
        "lora_r": 4,
        "lora_alpha": 8,
        "encoder_weights": str(ENCODER),
        "horizons_s": [30],
        "noise": ["none", "low"],
        "checkpoint_every_s": 3600,
        "stages": refs,
    }
    curriculum = root / "curriculum.yaml"
    curriculum.write_text(yaml.safe_dump(run), encoding="utf-8")
    return curriculum


@pytest.fixture
def tiny_curriculum(tmp_path: Path) -> Path:
    return write_curriculum(tmp_path)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Two intra-op threads on a busy 2-core box ran the tiny model ~100x slower (spinning OpenMP threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
