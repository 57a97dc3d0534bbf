"""Batched scoring of answer options on top of (possibly empty) cached prefixes.

A :class:`ScoreRow` is one patient: the cached prefix (per-layer keys/values and their token metadata; empty for
the CAMEL layout or a full prefill) and the packed part to run now, whose branches carry the answer options.
Rows are batched by left-padding the cached keys/values and right-padding the new part; padding keys are masked
out and the rotary positions come from each row's own metadata, so a padded row computes what it would alone.
The patients' caches are never modified: the batch cache is a new ``DynamicCache`` holding copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers.cache_utils import DynamicCache

from llm_runtime.layout import TokenMeta
from llm_runtime.model import EcgLanguageModel
from llm_runtime.packing import Packed

__all__ = ["OptionTarget", "ScoreRow", "run_rows"]

KeyValues = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: (1, kv_heads, L, head_dim) keys and values


@dataclass(frozen=True)
class OptionTarget:
    """Where option ``option`` of question ``question`` is read: ``predictors[i]`` (an index into the new part)
    predicts token ``targets[i]``."""

    question: int
    option: int
    predictors: tuple[int, ...]
    targets: tuple[int, ...]


@dataclass(frozen=True)
class ScoreRow:
    prefix_kv: KeyValues | None  # None when nothing is cached
    prefix_meta: TokenMeta  # (1, L)
    new: Packed  # (1, S)
    options: tuple[OptionTarget, ...]


def _batch_cache(rows: Sequence[ScoreRow], width: int) -> DynamicCache:
    """Left-pad every row's cached keys/values to ``width`` and stack them into one batch cache."""
    if width == 0:
        return DynamicCache()
    template = next(r.prefix_kv for r in rows if r.prefix_kv)
    layers = []
    for layer, (k0, _) in enumerate(template):
        keys, values = [], []
        for r in rows:
            length = r.prefix_meta.length
            zeros = k0.new_zeros(1, k0.shape[1], width - length, k0.shape[3])
            if r.prefix_kv is None or length == 0:
                keys.append(k0.new_zeros(1, k0.shape[1], width, k0.shape[3]))
                values.append(keys[-1])
                continue
            k, v = r.prefix_kv[layer]
            keys.append(torch.cat([zeros, k], dim=2))  # (1, kvh, L, hd) -> (1, kvh, width, hd)
            values.append(torch.cat([zeros, v], dim=2))
        layers.append((torch.cat(keys, dim=0), torch.cat(values, dim=0)))  # (B, kvh, width, hd)
    return DynamicCache(ddp_cache_data=layers)


def run_rows(model: EcgLanguageModel, rows: Sequence[ScoreRow]) -> list[list[torch.Tensor]]:
    """One forward pass over all rows. Returns, per row and per option target, the log-probability of each of
    the option's tokens (float32, shape (n_tokens,)), in the order of ``row.options``."""
    width = max(r.prefix_meta.length for r in rows)
    prefix_meta = TokenMeta.stack([r.prefix_meta for r in rows], pad_side="left")
    query = TokenMeta.stack([r.new.meta for r in rows], pad_side="right")
    embeds = [model.embed(r.new)[0] for r in rows]  # each (S_b, hidden)
    padded = torch.zeros(len(rows), query.length, model.config.hidden_size, dtype=model.dtype, device=model.device)
    for b, e in enumerate(embeds):
        padded[b, : e.shape[0]] = e
    cache = _batch_cache(rows, width)
    hidden = model.decode(padded, query, prefix_meta.cat(query), cache)  # (B, S, hidden)
    # Sibling options share their first predictor (the question's last token): run lm_head once per position.
    positions: dict[tuple[int, int], int] = {}
    row_of_target, target_ids, sizes = [], [], []
    for b, r in enumerate(rows):
        for opt in r.options:
            row_of_target += [positions.setdefault((b, p), len(positions)) for p in opt.predictors]
            target_ids += list(opt.targets)
            sizes.append(len(opt.targets))
    batch_idx, pos_idx = zip(*positions, strict=True)
    logprobs = torch.log_softmax(model.logits(hidden[list(batch_idx), list(pos_idx)]), dim=-1)  # (n_pos, vocab)
    picked = logprobs[torch.tensor(row_of_target), torch.tensor(target_ids)].cpu()  # (n_targets,)
    per_option = list(torch.split(picked, sizes))
    out: list[list[torch.Tensor]] = []
    for r in rows:
        out.append(per_option[: len(r.options)])
        per_option = per_option[len(r.options) :]
    return out


def cache_layers(cache: DynamicCache) -> KeyValues:
    """The (keys, values) tensors of every layer of a cache."""
    return [(layer.keys, layer.values) for layer in cache.layers]  # type: ignore[union-attr,misc]
