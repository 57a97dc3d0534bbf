"""Bounded per-patient sample store addressed by absolute sample index on the segment clock."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from core.errors import SignalError

__all__ = ["RingBuffer"]

DEFAULT_BLOCK = 1024
"""Samples per lead in one storage block when the caller does not choose (the agent uses one second)."""


class RingBuffer:
    """``n_leads`` × ``capacity`` float32 samples (mV); the newest ``capacity`` samples are kept.

    Samples are addressed by absolute index since the segment origin. Storage is allocated block by block as samples
    arrive and freed as they fall out of the newest ``capacity``: a patient that sent one sample holds one block, not
    the whole ring, and a gap (a jump of ``t0``) costs no memory at all. Indexes never written (gaps) and invalid
    samples read back as NaN, so a gap can never be mistaken for signal: every block starts as NaN and no block is
    reused for a later index.
    """

    def __init__(self, n_leads: int, capacity: int, block: int = DEFAULT_BLOCK) -> None:
        if n_leads < 1 or capacity < 1 or block < 1:
            raise SignalError(f"RingBuffer needs n_leads, capacity, block >= 1, got {n_leads}, {capacity}, {block}")
        self.n_leads = n_leads
        self.capacity = capacity
        self.block = min(block, capacity)
        self._blocks: dict[int, npt.NDArray[np.float32]] = {}  # block number (index // block) -> (n_leads, block)
        self._oldest = 0  # no block below this number is held
        self.end = 0  # absolute index one past the newest sample

    @property
    def start(self) -> int:
        """Absolute index of the oldest sample still held."""
        return max(0, self.end - self.capacity)

    @property
    def fill(self) -> int:
        return self.end - self.start

    @property
    def nbytes(self) -> int:
        """Bytes of sample storage held now: at most ``capacity`` plus two blocks' worth, per lead."""
        return len(self._blocks) * self.n_leads * self.block * 4

    def write(self, start_index: int, block: npt.NDArray[np.float32]) -> None:
        """Store ``block`` (n_leads, n) at ``start_index`` >= ``end``; the skipped span reads back as NaN."""
        if block.ndim != 2 or block.shape[0] != self.n_leads:
            raise SignalError(f"block must be ({self.n_leads}, n), got {block.shape}")
        if start_index < self.end:
            raise SignalError(f"start_index {start_index} overlaps stored samples (end {self.end})")
        n = block.shape[1]
        self.end = start_index + n
        if n > self.capacity:  # only the tail can be held
            block, start_index, n = block[:, -self.capacity :], self.end - self.capacity, self.capacity
        self._drop_before(self.start // self.block)
        pos = start_index
        while pos < self.end:
            number, offset = divmod(pos, self.block)
            take = min(self.block - offset, self.end - pos)
            self._storage(number)[:, offset : offset + take] = block[:, pos - start_index : pos - start_index + take]
            pos += take

    def _storage(self, number: int) -> npt.NDArray[np.float32]:
        stored = self._blocks.get(number)
        if stored is None:
            stored = self._blocks[number] = np.full((self.n_leads, self.block), np.nan, np.float32)
        return stored

    def _drop_before(self, number: int) -> None:
        """Free the blocks wholly older than the ring; after a long jump, only the (few) held ones are visited."""
        if number <= self._oldest:
            return
        if number - self._oldest > len(self._blocks):
            for old in [held for held in self._blocks if held < number]:
                del self._blocks[old]
        else:
            for old in range(self._oldest, number):
                self._blocks.pop(old, None)
        self._oldest = number

    def read(self, start_index: int, stop_index: int) -> npt.NDArray[np.float32]:
        """Copy of samples [start_index, stop_index), (n_leads, n); indexes no longer held raise SignalError."""
        if not self.start <= start_index <= stop_index <= self.end:
            raise SignalError(f"range [{start_index}, {stop_index}) outside held [{self.start}, {self.end})")
        out = np.empty((self.n_leads, stop_index - start_index), np.float32)
        pos = start_index
        while pos < stop_index:
            number, offset = divmod(pos, self.block)
            take = min(self.block - offset, stop_index - pos)
            stored = self._blocks.get(number)
            target = out[:, pos - start_index : pos - start_index + take]
            if stored is None:
                target[:] = np.nan  # a gap that spans whole blocks: nothing was ever stored there
            else:
                target[:] = stored[:, offset : offset + take]
            pos += take
        return out

    def latest(self, n: int) -> npt.NDArray[np.float32]:
        """The newest ``min(n, fill)`` samples, (n_leads, n)."""
        n = min(n, self.fill)
        return self.read(self.end - n, self.end)
