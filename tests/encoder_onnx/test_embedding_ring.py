"""EmbeddingRing: one slot per lead-second, aligned by second index, stale and missing slots read as invalid."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import SignalError
from encoder_onnx.embedding_ring import EmbeddingRing


def vec(lead: int, second: int) -> np.ndarray:
    return np.full(4, lead * 1000 + second, dtype=np.float32)


def fill(ring: EmbeddingRing, seconds: range, leads: int = 2) -> None:
    for s in seconds:
        for lead in range(leads):
            ring.put(lead, s, 1000.0 + s, vec(lead, s), valid=True)


def test_window_returns_last_seconds_in_order() -> None:
    ring = EmbeddingRing(n_leads=2, capacity_s=10, dim=4)
    fill(ring, range(6))
    emb, valid, t_start = ring.window(4)
    assert emb.shape == (2, 4, 4) and valid.shape == (2, 4) and t_start.shape == (4,)
    assert emb[1, :, 0].tolist() == [1002, 1003, 1004, 1005]
    assert valid.all()
    assert t_start.tolist() == [1002.0, 1003.0, 1004.0, 1005.0]


def test_wraparound_keeps_only_the_newest_lap() -> None:
    ring = EmbeddingRing(n_leads=2, capacity_s=5, dim=4)
    fill(ring, range(13))
    emb, valid, _ = ring.window(100)  # asks for more than capacity: gets capacity
    assert valid.all()
    assert emb.shape[1] == 5
    assert emb[0, :, 0].tolist() == [8, 9, 10, 11, 12]
    assert ring.embedded_seconds() == 5


def test_gap_seconds_are_invalid_zero_and_nan() -> None:
    ring = EmbeddingRing(n_leads=2, capacity_s=8, dim=4)
    fill(ring, range(4))
    fill(ring, range(6, 8))  # seconds 4 and 5 never arrive (a gap)
    emb, valid, t_start = ring.window(8)
    assert valid.tolist()[0] == [True] * 4 + [False, False] + [True, True]
    assert not emb[:, 4:6].any()
    assert np.isnan(t_start[4:6]).all() and not np.isnan(t_start[:4]).any()
    fill(ring, range(8, 12))  # seconds 0-3 are overwritten; slots of 4 and 5 still hold nothing newer
    emb, valid, _ = ring.window(8)
    assert valid[0].tolist() == [False, False, True, True, True, True, True, True]  # 4, 5 stale-free: still missing


def test_quality_flag_and_missing_lead() -> None:
    ring = EmbeddingRing(n_leads=2, capacity_s=4, dim=4)
    ring.put(0, 0, 10.0, vec(0, 0), valid=False)  # failed signal quality
    ring.put(1, 0, 10.0, vec(1, 0), valid=True)
    ring.put(0, 1, 11.0, vec(0, 1), valid=True)  # lead 1 of second 1 not yet encoded
    emb, valid, t_start = ring.window(2)
    assert valid.tolist() == [[False, True], [True, False]]
    assert emb[0, 0].sum() == 0 and emb[1, 0, 0] == 1000
    assert t_start.tolist() == [10.0, 11.0]


def test_window_is_a_copy() -> None:
    ring = EmbeddingRing(n_leads=1, capacity_s=4, dim=4)
    fill(ring, range(2), leads=1)
    emb, _, _ = ring.window(2)
    emb[:] = -1
    assert ring.window(2).embeddings[0, 0, 0] == 0


def test_empty_ring_and_bad_puts() -> None:
    ring = EmbeddingRing(n_leads=2, capacity_s=4, dim=4)
    assert ring.window(10).embeddings.shape == (2, 0, 4)
    assert ring.embedded_seconds() == 0
    with pytest.raises(SignalError, match="lead_idx"):
        ring.put(2, 0, 0.0, vec(0, 0))
    with pytest.raises(SignalError, match="shape"):
        ring.put(0, 0, 0.0, np.zeros(3, np.float32))
    fill(ring, range(10))
    with pytest.raises(SignalError, match="outside the ring"):
        ring.put(0, 5, 0.0, vec(0, 5))  # older than the ring holds
