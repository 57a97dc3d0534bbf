"""Supervised read-outs that make the encoder's tokens carry rhythm, beat type and beat position.

A reconstruction-only autoencoder codes waveform shape, not what a forecaster needs: a linear probe on its pooled
tokens scores near the floor on the yardstick (docs/EVALUATION.md). Here the simulator's exact labels of each
lead-second (rhythm class, ectopic beat, where beats fall) are read out of the 64-d token by *linear* heads trained
with the autoencoder. Linear on purpose: what a linear head reads from one second, a linear probe reads from the
mean of many seconds, and the LM's linear projector reads from each token. The heads are training-only; the
shipped encoder keeps CAMEL's shape and keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.nn import functional as F

from encoder_onnx.data import WindowSet

__all__ = ["BEAT_TYPES", "RHYTHMS", "SecondHeads", "SecondTargets", "head_metrics", "second_targets", "supervised_loss"]

RHYTHMS: Final = ("sinus", "af", "flutter", "vt")
"""The forecasting classes (simulators.records.rhythm_class) of the second's rhythm."""
BEAT_TYPES: Final = ("N", "A", "V")
"""Per-second ectopy as :func:`encoder_onnx.data.beat_class_of_windows` labels it."""
POSITIONS: Final = 16


@dataclass(frozen=True, eq=False)
class SecondTargets:
    rhythm: npt.NDArray[np.int64]  # (N,) index into RHYTHMS
    beat: npt.NDArray[np.int64]  # (N,) index into BEAT_TYPES
    positions: npt.NDArray[np.float32]  # (N, 16) 1 where a beat fiducial falls in that sixteenth of the second


def second_targets(data: WindowSet) -> SecondTargets:
    """Targets of every window of a lead-second set (``cut_lead_seconds``, which records beat positions)."""
    from simulators.records import rhythm_class

    if data.beat_bins is None:
        raise ValueError("supervised training needs lead-second windows with beat positions (cut_lead_seconds)")
    classes = {aux: RHYTHMS.index(rhythm_class(str(aux))) for aux in np.unique(data.rhythm)}
    rhythm = np.array([classes[a] for a in data.rhythm], dtype=np.int64)
    beat = np.searchsorted(np.array(BEAT_TYPES), data.beat).astype(np.int64)  # BEAT_TYPES is sorted
    bits = (data.beat_bins[:, None].astype(np.int64) >> np.arange(POSITIONS)) & 1  # (N,) -> (N, 16)
    return SecondTargets(rhythm, beat, bits.astype(np.float32))


class SecondHeads(nn.Module):
    """Linear read-outs of one lead-second's 64-d token."""

    def __init__(self, embedding_dim: int = 64) -> None:
        super().__init__()
        self.rhythm = nn.Linear(embedding_dim, len(RHYTHMS))
        self.beat = nn.Linear(embedding_dim, len(BEAT_TYPES))
        self.positions = nn.Linear(embedding_dim, POSITIONS)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tokens (B, 64) -> logits: rhythm (B, 4), beat (B, 3), positions (B, 16)."""
        return self.rhythm(z), self.beat(z), self.positions(z)


def supervised_loss(
    heads: SecondHeads,
    z: torch.Tensor,
    rhythm: torch.Tensor,
    beat: torch.Tensor,
    positions: torch.Tensor,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of rhythm (weighted against sinus' majority) and beat type, plus beat-position BCE."""
    rhythm_logits, beat_logits, position_logits = heads(z)
    return (
        F.cross_entropy(rhythm_logits, rhythm, weight=class_weights)
        + F.cross_entropy(beat_logits, beat)
        + F.binary_cross_entropy_with_logits(position_logits, positions)
    )


@torch.no_grad()
def head_metrics(
    heads: SecondHeads, z: torch.Tensor, targets: SecondTargets, index: npt.NDArray[np.int64]
) -> dict[str, float]:
    """Per-second macro-F1 of rhythm and beat type and position accuracy on held-out windows ``index``."""
    from sklearn.metrics import f1_score

    rhythm_logits, beat_logits, position_logits = heads(z)
    positions = (position_logits > 0).numpy()
    return {
        "rhythm_f1": float(f1_score(targets.rhythm[index], rhythm_logits.argmax(1).numpy(), average="macro")),
        "beat_f1": float(f1_score(targets.beat[index], beat_logits.argmax(1).numpy(), average="macro")),
        "position_acc": float(np.mean(positions == (targets.positions[index] > 0.5))),
    }
