"""Sliding a patient's KV cache forward without a prefill: drop the oldest seconds, re-rotate the rest.

Why: a fresh prefill of the last ``window_s`` seconds, once per ``slack_s`` seconds of signal per patient, was
the largest cost of keeping a patient's cache (5.7 s of every minute at 5 patients: docs/BENCHMARKS.md). Instead
the runner drops the evicted seconds' cached keys/values and moves the remaining ECG tokens' rotary positions down
by the positions dropped, so that positions, masks and distances are those of a fresh prefill of the same seconds.

Gemma 3 caches keys after the rotary embedding. Rotations compose, so a key cached at position ``p`` rotated by
``-shift`` is the key at ``p - shift`` (to float rounding). Each layer type has its own rotary table (sliding
layers base 10k, global layers 1M); the angles come from the model's own rotary module.

The approximation: a kept token's keys and values at every layer after the first were computed while it attended
to the seconds now evicted (hidden states mix the whole past), so the cache is close to, not equal to, the one a
fresh prefill would give. The first layer's keys and values read the token alone and stay exact. The measured
effect on the forecast head is in docs/LLM_RUNTIME.md ("Window slide by eviction"): mostly a shift of the head's
features common to all inputs, which ``slide_shift.SlideShift`` removes in proportion to the cache's
:meth:`ContextLedger.staleness` (how much evicted signal its tokens had read).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import torch
from transformers.cache_utils import DynamicCache
from transformers.models.gemma3.modeling_gemma3 import rotate_half

from core.errors import ModelError
from llm_runtime.layout import TokenKind, TokenMeta
from llm_runtime.model import EcgLanguageModel
from llm_runtime.scoring import cache_layers

__all__ = ["ContextLedger", "evict_seconds_before", "slide_point"]


def slide_point(first_second: int, last_second: int, window_s: int, slack_s: int) -> int | None:
    """The first second to keep once a cache over ``first_second … last_second`` has passed ``window_s +
    slack_s`` seconds (the last ``window_s`` are kept), or None while it has not."""
    if last_second - first_second + 1 <= window_s + slack_s:
        return None
    return last_second - window_s + 1


@dataclass
class ContextLedger:
    """Per cached second, the first second the cache held when that second was appended: what it could read.

    A fresh prefill's tokens read from the window's first second; a slid cache's tokens read from earlier. The
    mean excess over the window's first second, as a share of ``window_s``, is the cache's *staleness*: 0 for a
    fresh prefill, about 0.5 for a patient streamed for long (tokens read up to one window more than the window)."""

    entries: deque[tuple[int, int]] = field(default_factory=deque)  # (second, first second it could read)

    def append(self, seconds: list[int], reads_from: int) -> None:
        self.entries.extend((t, reads_from) for t in seconds)

    def evict_before(self, first_kept: int) -> None:
        while self.entries and self.entries[0][0] < first_kept:
            self.entries.popleft()

    def staleness(self, first_second: int, window_s: int) -> float:
        if not self.entries:
            return 0.0
        excess = sum(max(0, first_second - reads_from) for _, reads_from in self.entries)
        return excess / len(self.entries) / window_s


def evict_seconds_before(
    model: EcgLanguageModel, cache: DynamicCache, meta: TokenMeta, first_kept: int
) -> tuple[TokenMeta, int]:
    """Drop the ECG tokens of seconds before ``first_kept`` from a one-patient cache (in place) and move the later
    tokens' positions down; returns the kept tokens' metadata and the number of tokens dropped.

    The dropped tokens must be one contiguous run (the streaming layout's time-major block guarantees it: head
    text, block header, then seconds in order)."""
    drop = (meta.kind[0] == TokenKind.ECG) & (meta.second[0] < first_kept)
    index = drop.nonzero().flatten()
    if index.numel() == 0:
        return meta, 0
    start, stop = int(index[0]), int(index[-1]) + 1
    if stop - start != index.numel():
        raise ModelError(f"cache slide: the seconds before {first_kept} are not one contiguous run of the cache")
    shift = int(meta.pos[0, stop] - meta.pos[0, start]) if stop < meta.length else 0
    layer_types = _layer_types(model, len(cache.layers))
    rotations = {kind: _rotation(model, kind, -shift) for kind in set(layer_types)}
    for (keys, values), layer, kind in zip(cache_layers(cache), cache.layers, layer_types, strict=True):
        cos, sin = rotations[kind]
        tail = keys[:, :, stop:]
        rotated = tail * cos + rotate_half(tail) * sin  # type: ignore[no-untyped-call]
        layer.keys = torch.cat([keys[:, :, :start], rotated], dim=2)  # type: ignore[union-attr]
        layer.values = torch.cat([values[:, :, :start], values[:, :, stop:]], dim=2)  # type: ignore[union-attr]
    kept = ~drop
    later = torch.arange(meta.length) >= stop
    fields = [f[:, kept] for f in meta.fields()]
    fields[1] = torch.where(later[kept], meta.pos[0, kept] - shift, meta.pos[0, kept]).unsqueeze(0)
    return TokenMeta(*fields), stop - start


def _layer_types(model: EcgLanguageModel, n_layers: int) -> list[str]:
    """Each decoder layer's attention type, which picks its rotary table."""
    types = getattr(model.lm.config, "layer_types", None)
    if types is None or len(types) != n_layers:
        raise ModelError(f"cache slide: the backbone's config has no layer_types for its {n_layers} cached layers")
    return list(types)


def _rotation(model: EcgLanguageModel, layer_type: str, positions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, (1, 1, 1, head_dim), that rotate a key by ``positions`` in ``layer_type``'s rotary table.

    Refuses a rotary embedding with an attention scaling other than 1: its cos/sin carry the scale, and applying
    them to an already rotated key would scale it twice."""
    rotary = model.lm.model.rotary_emb
    scaling = getattr(rotary, f"{layer_type}_attention_scaling", 1.0)
    if scaling != 1.0:
        raise ModelError(f"cache slide: rotary attention scaling {scaling} for {layer_type} layers is not supported")
    probe = torch.zeros(1, dtype=model.dtype, device=model.device)
    position = torch.tensor([[positions]], device=model.device)
    cos, sin = rotary(probe, position, layer_type)  # (1, 1, head_dim)
    return cos.unsqueeze(1), sin.unsqueeze(1)
