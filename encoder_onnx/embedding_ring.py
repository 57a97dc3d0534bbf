"""Per-patient ring of lead-second embeddings, aligned with the sample ring buffer.

Each completed window is encoded once and stored here at slot ``second % capacity_s``; a forecast reads the last
T seconds as a slice copy and never re-encodes. Every slot remembers which second it holds, so a slot left over
from an earlier lap of the ring (or never written, e.g. across a gap) reads back as invalid and zero, not stale.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from core.errors import SignalError

__all__ = ["EmbeddingRing", "EmbeddingWindow"]


class EmbeddingWindow(NamedTuple):
    """The last T seconds of one patient, oldest first; seconds ``newest_second - T + 1 … newest_second``."""

    embeddings: npt.NDArray[np.float32]  # (n_leads, T, dim); zero where not valid
    valid: npt.NDArray[np.bool_]  # (n_leads, T); False: never encoded, stale slot, or failed signal quality
    t_start: npt.NDArray[np.float64]  # (T,) Unix seconds of each second's first sample; NaN if no lead has it


class EmbeddingRing:
    """Fixed-capacity store of (n_leads, capacity_s, dim) float32 embeddings with timestamps and validity."""

    def __init__(self, n_leads: int, capacity_s: int, dim: int = 64) -> None:
        if n_leads < 1 or capacity_s < 1 or dim < 1:
            raise SignalError(f"EmbeddingRing needs n_leads, capacity_s, dim >= 1, got {n_leads}, {capacity_s}, {dim}")
        self.n_leads, self.capacity_s, self.dim = n_leads, capacity_s, dim
        self._emb = np.zeros((n_leads, capacity_s, dim), dtype=np.float32)
        self._valid = np.zeros((n_leads, capacity_s), dtype=bool)
        self._second = np.full((n_leads, capacity_s), -1, dtype=np.int64)  # second held by each slot, -1 = none
        self._t_start = np.full(capacity_s, np.nan, dtype=np.float64)
        self._t_second = np.full(capacity_s, -1, dtype=np.int64)
        self.newest_second = -1
        self.n_put = 0

    def put(self, lead_idx: int, second: int, t_start: float, vec: npt.NDArray[np.float32], valid: bool = True) -> None:
        """Store one lead-second. ``second`` is the index from the stream origin (the sample ring's clock)."""
        if not 0 <= lead_idx < self.n_leads:
            raise SignalError(f"lead_idx {lead_idx} out of range for {self.n_leads} leads")
        if second < 0 or second <= self.newest_second - self.capacity_s:
            raise SignalError(f"second {second} is outside the ring (newest {self.newest_second})")
        if vec.shape != (self.dim,):
            raise SignalError(f"embedding must have shape ({self.dim},), got {vec.shape}")
        slot = second % self.capacity_s
        self._emb[lead_idx, slot] = vec
        self._valid[lead_idx, slot] = valid
        self._second[lead_idx, slot] = second
        self._t_start[slot] = t_start
        self._t_second[slot] = second
        self.newest_second = max(self.newest_second, second)
        self.n_put += 1

    def window(self, last_n_seconds: int) -> EmbeddingWindow:
        """The ``last_n_seconds`` seconds ending at the newest one (fewer if the ring holds fewer): a slice copy."""
        n = min(last_n_seconds, self.capacity_s, self.newest_second + 1)
        seconds = np.arange(self.newest_second - n + 1, self.newest_second + 1, dtype=np.int64)  # (T,)
        slots = seconds % self.capacity_s
        valid = (self._second[:, slots] == seconds) & self._valid[:, slots]  # (n_leads, T)
        embeddings = np.where(valid[:, :, None], self._emb[:, slots], np.float32(0))  # (n_leads, T, dim)
        t_start = np.where(self._t_second[slots] == seconds, self._t_start[slots], np.nan)  # (T,)
        return EmbeddingWindow(embeddings.astype(np.float32, copy=False), valid, t_start)

    def embedded_seconds(self) -> int:
        """Distinct seconds currently held for at least one lead (what the patient status reports)."""
        oldest = self.newest_second - self.capacity_s + 1
        return int(np.count_nonzero((self._t_second >= 0) & (self._t_second >= oldest)))
