"""The curriculum loop: stages in order, AdamW with warm-up + cosine, periodic held-out loss, resumable checkpoints.

Run directory (``runs/<name>/``): ``config.json`` (the resolved run and stage configs; forced back on resume),
``git_commit.txt``, ``metrics.jsonl`` (one JSON object per step and per evaluation), ``ckpt.pt`` (trainable
weights, optimizer, RNG, position), ``data/`` (the built splits), ``adapters/<stage>/`` after each stage and
``adapter/`` at the end (the format ``llm_runtime`` loads).

Determinism: the samples of step ``k`` are a pure function of (seed, stage, k) (a seeded permutation per epoch),
and the torch RNG (LoRA dropout) is saved in every checkpoint, so an interrupted run resumed from its checkpoint
reaches the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import pickle
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import torch
from tqdm import tqdm

from core.errors import CheckpointError
from llm_runtime.checkpoints import save_adapter
from llm_runtime.prompts import PromptBook
from training.config import CurriculumConfig, StageConfig
from training.dataset import Item, build_split, select
from training.model import Trainable, build_trainable, sequence_loss
from training.packing import TrainSequence, pack

__all__ = ["RunPaths", "Trainer", "lr_at"]

log = structlog.get_logger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CAMEL_STAGE = {"classify": 2, "measure": 3, "converse": 4, "forecast": 5}


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def checkpoint(self) -> Path:
        return self.root / "ckpt.pt"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    def data(self, stage_index: int, split: str) -> Path:
        return self.root / "data" / f"stage{stage_index}_{split}.pkl"

    def adapter(self, stage: str | None = None) -> Path:
        return self.root / ("adapter" if stage is None else f"adapters/{stage}")


def lr_at(step: int, stage: StageConfig) -> float:
    """Linear warm-up to ``lr``, then cosine decay to 10 % of it at the last step."""
    if step < stage.warmup_steps:
        return stage.lr * (step + 1) / stage.warmup_steps
    progress = (step - stage.warmup_steps) / max(1, stage.steps - stage.warmup_steps)
    return stage.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def order(seed: int, stage_index: int, step: int, batch_size: int, n_items: int) -> list[int]:
    """Item indices of optimizer step ``step``: epochs are seeded permutations, so any step can be recomputed."""
    out = []
    for j in range(batch_size):
        flat = step * batch_size + j
        epoch, offset = divmod(flat, n_items)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + stage_index * 10_007 + epoch)
        out.append(int(torch.randperm(n_items, generator=gen)[offset]))
    return out


class Trainer:
    """Runs (or resumes) a curriculum in one run directory."""

    def __init__(self, run: CurriculumConfig, stages: list[StageConfig], out: Path, device: torch.device) -> None:
        self.run = run
        self.stages = stages
        self.paths = RunPaths(out)
        self.device = device
        self.t: Trainable | None = None
        self._last_ckpt = time.monotonic()

    # --- run directory ---------------------------------------------------------------------------------------

    def write_run_files(self) -> None:
        self.paths.root.mkdir(parents=True, exist_ok=True)
        resolved = {"run": self.run.model_dump(mode="json"), "stages": [s.model_dump(mode="json") for s in self.stages]}
        self.paths.config.write_text(json.dumps(resolved, indent=2) + "\n", encoding="utf-8")
        (self.paths.root / "git_commit.txt").write_text(git_commit() + "\n", encoding="utf-8")

    @staticmethod
    def saved_config(out: Path) -> tuple[CurriculumConfig, list[StageConfig]]:
        """The config a run directory was started with (resume forces it back)."""
        try:
            data = json.loads(RunPaths(out).config.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{out}: no readable config.json to resume from: {exc}") from exc
        return CurriculumConfig.model_validate(data["run"]), [StageConfig.model_validate(s) for s in data["stages"]]

    def _log(self, record: dict[str, Any]) -> None:
        with self.paths.metrics.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    # --- data ------------------------------------------------------------------------------------------------

    def split(self, index: int, held_out: bool) -> list[Item]:
        """Build a split once and keep it in the run directory (our own pickle, read back only by this run)."""
        path = self.paths.data(index, "eval" if held_out else "train")
        if path.exists():
            with path.open("rb") as fh:
                return pickle.load(fh)  # type: ignore[no-any-return]
        items = build_split(self.run, self.stages[index], held_out, self.run.data_workers)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            pickle.dump(items, fh)
        return items

    def sequences(self, items: list[Item], positive_weight: float = 1.0) -> list[TrainSequence]:
        t = self._trainable()
        return [pack(item, _book(t, item), positive_weight=positive_weight) for item in items]

    def _trainable(self) -> Trainable:
        if self.t is None:
            self.t = build_trainable(self.run, self.device)
        return self.t

    # --- checkpoints -----------------------------------------------------------------------------------------

    def save_checkpoint(self, stage_index: int, step: int, optimizer: torch.optim.Optimizer) -> None:
        t = self._trainable()
        state = {
            "stage_index": stage_index,
            "step": step,
            "trainable": {k: p.detach().cpu().clone() for k, p in t.named_trainable().items()},
            "optimizer": optimizer.state_dict(),
            "torch_rng": torch.random.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        staging = self.paths.checkpoint.with_suffix(".tmp")
        torch.save(state, staging)
        staging.replace(self.paths.checkpoint)
        self._last_ckpt = time.monotonic()
        log.info("checkpoint_saved", stage_index=stage_index, step=step)

    def load_checkpoint(self) -> dict[str, Any]:
        state = torch.load(self.paths.checkpoint, map_location="cpu", weights_only=True)
        named = self._trainable().named_trainable()
        if set(state["trainable"]) != set(named):
            raise CheckpointError(f"{self.paths.checkpoint}: trainable parameters do not match this config")
        with torch.no_grad():
            for key, value in state["trainable"].items():
                named[key].copy_(value)
        torch.random.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        return state  # type: ignore[no-any-return]

    def save_adapter(self, directory: Path, stage: str) -> Path:
        t = self._trainable()
        meta = {
            "version": f"{self.run.name}/{stage}",
            "backbone": self.run.backbone,
            "layout": "streaming",
            "leads": list(self.run.forecast_leads),
            "horizons_s": list(self.run.horizons_s),
            "encoder_sha256": t.encoder_sha256,
            "git_commit": git_commit(),
        }
        path = save_adapter(t.model, directory, meta)
        if t.train_encoder:
            from encoder_onnx.weights import save_encoder_weights

            save_encoder_weights(directory / "encoder.pt", t.encoder, {"source": f"fine-tuned in {self.run.name}"})
        return path

    def export_checkpoint(self, directory: Path) -> Path:
        """The adapter of the last checkpoint (a run stopped mid-stage for a deadline); its version names the step."""
        state = self.load_checkpoint()
        stage = self.stages[min(state["stage_index"], len(self.stages) - 1)].stage
        return self.save_adapter(directory, f"{stage}-step{state['step']}")

    # --- evaluation ------------------------------------------------------------------------------------------

    @torch.no_grad()
    def held_out_loss(self, seqs: list[TrainSequence]) -> float:
        t = self._trainable()
        t.train(False)
        total, count = 0.0, 0
        for seq in seqs:
            loss, n = sequence_loss(t, seq)
            total, count = total + float(loss), count + n
        t.train(True)
        return total / max(1, count)

    # --- training --------------------------------------------------------------------------------------------

    def _step(
        self, seqs: list[TrainSequence], optimizer: torch.optim.Optimizer, lr: float, drops: list[tuple[int, ...]]
    ) -> float:
        """One optimizer step over a batch: mean loss per answer token across the batch."""
        t = self._trainable()
        n_tokens = sum(s.n_answer_tokens for s in seqs)
        total = 0.0
        for seq, drop in zip(seqs, drops, strict=True):
            loss, _ = sequence_loss(t, seq, drop)
            torch.autograd.backward(loss / n_tokens)
            total += float(loss.detach())
        for group in optimizer.param_groups:
            group["lr"] = lr
        torch.nn.utils.clip_grad_norm_(list(t.named_trainable().values()), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return total / n_tokens

    def _optimizer(self, stage: StageConfig) -> torch.optim.Optimizer:
        params = list(self._trainable().named_trainable().values())
        return torch.optim.AdamW(params, lr=stage.lr, weight_decay=stage.weight_decay)

    def run_stage(self, index: int, start_step: int, optimizer: torch.optim.Optimizer, budget: list[int]) -> bool:
        """Train stage ``index`` from ``start_step``; False when the step budget ran out first (interrupted)."""
        stage = self.stages[index]
        t = self._trainable()
        items = self.split(index, held_out=False)
        train = self.sequences(items, stage.positive_weight)  # the held-out loss stays unweighted
        pool = balanced_pool(items) if stage.balance else list(range(len(items)))
        held_out = self.sequences(select(self.split(index, held_out=True), stage.eval_samples))
        if start_step == 0:
            self._log({"stage": stage.stage, "step": 0, "eval_loss": self.held_out_loss(held_out)})
        t.train(True)
        bar = tqdm(
            total=stage.steps,
            initial=start_step,
            desc=f"stage {CAMEL_STAGE[stage.stage]} {stage.stage}",
            dynamic_ncols=True,
        )
        for step in range(start_step, stage.steps):
            if budget[0] == 0:
                self.save_checkpoint(index, step, optimizer)
                bar.close()
                return False
            picks = order(self.run.seed, index, step, stage.batch_size, len(pool))
            batch = [train[pool[i]] for i in picks]
            drops = [
                dropped_leads(self.run.seed, index, step, j, stage.lead_dropout, seq.windows.shape[0])
                for j, seq in enumerate(batch)
            ]
            lr = lr_at(step, stage)
            loss = self._step(batch, optimizer, lr, drops)
            budget[0] -= 1
            record: dict[str, Any] = {"stage": stage.stage, "step": step + 1, "train_loss": round(loss, 5), "lr": lr}
            if (step + 1) % stage.eval_every == 0 or step + 1 == stage.steps:
                record["eval_loss"] = self.held_out_loss(held_out)
            self._log(record)
            bar.set_postfix(loss=f"{loss:.3f}", eval=f"{record.get('eval_loss', float('nan')):.3f}")
            bar.update(1)
            if time.monotonic() - self._last_ckpt > self.run.checkpoint_every_s:
                self.save_checkpoint(index, step + 1, optimizer)
        bar.close()
        self.save_adapter(self.paths.adapter(stage.stage), stage.stage)
        return True

    def train(self, resume: bool, max_steps: int | None = None) -> bool:
        """Run every stage (from the checkpoint when resuming); False when ``max_steps`` stopped it early."""
        start_index, start_step, opt_state = 0, 0, None
        if resume and self.paths.checkpoint.exists():
            state = self.load_checkpoint()
            start_index, start_step, opt_state = state["stage_index"], state["step"], state["optimizer"]
            log.info("resumed", stage_index=start_index, step=start_step)
        else:
            self.write_run_files()
            self._trainable()
            torch.manual_seed(self.run.seed)  # dropout; a resume restores the saved state instead
        budget = [-1 if max_steps is None else max_steps]
        for index in range(start_index, len(self.stages)):
            optimizer = self._optimizer(self.stages[index])
            if opt_state is not None and index == start_index and start_step > 0:
                optimizer.load_state_dict(opt_state)  # a stage boundary starts a fresh optimizer, as uninterrupted
            if not self.run_stage(index, start_step if index == start_index else 0, optimizer, budget):
                return False
            self.save_checkpoint(index + 1, 0, optimizer)
        self.save_adapter(self.paths.adapter(), "final")
        return True


def _book(t: Trainable, item: Item) -> PromptBook:
    from training.tasks import ForecastItem

    return t.forecast_book_for(item.horizons) if isinstance(item, ForecastItem) else t.book_for(item.strip.leads)


BALANCE_SHARE = 0.5
"""With ``balance``, this share of drawn stage-5 items is positive (an onset within, or a non-sinus rhythm at, an
asked horizon); the rest are sinus with no onset. Unbalanced data are ~80 % negative, and 'always sinus' wins."""


def balanced_pool(items: list[Item]) -> list[int]:
    """Item indices, the rarer group (positive or negative) repeated until it is ``BALANCE_SHARE`` of the pool,
    so a seeded permutation of the pool draws both groups equally; deterministic in the items."""
    from training.tasks import ForecastItem

    positive = [i for i, item in enumerate(items) if isinstance(item, ForecastItem) and item.positive]
    is_positive = set(positive)
    negative = [i for i in range(len(items)) if i not in is_positive]
    if not positive or not negative:
        return list(range(len(items)))
    few, many = sorted((positive, negative), key=len)
    target = round(len(many) * BALANCE_SHARE / (1 - BALANCE_SHARE))
    repeated = [few[k % len(few)] for k in range(max(target, len(few)))]
    return sorted(many + repeated)


def dropped_leads(seed: int, stage_index: int, step: int, j: int, share: float, n_leads: int) -> tuple[int, ...]:
    """Leads read as absent for sample ``j`` of ``step`` (every lead after the first, with probability ``share``):
    a pure function of the position, so a resumed run drops the same leads."""
    if share <= 0 or n_leads < 2:
        return ()
    gen = torch.Generator().manual_seed(seed * 7_919 + stage_index * 104_729 + step * 131 + j)
    return tuple(range(1, n_leads)) if float(torch.rand((), generator=gen)) < share else ()
