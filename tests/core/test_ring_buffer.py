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


def test_storage_grows_with_the_samples_not_with_the_capacity() -> None:
    ring = RingBuffer(12, capacity=600_000, block=1000)  # 10 min of 12 leads at 1 kHz: 28.8 MB if held in full
    ring.write(0, np.ones((12, 1), np.float32))
    assert ring.nbytes == 12 * 1000 * 4  # one block: a one-sample patient costs kilobytes
    for second in range(1, 30):
        ring.write(second * 1000, np.ones((12, 1000), np.float32))
    assert ring.nbytes == 30 * 12 * 1000 * 4
    np.testing.assert_array_equal(ring.read(0, 2)[:, 1], np.full(12, np.nan))  # the rest of the first second: a gap


def test_steady_state_holds_the_capacity_plus_at_most_two_blocks() -> None:
    ring = RingBuffer(2, capacity=1000, block=64)
    for start in range(0, 20_000, 37):  # chunks that straddle block boundaries
        ring.write(start, np.full((2, 37), start, np.float32))
        assert ring.nbytes <= (1000 + 2 * 64) * 2 * 4
    assert ring.fill == 1000 and ring.latest(1)[0, 0] == 19_980


def test_a_long_jump_allocates_nothing_for_the_gap_and_frees_what_fell_out() -> None:
    ring = RingBuffer(12, capacity=600_000, block=1000)
    for second in range(10):
        ring.write(second * 1000, np.ones((12, 1000), np.float32))
    ring.write(600_000, np.full((12, 1000), 2.0, np.float32))  # t0 jumped 590 s: 590,000 samples never received
    assert ring.start == 1000  # the first second fell out of the newest 10 min
    assert ring.nbytes == 10 * 12 * 1000 * 4  # the 9 s still held and the new second; no block for the gap
    assert np.isnan(ring.read(10_000, 12_000)).all() and np.isnan(ring.read(598_500, 600_000)).all()
    np.testing.assert_array_equal(ring.read(9_999, 10_000), np.ones((12, 1)))
    ring.write(10**12, np.full((12, 5), 3.0, np.float32))  # a jump far past the ring: only held blocks are visited
    assert ring.nbytes == 12 * 1000 * 4 and ring.start == 10**12 + 5 - 600_000
    assert np.isnan(ring.read(ring.start, 10**12)).all()
    np.testing.assert_array_equal(ring.latest(5), np.full((12, 5), 3.0))


def test_reads_match_a_dense_reference_under_random_writes_and_gaps() -> None:
    rng = np.random.default_rng(7)
    capacity, reference = 50, {}
    ring = RingBuffer(2, capacity, block=8)
    end = 0
    for _ in range(400):
        start = end + int(rng.choice([0, 0, 0, 1, 5, 13, 80]))
        n = int(rng.integers(1, 70))
        block = rng.standard_normal((2, n)).astype(np.float32)
        ring.write(start, block)
        reference.update({start + k: block[:, k] for k in range(n)})
        end = start + n
        expected = np.array([reference.get(i, np.full(2, np.nan)) for i in range(ring.start, end)]).T
        np.testing.assert_array_equal(ring.read(ring.start, end), expected.reshape(2, -1))
        assert ring.nbytes <= (capacity + 2 * 8) * 2 * 4
