from __future__ import annotations

import numpy as np
import pytest

from core.errors import SignalError
from core.ring_buffer import RingBuffer


def test_wraps_and_keeps_the_newest_samples() -> None:
    ring = RingBuffer(n_leads=2, capacity=10)
    for start in range(0, 25, 5):
        ring.write(start, np.vstack([np.arange(start, start + 5), -np.arange(start, start + 5)]).astype(np.float32))
    assert (ring.start, ring.end, ring.fill) == (15, 25, 10)
    np.testing.assert_array_equal(ring.latest(4)[0], [21, 22, 23, 24])
    np.testing.assert_array_equal(ring.read(15, 25)[1], -np.arange(15, 25))
    with pytest.raises(SignalError, match="outside held"):
        ring.read(10, 20)


def test_gap_reads_back_as_nan_never_as_old_signal() -> None:
    ring = RingBuffer(1, 10)
    ring.write(0, np.ones((1, 8), np.float32))
    ring.write(12, np.full((1, 3), 2.0, np.float32))
    data = ring.read(ring.start, ring.end)[0]
    assert ring.start == 5
    assert np.isnan(data[3:7]).all()  # indexes 8..11 were never received
    np.testing.assert_array_equal(data[-3:], [2, 2, 2])


def test_block_larger_than_capacity_keeps_its_tail() -> None:
    ring = RingBuffer(1, 4)
    ring.write(0, np.arange(10, dtype=np.float32)[None])
    np.testing.assert_array_equal(ring.latest(10)[0], [6, 7, 8, 9])


def test_overlapping_write_and_bad_shapes_are_refused() -> None:
    ring = RingBuffer(2, 10)
    ring.write(0, np.zeros((2, 5), np.float32))
    with pytest.raises(SignalError, match="overlaps"):
        ring.write(3, np.zeros((2, 5), np.float32))
    with pytest.raises(SignalError, match=r"block must be \(2, n\)"):
        ring.write(5, np.zeros((3, 5), np.float32))
