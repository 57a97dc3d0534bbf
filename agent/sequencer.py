"""Places incoming chunks on a patient's sample clock: ordering, duplicates, gaps, device restarts.

Within a stream, ``seq`` says whether chunks are contiguous; ``t0`` places a chunk after a gap. A chunk that
arrives ahead of a missing one is held (bounded by count and time) so that mild reordering costs nothing; when
the missing chunk does not come, the gap is declared and recorded. A new ``stream_id`` or a change of ``fs`` or
lead set starts a new segment with its own clock, and nothing is spliced across segments.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from enum import StrEnum

from core.protocol import WaveChunk

__all__ = ["Delivery", "Drop", "Placement", "SegmentStart", "Sequencer"]


@dataclass(eq=False, slots=True)
class Delivery:
    """A validated chunk plus its MQTT delivery handle, acknowledged once the chunk is safely handled."""

    chunk: WaveChunk
    mid: int = 0
    qos: int = 0
    received_mono: float = 0.0


class DropReason(StrEnum):
    DUPLICATE = "duplicate"
    LATE = "late"


@dataclass(slots=True)
class Drop:
    delivery: Delivery
    reason: DropReason


@dataclass(frozen=True)
class SegmentStart:
    segment: int
    reason: str  # "first", "new_stream", "fs_change", "leads_change"
    t_origin: float
    stream_id: str
    fs: float
    leads: tuple[str, ...]


@dataclass(slots=True)
class Placement:
    delivery: Delivery
    start_index: int  # absolute sample index on the current segment clock
    gap_samples: int  # samples skipped before this chunk (0 when contiguous)
    clock_jump: bool  # t0 disagreed with the sample clock beyond tolerance


@dataclass
class _Stream:
    stream_id: str
    fs: float
    leads: tuple[str, ...]
    t_origin: float
    next_seq: int
    next_index: int = 0
    pending: OrderedDict[int, Delivery] = field(default_factory=OrderedDict)
    lost: set[int] = field(default_factory=set)


Decision = Placement | Drop | SegmentStart


class Sequencer:
    """Per-patient ordering state. Pure logic: the caller passes ``now`` (monotonic seconds)."""

    def __init__(self, reorder_window: int, reorder_timeout_s: float, clock_tolerance_s: float) -> None:
        self._reorder_window = reorder_window
        self._reorder_timeout_s = reorder_timeout_s
        self._clock_tolerance_s = clock_tolerance_s
        self._stream: _Stream | None = None
        self._retired: OrderedDict[str, None] = OrderedDict()  # recent stream ids; their stragglers are late
        self.segment = 0

    @property
    def pending(self) -> int:
        return len(self._stream.pending) if self._stream else 0

    def _segment_change(self, chunk: WaveChunk) -> str | None:
        s = self._stream
        if s is None:
            return "first"
        if chunk.stream_id != s.stream_id:
            return "new_stream"
        if chunk.fs != s.fs:
            return "fs_change"
        if chunk.leads != s.leads:
            return "leads_change"
        return None

    def _place(self, delivery: Delivery, gap: bool) -> Placement:
        s = self._stream
        assert s is not None
        chunk = delivery.chunk
        clock_index = round((chunk.t0 - s.t_origin) * chunk.fs)
        start = max(clock_index, s.next_index) if gap else s.next_index
        jump = abs(clock_index - start) > self._clock_tolerance_s * chunk.fs
        placement = Placement(delivery, start, start - s.next_index, jump)
        s.next_index = start + chunk.n_samples
        s.next_seq = chunk.seq + 1
        return placement

    def _drain(self, out: list[Decision]) -> None:
        s = self._stream
        assert s is not None
        while s.next_seq in s.pending:
            out.append(self._place(s.pending.pop(s.next_seq), gap=False))

    def _declare_gap(self, out: list[Decision]) -> None:
        """Give up on the missing seq(s) before the oldest held chunk and place it after a gap."""
        s = self._stream
        assert s is not None
        first = min(s.pending)
        s.lost.update(range(s.next_seq, first))
        if len(s.lost) > 4096:
            s.lost = set(sorted(s.lost)[-4096:])
        out.append(self._place(s.pending.pop(first), gap=True))
        self._drain(out)

    def flush(self, now: float) -> list[Decision]:
        """Declare gaps for chunks held longer than the reorder timeout."""
        out: list[Decision] = []
        s = self._stream
        while s and s.pending and now - min(d.received_mono for d in s.pending.values()) >= self._reorder_timeout_s:
            self._declare_gap(out)
        return out

    def offer(self, delivery: Delivery, now: float) -> list[Decision]:
        """Decide what to do with one chunk; returns decisions in the order they must be applied."""
        chunk = delivery.chunk
        out: list[Decision] = []
        if chunk.stream_id in self._retired:
            return [Drop(delivery, DropReason.LATE)]
        reason = self._segment_change(chunk)
        if reason is not None:
            while self._stream and self._stream.pending:
                self._declare_gap(out)
            if self._stream is not None and reason == "new_stream":
                self._retired[self._stream.stream_id] = None
                while len(self._retired) > 16:
                    self._retired.popitem(last=False)
            self.segment += 1
            self._stream = _Stream(chunk.stream_id, chunk.fs, chunk.leads, chunk.t0, chunk.seq)
            out.append(SegmentStart(self.segment, reason, chunk.t0, chunk.stream_id, chunk.fs, chunk.leads))
        s = self._stream
        assert s is not None
        if chunk.seq < s.next_seq or chunk.seq in s.pending:
            out.append(Drop(delivery, DropReason.LATE if chunk.seq in s.lost else DropReason.DUPLICATE))
            return out
        if chunk.seq == s.next_seq:
            out.append(self._place(delivery, gap=False))
            self._drain(out)
            return out
        s.pending[chunk.seq] = delivery
        if len(s.pending) > self._reorder_window:
            self._declare_gap(out)
        out += self.flush(now)
        return out
