"""The trainable ECG-LM for training: backbone + LoRA + projector + ECG special tokens, and the encoder in front.

Only the LoRA matrices, the projector and the special-token table train (plus the encoder when the config asks);
the backbone's own weights stay frozen, so the adapter is a few MB. The loss is the summed cross-entropy over
answer tokens only (``TrainSequence.targets``), with logits computed at those positions alone (the 262k-entry
vocabulary makes full logits the most expensive part of a forward pass).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import structlog
import torch
from torch import nn
from torch.nn import functional as F

from core.errors import CheckpointError
from encoder_onnx.model import ConvEncoder
from encoder_onnx.weights import file_sha256, load_encoder_weights
from llm_runtime.backbones import Backbone, load_backbone
from llm_runtime.model import EcgLanguageModel, EcgLmConfig, LoraSpec
from llm_runtime.prompts import CHAT_FORMATS, PromptBook, questions_for
from training.config import CurriculumConfig
from training.packing import IGNORE, TrainSequence

__all__ = ["Trainable", "build_trainable", "sequence_loss"]

log = structlog.get_logger(__name__)


@dataclass
class Trainable:
    backbone: Backbone
    model: EcgLanguageModel
    encoder: ConvEncoder
    encoder_sha256: str
    forecast_book: PromptBook  # the runtime's prompts for stage 5 (llm.leads, llm.horizons_s)
    dialogue_books: dict[tuple[str, ...], PromptBook]  # same tokenizer and chat format, per lead set
    train_encoder: bool
    horizon_books: dict[tuple[int, ...], PromptBook] = field(default_factory=dict)  # stage-5 prompts by horizons

    def forecast_book_for(self, horizons: tuple[int, ...]) -> PromptBook:
        """The stage-5 prompt asking ``horizons`` (the runtime's book when they are its horizons)."""
        if not horizons:
            return self.forecast_book
        if horizons not in self.horizon_books:
            book = self.forecast_book
            self.horizon_books[horizons] = PromptBook(book.tokenizer, book.chat, book.leads, questions_for(horizons))
        return self.horizon_books[horizons]

    def book_for(self, leads: tuple[str, ...]) -> PromptBook:
        if leads not in self.dialogue_books:
            chat = CHAT_FORMATS[self.backbone.chat]
            self.dialogue_books[leads] = PromptBook(self.backbone.tokenizer, chat, leads, ())
        return self.dialogue_books[leads]

    def named_trainable(self) -> dict[str, nn.Parameter]:
        named = {f"ecg_lm.{k}": p for k, p in self.model.named_parameters() if p.requires_grad}
        if self.train_encoder:
            named.update({f"encoder.{k}": p for k, p in self.encoder.named_parameters()})
        return named

    def train(self, mode: bool = True) -> None:
        self.model.train(mode)
        self.encoder.train(mode and self.train_encoder)


def build_trainable(run: CurriculumConfig, device: torch.device) -> Trainable:
    """Backbone from the registry (float32), a fresh ECG-LM seeded by ``run.seed``, the encoder from its file."""
    backbone = load_backbone(run.backbone, dtype=torch.float32)
    spec = LoraSpec(
        r=run.lora_r, lora_alpha=run.lora_alpha, lora_dropout=run.lora_dropout, target_modules=run.lora_targets
    )
    if run.init_adapter is not None:
        model = _from_adapter(backbone, run.init_adapter, spec)
    else:
        state = torch.random.get_rng_state()
        try:
            torch.manual_seed(run.seed)
            model = EcgLanguageModel(backbone.lm, EcgLmConfig(hidden_size=backbone.lm.config.hidden_size, lora=spec))
        finally:
            torch.random.set_rng_state(state)
    for name, param in model.lm.named_parameters():
        param.requires_grad_("lora_" in name)
    encoder, _ = load_encoder_weights(run.encoder_weights)
    encoder.requires_grad_(run.train_encoder)
    model.to(device)
    encoder.to(device)
    chat = CHAT_FORMATS[backbone.chat]
    book = PromptBook(backbone.tokenizer, chat, run.forecast_leads, questions_for(run.horizons_s))
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("trainable_built", backbone=run.backbone, trainable_params=n_train, train_encoder=run.train_encoder)
    sha = file_sha256(run.encoder_weights)
    return Trainable(backbone, model, encoder, sha, book, {}, run.train_encoder, {tuple(run.horizons_s): book})


def _from_adapter(backbone: Backbone, directory: Path, spec: LoraSpec) -> EcgLanguageModel:
    """A run that continues a trained adapter (e.g. the shipped one): its weights, checked to have the run's shape."""
    from llm_runtime.checkpoints import ADAPTER_FILE, build_from_checkpoint

    model, _ = build_from_checkpoint(backbone.lm, directory / ADAPTER_FILE)
    if model.config.lora != spec:
        raise CheckpointError(f"{directory}: LoRA {model.config.lora} differs from the run's {spec}")
    log.info("adapter_loaded_as_init", adapter=str(directory))
    return model


def ecg_rows(
    encoder: ConvEncoder, windows: torch.Tensor, trainable: bool, present: torch.Tensor | None = None
) -> torch.Tensor:
    """(n_leads, T, 256) mV windows -> (T * n_leads, 64) rows in the streaming order (time-major). ``present``
    (n_leads, T) bool zeroes the other rows, as the agent feeds an invalid second or a lead the patient lacks."""
    n_leads, n_seconds, n_samples = windows.shape
    with torch.set_grad_enabled(trainable and torch.is_grad_enabled()):
        flat: torch.Tensor = encoder(windows.reshape(n_leads * n_seconds, n_samples))  # (L*T, 256) -> (L*T, 64)
    rows = flat.reshape(n_leads, n_seconds, -1)  # (L, T, 64)
    if present is not None:
        rows = rows * present.to(rows.device, rows.dtype).unsqueeze(-1)
    return rows.transpose(0, 1).reshape(n_seconds * n_leads, -1)  # -> (T*L, 64)


def sequence_loss(t: Trainable, seq: TrainSequence, drop_leads: tuple[int, ...] = ()) -> tuple[torch.Tensor, int]:
    """(summed answer-token cross-entropy, number of answer tokens) for one sequence; ``drop_leads`` (indices)
    read as absent leads (zero rows), which is how single-lead data reaches the runtime."""
    device = t.model.device
    present = seq.valid.clone() if seq.valid is not None else None
    if drop_leads:
        present = torch.ones(seq.windows.shape[:2], dtype=torch.bool) if present is None else present
        present[list(drop_leads)] = False
    rows = ecg_rows(t.encoder, seq.windows.to(device), t.train_encoder, present)
    packed = replace(seq.packed, ecg=rows)
    hidden = t.model.decode(t.model.embed(packed), packed.meta, packed.meta, None)  # (1, n, hidden)
    where = (seq.targets != IGNORE).nonzero().squeeze(1)
    logits = t.model.logits(hidden[0, where.to(device)])  # (n_answer, vocab)
    per_token = F.cross_entropy(logits, seq.targets[where].to(device), reduction="none")
    if seq.weights is not None:
        per_token = per_token * seq.weights[where].to(device, per_token.dtype)
    loss = per_token.sum()
    return loss, int(where.numel())
