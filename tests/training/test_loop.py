"""A tiny end-to-end curriculum (tiny-random backbone) and resume-equals-uninterrupted."""

import json
from pathlib import Path

import torch

from llm_runtime.backbones import load_backbone
from llm_runtime.checkpoints import load_adapter
from tests.training.conftest import write_curriculum
from training.config import load_curriculum
from training.loop import Trainer


def _metrics(run_dir: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_each_stage_lowers_held_out_loss_and_ships_an_adapter(tmp_path: Path) -> None:
    run, stages = load_curriculum(write_curriculum(tmp_path))
    out = tmp_path / "run"
    assert Trainer(run, stages, out, torch.device("cpu")).train(resume=False)
    metrics = _metrics(out)
    for stage in stages:
        evals = [m["eval_loss"] for m in metrics if m["stage"] == stage.stage and "eval_loss" in m]
        assert evals[-1] < evals[0] - 0.05, (stage.stage, evals)
    assert (out / "git_commit.txt").read_text().strip()
    assert json.loads((out / "config.json").read_text())["run"]["backbone"] == "tiny-random"
    model, meta = load_adapter(load_backbone("tiny-random").lm, out / "adapter")
    assert meta["leads"] == ["ii", "v1"] and meta["horizons_s"] == [30]
    lora_b = [p for name, p in model.lm.named_parameters() if "lora_B" in name]
    assert lora_b and all(float(p.detach().abs().sum()) > 0 for p in lora_b)  # LoRA B starts at zero: it was trained
    for stage in ("classify", "measure", "converse", "forecast"):
        assert (out / "adapters" / stage / "ecg_lm.pt").exists()


def test_resume_reproduces_the_uninterrupted_run(tmp_path: Path) -> None:
    path = write_curriculum(tmp_path, steps=3, stages=("classify", "forecast"))
    run, stages = load_curriculum(path)
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert Trainer(run, stages, whole, torch.device("cpu")).train(resume=False)
    assert not Trainer(run, stages, split, torch.device("cpu")).train(resume=False, max_steps=3)  # at a stage boundary
    saved_run, saved_stages = Trainer.saved_config(split)
    assert not Trainer(saved_run, saved_stages, split, torch.device("cpu")).train(resume=True, max_steps=1)  # mid-stage
    assert Trainer(saved_run, saved_stages, split, torch.device("cpu")).train(resume=True)
    a = torch.load(whole / "ckpt.pt", weights_only=True)["trainable"]
    b = torch.load(split / "ckpt.pt", weights_only=True)["trainable"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    losses = [[m["train_loss"] for m in _metrics(d) if "train_loss" in m] for d in (whole, split)]
    assert losses[0] == losses[1]
