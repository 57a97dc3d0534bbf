"""Packing: turn text ids, ECG special tokens and lead-second embeddings into one token sequence with metadata.

A :class:`Packed` sequence is what the model embeds: per token a source (text id, special row or ECG row) and its
:class:`~llm_runtime.layout.TokenMeta`. The builders below write the two layouts described in ``layout.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from llm_runtime.layout import TokenKind, TokenMeta, ecg_special_index, lead_end, lead_start

__all__ = ["Packed", "SequenceBuilder", "camel_block", "streaming_close", "streaming_header", "streaming_second"]


@dataclass(frozen=True)
class Packed:
    """One packed sequence (B = 1). ``ids`` holds the text id, special row or ECG row, chosen by ``meta.kind``."""

    ids: torch.Tensor  # (1, n) int64
    ecg: torch.Tensor  # (n_ecg, ecg_dim) float32, rows referenced by ECG tokens
    meta: TokenMeta

    @property
    def length(self) -> int:
        return self.meta.length


class SequenceBuilder:
    """Appends tokens left to right, tracking rotary positions and the current branch.

    ``branch(q, o)`` rewinds the position to where the branch's parent ended, so sibling branches (answer options
    of one question) occupy the same positions and never see each other.
    """

    def __init__(self, start_pos: int = 0, ecg_dim: int = 64) -> None:
        self._ids: list[int] = []
        self._kind: list[int] = []
        self._pos: list[int] = []
        self._second: list[int] = []
        self._question: list[int] = []
        self._option: list[int] = []
        self._ecg: list[torch.Tensor] = []
        self._ecg_dim = ecg_dim
        self._branch = (-1, -1)
        self._next_pos = {(-1, -1): start_pos}

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def next_pos(self) -> int:
        return self._next_pos[self._branch]

    def branch(self, question: int, option: int = -1) -> SequenceBuilder:
        """Switch to branch (question, option); a new branch starts where its parent currently ends."""
        key = (question, option)
        if key not in self._next_pos:
            parent = (question, -1) if option >= 0 else (-1, -1)
            if parent not in self._next_pos:
                raise ValueError(f"branch {key} opened before its parent {parent}")
            self._next_pos[key] = self._next_pos[parent]
        self._branch = key
        return self

    def _push(self, kind: TokenKind, ident: int, second: int = -1, pos: int | None = None) -> None:
        self._ids.append(ident)
        self._kind.append(int(kind))
        self._pos.append(self.next_pos if pos is None else pos)
        self._second.append(second)
        self._question.append(self._branch[0])
        self._option.append(self._branch[1])
        if pos is None:
            self._next_pos[self._branch] += 1

    def text(self, ids: Sequence[int]) -> SequenceBuilder:
        for ident in ids:
            self._push(TokenKind.TEXT, int(ident))
        return self

    def special(self, token: str) -> SequenceBuilder:
        self._push(TokenKind.ECG_SPECIAL, ecg_special_index(token))
        return self

    def ecg(self, embedding: torch.Tensor, second: int) -> SequenceBuilder:
        """One lead-second pseudo-token from its (ecg_dim,) encoder embedding."""
        if embedding.shape != (self._ecg_dim,):
            raise ValueError(f"lead-second embedding must be ({self._ecg_dim},), got {tuple(embedding.shape)}")
        self._push(TokenKind.ECG, len(self._ecg), second)
        self._ecg.append(embedding.detach().to(torch.float32))
        return self

    def build(self) -> Packed:
        ecg = torch.stack(self._ecg) if self._ecg else torch.zeros(0, self._ecg_dim)
        meta = TokenMeta.of(self._kind, self._pos, self._second, self._question, self._option)
        return Packed(torch.tensor([self._ids], dtype=torch.long).reshape(1, -1), ecg, meta)


def _check_ecg(ecg: torch.Tensor, leads: Sequence[str]) -> None:
    if ecg.ndim != 3 or ecg.shape[0] != len(leads):
        raise ValueError(f"ECG embeddings must be (n_leads={len(leads)}, T, 64), got {tuple(ecg.shape)}")


def camel_block(builder: SequenceBuilder, ecg: torch.Tensor, leads: Sequence[str], first_second: int = 0) -> None:
    """CAMEL's lead-major block: global start, per lead (start, T seconds, end), global end."""
    _check_ecg(ecg, leads)
    builder.special("<ecg_global_start>")
    for lead_idx, lead in enumerate(leads):
        builder.special(lead_start(lead))
        for t in range(ecg.shape[1]):
            builder.ecg(ecg[lead_idx, t], first_second + t)
        builder.special(lead_end(lead))
    builder.special("<ecg_global_end>")


def streaming_header(builder: SequenceBuilder, leads: Sequence[str]) -> None:
    """Time-major block opening: global start, then every lead's start token (fixes the in-second lead order)."""
    builder.special("<ecg_global_start>")
    for lead in leads:
        builder.special(lead_start(lead))


def streaming_second(builder: SequenceBuilder, second_embeddings: torch.Tensor, t: int) -> None:
    """All leads of second ``t``: (n_leads, 64) -> n_leads tokens that see each other and every earlier second."""
    if second_embeddings.ndim != 2:
        raise ValueError(f"one second must be (n_leads, 64), got {tuple(second_embeddings.shape)}")
    for lead_idx in range(second_embeddings.shape[0]):
        builder.ecg(second_embeddings[lead_idx], t)


def streaming_close(builder: SequenceBuilder, leads: Sequence[str]) -> None:
    """Time-major block closing, placed in the question part: every lead's end token, then global end."""
    for lead in leads:
        builder.special(lead_end(lead))
    builder.special("<ecg_global_end>")
