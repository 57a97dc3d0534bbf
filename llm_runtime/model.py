"""The ECG language model: a Gemma 3 language model that reads lead-second embeddings as tokens.

Parts, named as in CAMEL's checkpoints so that loading one is a key copy:

* ``llava_proj``: Linear(64 -> hidden), one lead-second embedding to one LM input vector;
* ``ecg_special``: Embedding(26, hidden), the ECG special tokens (own table, not the LM's vocabulary);
* ``lm``: the backbone (``Gemma3ForCausalLM``), optionally with LoRA adapters injected by peft.

Forward passes go through ``lm.model`` (the decoder) with explicit position ids and explicit 4-D masks, and
``lm_head`` is applied only at the positions whose logits are needed: 168 M of Gemma 3 270M's 268 M parameters
are the vocabulary, so full logits over a 700-token prompt would dominate the cost.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.cache_utils import DynamicCache

from llm_runtime.layout import ECG_SPECIAL_TOKENS, TokenKind, TokenMeta, attention_masks
from llm_runtime.packing import Packed

__all__ = ["EcgLanguageModel", "EcgLmConfig", "LoraSpec", "apply_lora"]


@dataclass(frozen=True)
class LoraSpec:
    """LoRA on the language model only. Defaults follow CAMEL (rank 128 on MedGemma-4B) scaled down: rank 16 is
    plenty for a 640-wide backbone and keeps adapters small."""

    r: int = 16
    lora_alpha: int = 32  # alpha / r = 2, CAMEL's ratio
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    bias: str = "none"
    use_dora: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "r": self.r,
            "lora_alpha": self.lora_alpha,
            "lora_dropout": self.lora_dropout,
            "target_modules": list(self.target_modules),
            "task_type": "CAUSAL_LM",
            "bias": self.bias,
            "use_dora": self.use_dora,
        }


@dataclass(frozen=True)
class EcgLmConfig:
    hidden_size: int  # the backbone's width (640 for Gemma 3 270M, 2560 for MedGemma-4B)
    ecg_dim: int = 64  # CAMEL encoder output: 4 channels x 16 positions
    n_special: int = len(ECG_SPECIAL_TOKENS)  # 26: global start/end + start/end of 12 leads
    lora: LoraSpec | None = field(default_factory=LoraSpec)


def apply_lora(lm: PreTrainedModel, spec: LoraSpec) -> nn.Module:
    """Inject LoRA adapters into ``lm`` in place (peft); returns the PeftModel wrapper (for peft's state dicts)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=spec.r,
        lora_alpha=spec.lora_alpha,
        lora_dropout=spec.lora_dropout,
        target_modules=list(spec.target_modules),
        bias=spec.bias,  # type: ignore[arg-type]  # peft's Literal; validated by LoraConfig itself
        use_dora=spec.use_dora,
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        # peft 0.21 calls a transformers 5.24 method deprecated in favour of is_activation_checkpointing.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(lm, config)


class EcgLanguageModel(nn.Module):
    def __init__(self, lm: PreTrainedModel, config: EcgLmConfig) -> None:
        super().__init__()
        self.config = config
        self.lm = lm
        self.peft: nn.Module | None = apply_lora(lm, config.lora) if config.lora is not None else None
        dtype = next(lm.parameters()).dtype
        self.llava_proj = nn.Linear(config.ecg_dim, config.hidden_size, dtype=dtype)
        self.ecg_special = nn.Embedding(config.n_special, config.hidden_size, dtype=dtype)
        self.sliding_window: int | None = getattr(lm.config, "sliding_window", None)
        self.softcap: float | None = getattr(lm.config, "final_logit_softcapping", None)

    @property
    def dtype(self) -> torch.dtype:
        return self.llava_proj.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.llava_proj.weight.device

    def embed(self, packed: Packed) -> torch.Tensor:
        """(1, n) packed tokens -> (1, n, hidden) input vectors, each from its own table."""
        kind = packed.meta.kind[0].to(self.device)
        ids = packed.ids[0].to(self.device)
        out = torch.zeros(packed.length, self.config.hidden_size, dtype=self.dtype, device=self.device)
        text = kind == TokenKind.TEXT
        if text.any():
            out[text] = self.lm.get_input_embeddings()(ids[text]).to(self.dtype)  # Gemma scales by sqrt(hidden)
        special = kind == TokenKind.ECG_SPECIAL
        if special.any():
            out[special] = self.ecg_special(ids[special])
        ecg = kind == TokenKind.ECG
        if ecg.any():
            rows = packed.ecg.to(self.device, self.dtype)[ids[ecg]]  # (n_ecg_tokens, 64)
            out[ecg] = self.llava_proj(rows)  # (n_ecg_tokens, 64) -> (n_ecg_tokens, hidden)
        return out.unsqueeze(0)

    def decode(
        self, embeds: torch.Tensor, query: TokenMeta, key: TokenMeta, cache: DynamicCache | None
    ) -> torch.Tensor:
        """Run the decoder over ``embeds`` (B, Q, hidden) whose metadata is ``query``; ``key`` describes every key
        (cached tokens followed by the queries). Returns final hidden states (B, Q, hidden); ``cache`` grows."""
        return self._run(embeds, query, key, cache, every_layer=False).last_hidden_state  # type: ignore[no-any-return]

    def layer_states(
        self, embeds: torch.Tensor, query: TokenMeta, key: TokenMeta, cache: DynamicCache | None, layers: Sequence[int]
    ) -> list[torch.Tensor]:
        """As :meth:`decode`, but the hidden states after each of ``layers`` (1-based decoder layers; -1 is the
        final, normed output), each (B, Q, hidden): what a forecast head on the LM reads."""
        out = self._run(embeds, query, key, cache, every_layer=True)
        return [out.last_hidden_state if layer == -1 else out.hidden_states[layer] for layer in layers]

    def _run(
        self, embeds: torch.Tensor, query: TokenMeta, key: TokenMeta, cache: DynamicCache | None, every_layer: bool
    ) -> Any:
        masks = attention_masks(query, key, self.sliding_window, self.dtype, self.device)
        return self.lm.model(
            inputs_embeds=embeds,
            attention_mask=masks,
            position_ids=query.pos.clamp(min=0).to(self.device),
            cache=cache,
            use_cache=cache is not None,
            output_hidden_states=every_layer,
        )

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM logits for a few selected hidden states (..., hidden) -> (..., vocab), in float32."""
        logits = self.lm.lm_head(hidden).float()
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits  # type: ignore[no-any-return]

    def ecg_state_dict(self) -> dict[str, dict[str, torch.Tensor]]:
        """The non-LM parts, keyed as in CAMEL's checkpoints."""
        return {
            "llava_proj": {k: v.detach().cpu() for k, v in self.llava_proj.state_dict().items()},
            "ecg_special": {k: v.detach().cpu() for k, v in self.ecg_special.state_dict().items()},
        }
