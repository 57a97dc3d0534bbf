"""One patient's ingest state: sequencing, ring buffer, window assembly, counters and signal-quality verdicts."""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.sequencer import Decision, Delivery, Drop, Placement, SegmentStart, Sequencer
from agent.settings import Settings
from core.protocol import SCHEMA_STATUS
from core.ring_buffer import RingBuffer
from core.windows import Window, WindowAssembler, WindowBatch

__all__ = ["CompletedWindows", "PatientStream", "PatientUpdate"]


@dataclass(eq=False, slots=True)
class CompletedWindows:
    """Windows one chunk completed for one patient, handed to the encoder stage."""

    patient_id: str
    segment: int
    windows: list[Window]  # ordered by second, then lead
    ready_wall: float  # Unix time the windows became ready


@dataclass(slots=True)
class PatientUpdate:
    """What the ingest worker must do after a chunk: acknowledge these deliveries, forward these windows.

    ``pending`` holds (segment, ticket) of blocks pushed into a shared :class:`WindowBatch`; once the batch has run,
    :meth:`PatientStream.complete` turns them into ``completed``.
    """

    handled: list[Delivery] = field(default_factory=list)
    pending: list[tuple[int, int]] = field(default_factory=list)
    completed: list[CompletedWindows] = field(default_factory=list)

    @property
    def windows(self) -> list[Window]:
        return [w for done in self.completed for w in done.windows]


@dataclass
class _Segment:
    index: int
    reason: str
    fs: float
    leads: tuple[str, ...]
    t_origin: float
    buffer: RingBuffer
    assembler: WindowAssembler


class PatientStream:
    """All ingest state of one patient. Plain class, no threads: the ingest worker calls it."""

    def __init__(self, patient_id: str, settings: Settings) -> None:
        self.patient_id = patient_id
        self._settings = settings
        self._sequencer = Sequencer(
            settings.buffer.reorder_window, settings.buffer.reorder_timeout_s, settings.buffer.clock_tolerance_s
        )
        self.segment: _Segment | None = None
        self.stream_id: str | None = None
        self.counters: Counter[str] = Counter()
        self.samples_received: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.last_seq: int | None = None
        self.last_seen_wall: float | None = None
        self.last_seen_mono: float = 0.0
        self._quality: dict[str, deque[str | None]] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=10)

    def _start_segment(self, start: SegmentStart) -> None:
        chunk_fs, leads = start.fs, start.leads
        capacity = max(1, round(self._settings.buffer.minutes * 60 * chunk_fs))
        # One-second blocks: a patient that sent one sample holds kilobytes, a t0 jump allocates nothing.
        buffer = RingBuffer(len(leads), capacity, block=math.ceil(chunk_fs))
        assembler = WindowAssembler(leads, chunk_fs, start.t_origin, self._settings.windows, self._settings.quality)
        self.segment = _Segment(start.segment, start.reason, chunk_fs, leads, start.t_origin, buffer, assembler)
        self._quality = {lead: deque(maxlen=self._settings.quality.verdict_seconds) for lead in leads}
        self.counters["segments"] += 1
        self.events.append({"event": "segment_start", "segment": start.segment, "reason": start.reason})

    def _apply(self, placement: Placement, update: PatientUpdate, batch: WindowBatch) -> None:
        seg = self.segment
        assert seg is not None
        chunk = placement.delivery.chunk
        samples = chunk.samples
        limit = self._settings.protocol.max_abs_mv
        invalid = None
        in_range = chunk.peak_mv is not None and chunk.peak_mv <= limit  # measured by the batch decoder
        if not in_range and not (samples.min() >= -limit and samples.max() <= limit):  # NaN fails both
            invalid = ~(np.abs(samples) <= limit)
            samples = np.where(invalid, np.float32(np.nan), samples)
            self.counters["invalid_samples"] += int(invalid.sum())
        seg.buffer.write(placement.start_index, samples)
        if placement.gap_samples:
            self.counters["gaps"] += 1
            self.counters["gap_samples"] += placement.gap_samples
            self.events.append({"event": "gap", "seq": chunk.seq, "samples": placement.gap_samples})
        if placement.clock_jump:
            self.counters["clock_jumps"] += 1
        update.pending.append((seg.index, batch.add(seg.assembler, placement.start_index, samples, invalid)))
        n = samples.shape[1]
        for lead in seg.leads:
            self.samples_received[lead] += n
        self.counters["chunks"] += 1
        self.last_seq = chunk.seq
        update.handled.append(placement.delivery)

    def _handle(self, decisions: list[Decision], update: PatientUpdate, batch: WindowBatch | None) -> PatientUpdate:
        own = batch or WindowBatch()
        for decision in decisions:
            if isinstance(decision, SegmentStart):
                self._start_segment(decision)
                self.stream_id = decision.stream_id
            elif isinstance(decision, Drop):
                self.counters[decision.reason.value] += 1
                update.handled.append(decision.delivery)
            else:
                self._apply(decision, update, own)
        if batch is None:
            self.complete(update, own.run(), time.time())
        return update

    def accept(
        self, delivery: Delivery, now_mono: float, now_wall: float, batch: WindowBatch | None = None
    ) -> PatientUpdate:
        """Sequence one chunk and apply whatever it released: the deliveries to ack and the windows completed.

        With a shared ``batch``, windows come once the caller has run it and passed the result to :meth:`complete`.
        """
        self.last_seen_wall = now_wall
        self.last_seen_mono = now_mono
        return self._handle(self._sequencer.offer(delivery, now_mono), PatientUpdate(), batch)

    @property
    def pending_reorder(self) -> int:
        """Chunks held back waiting for a missing predecessor (only these patients need :meth:`tick`)."""
        return self._sequencer.pending

    def tick(self, now_mono: float, batch: WindowBatch | None = None) -> PatientUpdate:
        """Release chunks whose missing predecessor did not arrive within the reorder timeout."""
        return self._handle(self._sequencer.flush(now_mono), PatientUpdate(), batch)

    def complete(self, update: PatientUpdate, results: list[list[Window]], ready_wall: float) -> None:
        """Collect the windows of ``update``'s blocks from a run batch, one group per segment, and record their
        quality verdicts (only for the current segment: an older one's leads are gone)."""
        current = self.segment.index if self.segment else None
        for segment, ticket in update.pending:
            windows = results[ticket]
            if segment == current:
                for window in windows:
                    self._quality[window.lead].append(window.reason)
            if update.completed and update.completed[-1].segment == segment:
                update.completed[-1].windows.extend(windows)
            elif windows:
                update.completed.append(CompletedWindows(self.patient_id, segment, windows, ready_wall))
        update.pending.clear()

    def lead_verdict(self, lead: str) -> str:
        """'good', or the dominant defect over the last ``verdict_seconds`` windows; 'unknown' before any."""
        history = self._quality.get(lead)
        if not history:
            return "unknown"
        defects = Counter(r for r in history if r is not None)
        if defects and sum(defects.values()) * 2 >= len(history):
            return defects.most_common(1)[0][0]
        return "good"

    def status(self, now_wall: float) -> dict[str, Any]:
        """The retained status message (schema ecgcast.status/1)."""
        seg = self.segment
        stale = self.last_seen_wall is None or now_wall - self.last_seen_wall > self._settings.status.stale_after_s
        return {
            "schema": SCHEMA_STATUS,
            "patient_id": self.patient_id,
            "state": "stale" if stale else "streaming",
            "stream_id": self.stream_id,
            "segment": seg.index if seg else 0,
            "segment_reason": seg.reason if seg else None,
            "fs": seg.fs if seg else None,
            "leads": list(seg.leads) if seg else [],
            "samples_received": dict(self.samples_received),
            "last_seq": self.last_seq,
            "last_seen": self.last_seen_wall,
            "buffer_fill_s": round(seg.buffer.fill / seg.fs, 3) if seg else 0.0,
            "pending_reorder": self.pending_reorder,
            "chunks": self.counters["chunks"],
            "duplicates": self.counters["duplicate"],
            "late": self.counters["late"],
            "gaps": self.counters["gaps"],
            "gap_seconds": round(self.counters["gap_samples"] / seg.fs, 3) if seg else 0.0,
            "clock_jumps": self.counters["clock_jumps"],
            "invalid_samples": self.counters["invalid_samples"],
            "segments": self.counters["segments"],
            "rejected": dict(self.rejected),
            "signal_quality": {lead: self.lead_verdict(lead) for lead in (seg.leads if seg else ())},
            "events": list(self.events),
            "published_at": now_wall,
        }
