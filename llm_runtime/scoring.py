"""Batched forward passes over several patients' cached prefixes: scoring answer options, and feeding new seconds.

A :class:`ScoreRow` is one patient: the cached prefix (per-layer keys/values and their token metadata; empty for
the CAMEL layout or a full prefill) and the packed part to run now, whose branches carry the answer options.
Rows are batched by left-padding the cached keys/values and right-padding the new part; padding keys are masked
out and the rotary positions come from each row's own metadata, so a padded row computes what it would alone.
Scoring never modifies the patients' caches: the batch cache is a new ``DynamicCache`` holding copies.
:func:`extend_caches` uses the same padding to append several patients' new seconds in one forward pass, then
copies each row's new keys/values (and only those) onto that patient's own cache.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import DynamicCache

from core.errors import ModelError
from llm_runtime.layout import TokenMeta
from llm_runtime.model import EcgLanguageModel
from llm_runtime.packing import Packed

__all__ = ["BatchWorkspace", "OptionTarget", "ScoreRow", "cache_layers", "extend_caches", "run_rows"]

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


class BatchWorkspace:
    """Reusable batch key/value buffers, one per layer and part, grown on demand and kept between calls.

    Why: a padded pass over 32 patients' 5-minute caches needs most of a gigabyte of batch keys/values; allocated
    afresh each call, its pages were faulted in again every time (about 280k minor faults, slower than the
    arithmetic the batch saved). Owned by the runner's owner thread; what a pass returns is valid until the next.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[int, int], torch.Tensor] = {}

    def take(self, layer: int, part: int, like: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """A contiguous ``shape`` tensor (contents undefined) of ``like``'s dtype and device."""
        numel = math.prod(shape)
        buffer = self._buffers.get((layer, part))
        if buffer is None or buffer.numel() < numel or buffer.dtype != like.dtype or buffer.device != like.device:
            buffer = like.new_empty(numel + numel // 8)  # headroom: caches grow by a few tokens per call
            self._buffers[(layer, part)] = buffer
        return buffer[:numel].view(shape)

    def clear(self) -> None:
        self._buffers.clear()


class _PaddedCache(DynamicCache):
    """The batch cache of one padded forward pass. At each layer's ``update`` it takes that layer's batch
    keys/values (B, kv_heads, width + S, head_dim) from the workspace (or allocates them) and writes every row's
    cached keys/values right-aligned at ``width`` (zeros on the left: padding, masked out) and the new ones after
    them: one copy of the cached part, where padding, stacking and appending copied it three times (those copies
    took half of a 32-patient feed's time on CPU). The model calls only ``update``: positions and masks are passed
    explicitly."""

    def __init__(self, prefixes: Sequence[KeyValues | None], width: int, workspace: BatchWorkspace | None) -> None:
        super().__init__()
        self._prefixes = prefixes
        self._width = width
        self._workspace = workspace
        self.grown: KeyValues = []  # per layer, the batch keys/values after the update

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if layer_idx != len(self.grown):
            raise ModelError(f"padded batch cache: layer {layer_idx} updated out of order")
        width = self._width
        grown = []
        for new, part in ((key_states, 0), (value_states, 1)):
            batch, heads, n_new, dim = new.shape
            shape = (batch, heads, width + n_new, dim)
            out = self._workspace.take(layer_idx, part, new, shape) if self._workspace else new.new_empty(shape)
            for row, kv in enumerate(self._prefixes):
                cached = kv[layer_idx][part][0] if kv else new.new_empty(heads, 0, dim)  # (kvh, L, hd)
                out[row, :, : width - cached.shape[1]].zero_()
                out[row, :, width - cached.shape[1] : width] = cached
            out[:, :, width:] = new
            grown.append(out)
        self.grown.append((grown[0], grown[1]))
        return grown[0], grown[1]


def _padded_forward(
    model: EcgLanguageModel,
    prefixes: Sequence[tuple[KeyValues | None, TokenMeta]],
    new: Sequence[Packed],
    workspace: BatchWorkspace | None,
) -> tuple[torch.Tensor, _PaddedCache, int]:
    """One forward pass of every row's ``new`` tokens on top of its cached prefix. Returns the hidden states
    (B, S, hidden), the batch cache it grew (row ``b``'s new keys sit at ``width:width + new[b].length``) and
    ``width``, the padded length of the cached part."""
    width = max(meta.length for _, meta in prefixes)
    prefix_meta = TokenMeta.stack([meta for _, meta in prefixes], pad_side="left")
    query = TokenMeta.stack([packed.meta for packed in new], pad_side="right")
    padded = torch.zeros(len(new), query.length, model.config.hidden_size, dtype=model.dtype, device=model.device)
    for b, packed in enumerate(new):
        padded[b, : packed.length] = model.embed(packed)[0]  # (S_b, hidden)
    cache = _PaddedCache([kv if meta.length else None for kv, meta in prefixes], width, workspace)
    hidden = model.decode(padded, query, prefix_meta.cat(query), cache)  # (B, S, hidden)
    return hidden, cache, width


def run_rows(
    model: EcgLanguageModel, rows: Sequence[ScoreRow], workspace: BatchWorkspace | None = None
) -> list[list[torch.Tensor]]:
    """One forward pass over all rows. Returns, per row and per option target, the log-probability of each of
    the option's tokens (float32, shape (n_tokens,)), in the order of ``row.options``."""
    prefixes = [(r.prefix_kv, r.prefix_meta) for r in rows]
    hidden, _, _ = _padded_forward(model, prefixes, [r.new for r in rows], workspace)
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


def extend_caches(
    model: EcgLanguageModel,
    caches: Sequence[tuple[DynamicCache, TokenMeta]],
    new: Sequence[Packed],
    workspace: BatchWorkspace | None = None,
) -> None:
    """Append row ``b``'s ``new[b]`` tokens to its own ``caches[b]`` (cache, metadata of its tokens) with one
    forward pass for all rows. Only the cache tensors grow; the caller extends the metadata (``meta.cat``).

    Why batch: on a CPU one forward over a few dozen tokens is dominated by per-call and per-layer overheads and
    by reading the weights; several patients' seconds in one call share them. The price is a padded copy of every
    row's cached keys/values for the call's length.
    """
    _, batch, width = _padded_forward(model, [(cache_layers(c), meta) for c, meta in caches], new, workspace)
    for b, ((cache, _), packed) in enumerate(zip(caches, new, strict=True)):
        stop = width + packed.length
        for own, (keys, values) in zip(cache.layers, batch.grown, strict=True):
            own.update(keys[b : b + 1, :, width:stop], values[b : b + 1, :, width:stop])  # type: ignore[union-attr]


def cache_layers(cache: DynamicCache) -> KeyValues:
    """The (keys, values) tensors of every layer of a cache."""
    return [(layer.keys, layer.values) for layer in cache.layers]  # type: ignore[union-attr,misc]
