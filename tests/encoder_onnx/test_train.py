"""Pretraining: typed overrides, learning-rate schedule, checkpoints, and exact resume on a tiny synthetic run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from core.errors import CheckpointError, ConfigError
from encoder_onnx.train import TrainConfig, apply_overrides, lr_at, train_encoder
from encoder_onnx.weights import load_encoder_weights

TINY = [
    "data.n_records=3",
    "data.minutes=0.25",
    "data.fs_choices=128,250",
    "batch_size=8",
    "warmup_steps=2",
    "eval_every=2",
    "ckpt_every=2",
    "workers=1",
    "val_fraction=0.34",
]


def tiny(out_dir: Path, steps: int) -> TrainConfig:
    return apply_overrides(TrainConfig(), [*TINY, f"steps={steps}", f"out_dir={out_dir}"])


def test_overrides_are_typed() -> None:
    config = apply_overrides(
        TrainConfig(), ["lr=1e-3", "steps=7", "only_valid=false", "data.leads=II,V1", "encoder.clip_mv=4"]
    )
    assert config.lr == 1e-3 and config.steps == 7 and config.only_valid is False
    assert config.data.leads == ("II", "V1") and config.encoder.clip_mv == 4.0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("lrate=1", "unknown config key 'lrate'"),
        ("data.rate=1", "unknown config key 'data.rate'"),
        ("model.x=1", "unknown config section"),
        ("steps=many", "override steps='many'"),
        ("only_valid=maybe", "expected true/false"),
        ("steps", "not key=value"),
    ],
)
def test_bad_overrides_are_rejected(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_overrides(TrainConfig(), [override])


def test_lr_schedule_warms_up_then_decays() -> None:
    config = TrainConfig(steps=1000, warmup_steps=100, lr=1e-3, min_lr=1e-4)
    assert lr_at(0, config) == pytest.approx(1e-5)
    assert lr_at(99, config) == pytest.approx(1e-3)
    assert lr_at(100, config) == pytest.approx(1e-3)
    assert lr_at(550, config) == pytest.approx(5.5e-4)
    assert lr_at(1000, config) == pytest.approx(1e-4)


def test_resume_continues_exactly_and_forces_the_config(tmp_path: Path) -> None:
    straight = train_encoder(tiny(tmp_path / "straight", steps=4))
    train_encoder(tiny(tmp_path / "resumed", steps=2))
    changed = apply_overrides(tiny(tmp_path / "resumed", steps=4), ["lr=0.5"])  # forced back to the checkpoint's
    resumed = train_encoder(changed, resume=True)
    a, meta = load_encoder_weights(straight)
    b, _ = load_encoder_weights(resumed)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    ckpt = torch.load(tmp_path / "resumed" / "ckpt.pt", weights_only=False)
    assert ckpt["step"] == 4 and ckpt["config"]["lr"] == TrainConfig().lr
    assert [h["step"] for h in ckpt["history"]] == [2, 4]
    losses = [json.loads(line) for line in (tmp_path / "resumed" / "losses.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in losses] == [2, 4]
    assert meta["synthetic_data"] is True and meta["train_config"]["steps"] == 4


def test_resume_without_checkpoint_fails(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        train_encoder(dataclasses.replace(TrainConfig(), out_dir=tmp_path), resume=True)


def test_supervised_run_trains_the_read_outs_and_resumes_exactly(tmp_path: Path) -> None:
    supervised = ["supervision_weight=0.5", "data.generators=1,2"]
    config = apply_overrides(tiny(tmp_path / "straight", steps=4), supervised)
    straight = train_encoder(config)
    train_encoder(apply_overrides(tiny(tmp_path / "resumed", steps=2), supervised))
    resumed = train_encoder(apply_overrides(tiny(tmp_path / "resumed", steps=4), supervised), resume=True)
    a, _ = load_encoder_weights(straight)
    b, _ = load_encoder_weights(resumed)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb)
    ckpt = torch.load(tmp_path / "resumed" / "ckpt.pt", weights_only=False)
    assert set(ckpt["heads"]) == {f"{h}.{p}" for h in ("rhythm", "beat", "positions") for p in ("weight", "bias")}
    assert {"rhythm_f1", "beat_f1", "position_acc", "val_mse"} <= set(ckpt["history"][-1])
    assert ckpt["config"]["supervision_weight"] == 0.5


def test_supervision_changes_what_the_encoder_learns(tmp_path: Path) -> None:
    plain = train_encoder(tiny(tmp_path / "plain", steps=4))
    supervised = train_encoder(apply_overrides(tiny(tmp_path / "sup", steps=4), ["supervision_weight=1"]))
    a, _ = load_encoder_weights(plain)
    b, _ = load_encoder_weights(supervised)
    assert any(not torch.equal(pa, pb) for pa, pb in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
