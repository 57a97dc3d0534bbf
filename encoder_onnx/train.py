"""CAMEL stage 1: pretrain the encoder as the encoder half of an autoencoder (MSE reconstruction of 1-s windows).

With ``supervision_weight`` > 0 the same run also trains linear read-outs of each token (rhythm, ectopic beat, beat
positions; ``encoder_onnx.supervision``), so the tokens carry what a forecaster reads, not only waveform shape.

Reproducible: a dataclass config (typed overrides, unknown keys rejected), seeded batches drawn from
``np.random.default_rng([seed, step])`` so a resumed run draws the same batches it would have drawn, and
checkpoints that carry the config; on resume the checkpoint's config wins for everything but ``steps``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog
import torch

from core.errors import CheckpointError, ConfigError
from encoder_onnx.data import DataSpec, WindowSet, load_or_build
from encoder_onnx.model import ConvAutoencoder, EncoderConfig, scale_input
from encoder_onnx.supervision import RHYTHMS, SecondHeads, SecondTargets, head_metrics, second_targets, supervised_loss
from encoder_onnx.weights import save_encoder_weights

__all__ = ["TrainConfig", "apply_overrides", "evaluate_reconstruction", "resumed_config", "train_encoder"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    out_dir: Path = Path("runs/encoder")  # checkpoints, logs, data cache and the final encoder.pt
    steps: int = 3000  # 384k windows seen (~1.5 epochs of 288k): held-out MSE has flattened by then
    batch_size: int = 128  # stable Adam steps at ~0.1-0.4 s/step on one busy CPU core
    lr: float = 2e-3  # peak Adam learning rate; the ~90k-parameter autoencoder tolerates a high rate
    min_lr: float = 1e-4  # floor of the cosine decay
    warmup_steps: int = 200  # linear warm-up avoids early dead ReLUs in the 4-channel bottleneck
    weight_decay: float = 0.0  # no decay: reconstruction is under-parameterised, not over-fitting
    val_fraction: float = 0.1  # last 10% of patients (seeds) held out for validation
    eval_every: int = 500  # validation MSE cadence (steps)
    ckpt_every: int = 500  # checkpoint cadence (steps)
    seed: int = 1337  # torch init and batch sampling
    threads: int = 1  # torch intra-op threads: on a shared 2-core machine 2 threads spin and run ~8x slower
    workers: int = 2  # processes generating synthetic records
    only_valid: bool = True  # train on windows the agent judged usable; invalid ones are never forecast on
    supervision_weight: float = 0.0  # 0: CAMEL's reconstruction only; > 0: plus the simulator-label read-outs
    data: DataSpec = field(default_factory=DataSpec)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)


def _coerce(value: str, current: object, key: str) -> object:
    """Parse a CLI string into the type of the field's current value."""
    try:
        if isinstance(current, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError("expected true/false")
            return value.lower() in ("true", "1")
        if isinstance(current, tuple):
            item_type = type(current[0]) if current else str
            return tuple(item_type(v) for v in value.split(",") if v)
        if isinstance(current, Path):
            return Path(value)
        if isinstance(current, int):
            return int(value)
        if isinstance(current, float):
            return float(value)
        return value
    except ValueError as exc:
        raise ConfigError(f"override {key}={value!r}: {exc}") from exc


def apply_overrides(config: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply ``key=value`` overrides (``data.minutes=2``, ``lr=1e-3``); unknown keys raise ConfigError."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not key=value")
        section, _, name = key.rpartition(".")
        if section not in ("", "data", "encoder"):
            raise ConfigError(f"unknown config section {section!r} in override {key!r}")
        target = config if not section else getattr(config, section)
        names = {f.name for f in fields(target)}
        if name not in names:
            raise ConfigError(f"unknown config key {key!r}; known: {sorted(names)}")
        change: dict[str, Any] = {name: _coerce(value, getattr(target, name), key)}
        updated = dataclasses.replace(target, **change)
        outer: dict[str, Any] = {section: updated}
        config = updated if not section else dataclasses.replace(config, **outer)
    return config


def lr_at(step: int, config: TrainConfig) -> float:
    # 1) linear warm-up
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    # 2) cosine decay from lr to min_lr over the remaining steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    return config.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (config.lr - config.min_lr)


def split_records(data: WindowSet, config: TrainConfig) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Indices of training and validation windows; validation = a seeded random ``val_fraction`` of the patients
    (held-out seeds, spread over every scenario, noise level, fs and lead pair)."""
    n_val = max(1, round(config.data.n_records * config.val_fraction))
    val_records = np.random.default_rng([config.data.seed, 1]).permutation(config.data.n_records)[:n_val]
    is_val = np.isin(data.record, val_records)
    usable = data.valid if config.only_valid else np.ones(len(data.valid), dtype=bool)
    return np.flatnonzero(~is_val & usable), np.flatnonzero(is_val & usable)


def _config_to_json(config: TrainConfig) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(asdict(config), default=str))
    return out


def _config_from_json(data: dict[str, Any]) -> TrainConfig:
    base = TrainConfig()
    overrides = []
    for key, value in data.items():
        if isinstance(value, dict):
            overrides += [f"{key}.{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in value.items()]
        else:
            overrides.append(f"{key}={value}")
    return apply_overrides(base, overrides)


def _save_checkpoint(
    path: Path,
    model: ConvAutoencoder,
    heads: SecondHeads,
    opt: torch.optim.Optimizer,
    step: int,
    config: TrainConfig,
    history: list[dict[str, float]],
) -> None:
    tmp = path.with_suffix(".tmp")
    payload = {
        "model": model.state_dict(),
        "heads": heads.state_dict(),
        "optimizer": opt.state_dict(),
        "step": step,
        "config": _config_to_json(config),
        "history": history,
    }
    torch.save(payload, tmp)
    tmp.replace(path)


def resumed_config(config: TrainConfig) -> TrainConfig:
    """The config stored in ``out_dir/ckpt.pt``, with ``steps`` and ``out_dir`` taken from ``config``."""
    return _resume(config)[0]


def _resume(config: TrainConfig) -> tuple[TrainConfig, dict[str, Any]]:
    """Load ``out_dir/ckpt.pt``; its config is forced back except ``steps`` (so a run can be extended)."""
    path = config.out_dir / "ckpt.pt"
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path} to resume or evaluate")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    forced = _config_from_json(ckpt["config"])
    forced = dataclasses.replace(forced, steps=config.steps, out_dir=config.out_dir)
    if dataclasses.replace(config, out_dir=forced.out_dir) != forced:
        log.warning("resume_config_forced", detail="checkpoint config overrides the given one (except steps)")
    return forced, ckpt


def batch_mse(model: ConvAutoencoder, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
    """Per-window reconstruction MSE in scaled units (mV here): (B, 256) -> (B,). ``z``: the batch's embeddings,
    when the caller has computed them already (the supervised read-outs use them too)."""
    z = model.enc(x) if z is None else z
    mse: torch.Tensor = ((model.dec(z) - scale_input(x, model.enc.config)) ** 2).mean(dim=1)
    return mse


@torch.no_grad()
def evaluate_reconstruction(
    model: ConvAutoencoder, windows: npt.NDArray[np.float32], batch: int = 4096
) -> npt.NDArray[np.float64]:
    """Per-window MSE over ``windows`` (N, 256) -> (N,)."""
    model.eval()
    out = [batch_mse(model, torch.from_numpy(windows[i : i + batch])).numpy() for i in range(0, len(windows), batch)]
    model.train()
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def _rhythm_weights(targets: SecondTargets, train_idx: npt.NDArray[np.int64]) -> torch.Tensor:
    """Inverse-frequency rhythm weights over the training windows (mean 1), so sinus' majority cannot win alone."""
    counts = np.bincount(targets.rhythm[train_idx], minlength=len(RHYTHMS)).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1.0), 0.0)
    return torch.tensor(weights / weights[counts > 0].mean(), dtype=torch.float32)


class _Objective:
    """Reconstruction MSE, plus ``supervision_weight`` x the read-out loss when the run is supervised."""

    def __init__(self, model: ConvAutoencoder, data: WindowSet, config: TrainConfig, train_idx: npt.NDArray[np.int64]):
        self.model, self.weight = model, config.supervision_weight
        self.heads = SecondHeads(config.encoder.embedding_dim)
        self.targets = second_targets(data) if self.weight > 0 else None
        self.class_weights = _rhythm_weights(self.targets, train_idx) if self.targets is not None else None

    def parameters(self) -> list[torch.nn.Parameter]:
        return [*self.model.parameters(), *(self.heads.parameters() if self.targets is not None else [])]

    def loss(self, x: torch.Tensor, idx: npt.NDArray[np.int64]) -> tuple[torch.Tensor, float]:
        """Total loss of one batch and its reconstruction part (for the log)."""
        z = self.model.enc(x)
        mse = batch_mse(self.model, x, z).mean()
        if self.targets is None:
            return mse, float(mse.item())
        t = self.targets
        supervised = supervised_loss(
            self.heads,
            z,
            torch.from_numpy(t.rhythm[idx]),
            torch.from_numpy(t.beat[idx]),
            torch.from_numpy(t.positions[idx]),
            self.class_weights,
        )
        return mse + self.weight * supervised, float(mse.item())

    @torch.no_grad()
    def validate(self, windows: npt.NDArray[np.float32], val_idx: npt.NDArray[np.int64]) -> dict[str, float]:
        """Held-out reconstruction MSE, and the read-outs' metrics, from one encoder pass over the windows."""
        embeddings, mses = [], []
        for i in range(0, len(val_idx), 4096):
            x = torch.from_numpy(windows[val_idx[i : i + 4096]])
            z = self.model.enc(x)
            embeddings.append(z)
            mses.append(batch_mse(self.model, x, z))
        out = {"val_mse": float(torch.cat(mses).double().mean()) if mses else float("nan")}
        if self.targets is not None:
            out.update(head_metrics(self.heads, torch.cat(embeddings), self.targets, val_idx))
        return out


def train_encoder(config: TrainConfig, resume: bool = False) -> Path:
    """Run pretraining; returns the path of the final encoder weights (``out_dir/encoder.pt``)."""
    from tqdm import tqdm

    ckpt = None
    if resume:
        config, ckpt = _resume(config)
    config.out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    data = load_or_build(config.data, config.out_dir / "data", config.workers)
    train_idx, val_idx = split_records(data, config)
    windows = torch.from_numpy(data.windows)
    model = ConvAutoencoder(config.encoder)
    objective = _Objective(model, data, config, train_idx)
    opt = torch.optim.Adam(objective.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start, history = 0, []
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        if "heads" in ckpt:
            objective.heads.load_state_dict(ckpt["heads"])
        opt.load_state_dict(ckpt["optimizer"])
        start, history = int(ckpt["step"]), list(ckpt["history"])
    log.info("encoder_training", n_train=len(train_idx), n_val=len(val_idx), start=start, steps=config.steps)
    log_path = config.out_dir / "losses.jsonl"
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, desc="encoder")
    t0 = time.time()
    for step in bar:
        # 1) a seeded batch: the same step always draws the same windows, across resumes
        idx = np.random.default_rng([config.seed, step]).choice(train_idx, size=config.batch_size)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, config)
        # 2) one Adam step on the reconstruction MSE (plus the read-outs when supervised)
        loss, mse = objective.loss(windows[idx], idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
        done = step + 1
        # 3) validation on held-out patients, and a checkpoint
        if done % config.eval_every == 0 or done == config.steps:
            entry = {"step": done, "train_mse": mse, "train_loss": float(loss.item()), "elapsed_s": time.time() - t0}
            entry.update(objective.validate(data.windows, val_idx))
            history.append(entry)
            with log_path.open("a") as fh:
                fh.write(json.dumps(entry) + "\n")
            log.info("encoder_eval", **entry)
        if done % config.ckpt_every == 0 or done == config.steps:
            _save_checkpoint(config.out_dir / "ckpt.pt", model, objective.heads, opt, done, config, history)
    weights = config.out_dir / "encoder.pt"
    meta = {"train_config": _config_to_json(config), "history": history, "synthetic_data": True}
    save_encoder_weights(weights, model.enc, meta)
    return weights
