from __future__ import annotations

import numpy as np

from agent.sequencer import Delivery, Drop, Placement, SegmentStart, Sequencer
from core.protocol import WaveChunk

FS = 250.0
N = 50  # samples per chunk: 0.2 s


def delivery(
    seq: int,
    stream: str = "s1",
    fs: float = FS,
    leads: tuple[str, ...] = ("II",),
    t_base: float = 1000.0,
    received: float | None = None,
) -> Delivery:
    chunk = WaveChunk("p1", stream, seq, t_base + seq * N / fs, fs, leads, np.zeros((len(leads), N), np.float32))
    return Delivery(chunk, mid=seq + 1, qos=1, received_mono=float(seq) if received is None else received)


def placements(decisions: list) -> list[tuple[int, int, int]]:
    return [(d.delivery.chunk.seq, d.start_index, d.gap_samples) for d in decisions if isinstance(d, Placement)]


def test_in_order_chunks_are_contiguous_and_first_starts_a_segment() -> None:
    seq = Sequencer(reorder_window=4, reorder_timeout_s=2.0, clock_tolerance_s=0.05)
    first = seq.offer(delivery(0), now=0.0)
    assert isinstance(first[0], SegmentStart) and first[0].reason == "first"
    out = [d for i in range(1, 4) for d in seq.offer(delivery(i), now=i)]
    assert placements(first + out) == [(0, 0, 0), (1, 50, 0), (2, 100, 0), (3, 150, 0)]


def test_duplicate_is_dropped() -> None:
    seq = Sequencer(4, 2.0, 0.05)
    seq.offer(delivery(0), 0.0)
    seq.offer(delivery(1), 1.0)
    out = seq.offer(delivery(1), 1.1)
    assert len(out) == 1 and isinstance(out[0], Drop) and out[0].reason.value == "duplicate"


def test_reordered_chunks_within_window_are_placed_in_order_without_gap() -> None:
    seq = Sequencer(4, 2.0, 0.05)
    seq.offer(delivery(0), 0.0)
    assert seq.offer(delivery(2), 0.1) == []  # held
    assert seq.pending == 1
    out = seq.offer(delivery(1), 0.2)
    assert placements(out) == [(1, 50, 0), (2, 100, 0)]
    assert seq.pending == 0


def test_missing_chunk_becomes_a_gap_after_window_overflow_and_late_arrival_is_dropped() -> None:
    seq = Sequencer(reorder_window=2, reorder_timeout_s=100.0, clock_tolerance_s=0.05)
    seq.offer(delivery(0), 0.0)
    assert seq.offer(delivery(2), 0.1) == []
    assert seq.offer(delivery(3), 0.2) == []
    out = seq.offer(delivery(4), 0.3)  # third held chunk overflows the window of 2
    assert placements(out) == [(2, 100, 50), (3, 150, 0), (4, 200, 0)]
    late = seq.offer(delivery(1), 0.4)
    assert isinstance(late[0], Drop) and late[0].reason.value == "late"


def test_gap_is_declared_on_timeout_and_placed_by_t0() -> None:
    seq = Sequencer(reorder_window=8, reorder_timeout_s=1.0, clock_tolerance_s=0.05)
    seq.offer(delivery(0), 0.0)
    assert seq.offer(delivery(5, received=10.0), 10.0) == []
    assert seq.flush(10.5) == []
    assert placements(seq.flush(11.0)) == [(5, 250, 200)]


def test_new_stream_starts_a_new_segment_and_old_stragglers_are_late() -> None:
    seq = Sequencer(4, 2.0, 0.05)
    seq.offer(delivery(0, "s1"), 0.0)
    seq.offer(delivery(1, "s1"), 1.0)
    out = seq.offer(delivery(0, "s2", t_base=5000.0), 2.0)
    assert isinstance(out[0], SegmentStart) and out[0].reason == "new_stream" and out[0].segment == 2
    assert placements(out) == [(0, 0, 0)]
    straggler = seq.offer(delivery(2, "s1"), 3.0)
    assert isinstance(straggler[0], Drop) and straggler[0].reason.value == "late"


def test_fs_and_lead_changes_start_segments() -> None:
    seq = Sequencer(4, 2.0, 0.05)
    seq.offer(delivery(0), 0.0)
    fs_change = seq.offer(delivery(1, fs=500.0), 1.0)
    assert isinstance(fs_change[0], SegmentStart) and fs_change[0].reason == "fs_change"
    lead_change = seq.offer(delivery(2, fs=500.0, leads=("II", "V1")), 2.0)
    assert isinstance(lead_change[0], SegmentStart) and lead_change[0].reason == "leads_change"


def test_clock_jump_is_flagged_but_contiguous_seq_wins() -> None:
    seq = Sequencer(4, 2.0, clock_tolerance_s=0.05)
    seq.offer(delivery(0), 0.0)
    d = delivery(1)
    jumped = Delivery(
        WaveChunk("p1", "s1", 1, d.chunk.t0 + 3.0, FS, ("II",), d.chunk.samples), d.mid, d.qos, d.received_mono
    )
    out = seq.offer(jumped, 1.0)
    assert isinstance(out[0], Placement) and out[0].start_index == 50 and out[0].clock_jump
