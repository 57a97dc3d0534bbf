"""Token layouts of an ECG prompt and the attention masks over them.

A prompt is a sequence of tokens of three kinds: text (from the tokenizer), ECG special tokens (from our own
26-row table) and ECG pseudo-tokens (one per lead-second, from the projector). Every token carries a little
metadata (:class:`TokenMeta`) and one rule turns metadata into a mask, whatever the layout:

* an ECG token at second ``t`` sees every ECG token whose second is ``<= t`` (any lead, even one placed later in
  the sequence: all leads of a second see each other), and every non-ECG token placed before it;
* every other token is causal: it sees the tokens placed before it and itself;
* branches: answer options (and questions) share the trunk but not each other. A token on branch
  ``(question, option)`` sees a key only if the key's branch is a prefix of its own (trunk ``(-1, -1)``,
  question ``(q, -1)``, option ``(q, o)``). Sibling options therefore reuse the same positions and are scored in
  one forward pass;
* sliding-window layers additionally drop keys whose position is ``sliding_window`` or more behind the query;
* padding keys are never seen; padding queries see everything (their outputs are discarded; a fully masked row
  would give NaN in SDPA).

Two layouts use that one rule:

* ``camel``: lead-major (all seconds of lead I, then lead II, ...), each lead wrapped in its start/end tokens,
  CAMEL's semantic mask. Nothing can be cached across forecasts: a new second shifts every later lead.
* ``streaming`` (ours): time-major (second 1: all leads, second 2: all leads, ...). The lead start tokens form a
  header after ``<ecg_global_start>`` and fix the lead order inside each second; the lead end tokens and
  ``<ecg_global_end>`` come after the last second, in the question part. Because no earlier token sees a later
  second, a patient's KV cache is extended by the newest second's tokens alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

import torch

__all__ = [
    "ECG_LEADS",
    "ECG_SPECIAL_TOKENS",
    "Layout",
    "TokenKind",
    "TokenMeta",
    "attention_masks",
    "ecg_special_index",
    "lead_end",
    "lead_start",
    "visibility",
]

Layout = Literal["camel", "streaming"]

ECG_LEADS: tuple[str, ...] = ("i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6")
"""CAMEL's lead order; the special-token table follows it (start/end per lead)."""

ECG_SPECIAL_TOKENS: tuple[str, ...] = (
    "<ecg_global_start>",
    "<ecg_global_end>",
    *(tok for lead in ECG_LEADS for tok in (f"<ecg_lead_{lead}_start>", f"<ecg_lead_{lead}_end>")),
)
"""The 26 rows of ``ecg_special`` in CAMEL's order: global start/end, then start/end of each lead."""


def ecg_special_index(token: str) -> int:
    """Row of ``token`` in the ``ecg_special`` table."""
    try:
        return ECG_SPECIAL_TOKENS.index(token)
    except ValueError:
        raise ValueError(f"not an ECG special token: {token!r}") from None


def lead_start(lead: str) -> str:
    return f"<ecg_lead_{lead}_start>"


def lead_end(lead: str) -> str:
    return f"<ecg_lead_{lead}_end>"


class TokenKind(IntEnum):
    PAD = 0
    TEXT = 1
    ECG_SPECIAL = 2
    ECG = 3


@dataclass(frozen=True)
class TokenMeta:
    """Per-token metadata of a batch of sequences, every field shaped (B, n).

    ``pos`` is the rotary position id (sibling branches reuse positions), ``second`` the ECG second (-1 for
    non-ECG tokens), ``question``/``option`` the branch (-1 = trunk), ``kind`` a :class:`TokenKind`.
    """

    kind: torch.Tensor  # (B, n) int64
    pos: torch.Tensor  # (B, n) int64
    second: torch.Tensor  # (B, n) int64
    question: torch.Tensor  # (B, n) int64
    option: torch.Tensor  # (B, n) int64

    @property
    def length(self) -> int:
        return int(self.kind.shape[1])

    @property
    def batch_size(self) -> int:
        return int(self.kind.shape[0])

    @staticmethod
    def of(
        kind: Sequence[int],
        pos: Sequence[int],
        second: Sequence[int],
        question: Sequence[int] | None = None,
        option: Sequence[int] | None = None,
    ) -> TokenMeta:
        """One sequence (B = 1) from plain lists; branches default to the trunk."""
        n = len(kind)
        trunk = [-1] * n

        def row(values: Sequence[int]) -> torch.Tensor:
            return torch.tensor([list(values)], dtype=torch.long).reshape(1, n)

        return TokenMeta(row(kind), row(pos), row(second), row(question or trunk), row(option or trunk))

    def cat(self, other: TokenMeta) -> TokenMeta:
        """Concatenate along the sequence (same batch size): cached keys followed by new tokens."""
        return TokenMeta(*(torch.cat([a, b], dim=1) for a, b in zip(self.fields(), other.fields(), strict=True)))

    def fields(self) -> tuple[torch.Tensor, ...]:
        return (self.kind, self.pos, self.second, self.question, self.option)

    def slice(self, start: int, stop: int | None = None) -> TokenMeta:
        return TokenMeta(*(f[:, start:stop] for f in self.fields()))

    @staticmethod
    def stack(rows: Sequence[TokenMeta], pad_side: Literal["left", "right"]) -> TokenMeta:
        """Stack single sequences into a batch, padding with PAD tokens to the longest one."""
        width = max(r.length for r in rows)
        out: list[list[torch.Tensor]] = [[] for _ in range(5)]
        for r in rows:
            missing = width - r.length
            for i, f in enumerate(r.fields()):
                pad = torch.full((f.shape[0], missing), -1 if i else int(TokenKind.PAD), dtype=f.dtype)
                out[i].append(torch.cat([pad, f] if pad_side == "left" else [f, pad], dim=1))
        return TokenMeta(*(torch.cat(parts, dim=0) for parts in out))


def visibility(query: TokenMeta, key: TokenMeta, sliding_window: int | None = None) -> torch.Tensor:
    """Boolean (B, Q, K): may query token q attend to key token k. The rule is in the module docstring."""
    q = [f.unsqueeze(2) for f in query.fields()]  # each (B, Q, 1)
    k = [f.unsqueeze(1) for f in key.fields()]  # each (B, 1, K)
    q_kind, q_pos, q_sec, q_question, q_option = q
    k_kind, k_pos, k_sec, k_question, k_option = k
    both_ecg = (q_kind == TokenKind.ECG) & (k_kind == TokenKind.ECG)
    ordered = torch.where(both_ecg, k_sec <= q_sec, k_pos <= q_pos)
    on_branch = ((k_question == -1) | (k_question == q_question)) & ((k_option == -1) | (k_option == q_option))
    seen = ordered & on_branch & (k_kind != TokenKind.PAD)
    if sliding_window is not None:
        seen &= (q_pos - k_pos) < sliding_window
    return seen | (q_kind == TokenKind.PAD)


def attention_masks(
    query: TokenMeta, key: TokenMeta, sliding_window: int | None, dtype: torch.dtype, device: torch.device
) -> dict[str, torch.Tensor]:
    """Additive 4-D float masks (B, 1, Q, K) for Gemma 3's two layer types, passed as a dict so that the model
    uses them as they are instead of building its own causal masks."""
    masks = {}
    for name, window in (("full_attention", None), ("sliding_attention", sliding_window)):
        seen = visibility(query, key, window).to(device)
        mask = torch.zeros(seen.shape, dtype=dtype, device=device)
        mask.masked_fill_(~seen, torch.finfo(dtype).min)
        masks[name] = mask.unsqueeze(1)  # (B, Q, K) -> (B, 1, Q, K)
    return masks
