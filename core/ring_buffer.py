"""Fixed-size per-patient sample store addressed by absolute sample index on the segment clock."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from core.errors import SignalError

__all__ = ["RingBuffer"]


class RingBuffer:
    """``n_leads`` × ``capacity`` float32 samples (mV); the newest ``capacity`` samples are kept.

    Samples are addressed by absolute index since the segment origin. Skipped indexes (gaps) and invalid samples
    read back as NaN, so a gap can never be mistaken for signal.
    """

    def __init__(self, n_leads: int, capacity: int) -> None:
        if n_leads < 1 or capacity < 1:
            raise SignalError(f"RingBuffer needs n_leads >= 1 and capacity >= 1, got {n_leads}, {capacity}")
        self.n_leads = n_leads
        self.capacity = capacity
        # Zeroed lazily by the OS (calloc), not filled: every index in [start, end) is written before it can be read
        # (gaps as NaN), and touching 10 minutes of memory per lead up front made 1,000 new patients take seconds.
        self._data = np.zeros((n_leads, capacity), dtype=np.float32)
        self.end = 0  # absolute index one past the newest sample

    @property
    def start(self) -> int:
        """Absolute index of the oldest sample still held."""
        return max(0, self.end - self.capacity)

    @property
    def fill(self) -> int:
        return self.end - self.start

    def _put(self, start_index: int, block: npt.NDArray[np.float32]) -> None:
        n = block.shape[1]
        if n > self.capacity:
            block, start_index, n = block[:, -self.capacity :], start_index + n - self.capacity, self.capacity
        pos = start_index % self.capacity
        if pos + n <= self.capacity:  # no wrap: one copy
            self._data[:, pos : pos + n] = block
            return
        first = self.capacity - pos
        self._data[:, pos:] = block[:, :first]
        self._data[:, : n - first] = block[:, first:]

    def write(self, start_index: int, block: npt.NDArray[np.float32]) -> None:
        """Store ``block`` (n_leads, n) at ``start_index`` >= ``end``; the skipped span becomes NaN."""
        if block.ndim != 2 or block.shape[0] != self.n_leads:
            raise SignalError(f"block must be ({self.n_leads}, n), got {block.shape}")
        if start_index < self.end:
            raise SignalError(f"start_index {start_index} overlaps stored samples (end {self.end})")
        gap = start_index - self.end
        if gap:
            self._put(self.end, np.full((self.n_leads, min(gap, self.capacity)), np.nan, np.float32))
        self._put(start_index, block)
        self.end = start_index + block.shape[1]

    def read(self, start_index: int, stop_index: int) -> npt.NDArray[np.float32]:
        """Copy of samples [start_index, stop_index), (n_leads, n); indexes no longer held raise SignalError."""
        if not self.start <= start_index <= stop_index <= self.end:
            raise SignalError(f"range [{start_index}, {stop_index}) outside held [{self.start}, {self.end})")
        idx = np.arange(start_index, stop_index) % self.capacity
        return self._data[:, idx]

    def latest(self, n: int) -> npt.NDArray[np.float32]:
        """The newest ``min(n, fill)`` samples, (n_leads, n)."""
        n = min(n, self.fill)
        return self.read(self.end - n, self.end)
