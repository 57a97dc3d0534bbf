"""The agent's encoder stage: every completed window is encoded exactly once and stored in its patient's ring.

All windows completed across all patients since the last tick go to ORT in ONE run (batching amortises the
per-call overhead, which dominates at batch 1). Each patient's ring follows the sample ring buffer's segment:
a new segment (stream restart, clock jump) starts a fresh ring, because second indices restart with it.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass

import numpy as np
import structlog

from agent.patient import CompletedWindows
from encoder_onnx.embedding_ring import EmbeddingRing
from encoder_onnx.runtime import EncoderRuntime

__all__ = ["EncoderStage", "PatientEmbeddings", "encode_ready"]

log = structlog.get_logger(__name__)


@dataclass
class PatientEmbeddings:
    """One patient's embeddings for the current segment."""

    segment: int
    leads: tuple[str, ...]
    ring: EmbeddingRing
    encoded: int = 0  # windows encoded in this segment


class EncoderStage:
    """Owns the per-patient embedding rings; a plain class called from one thread (the encoder worker)."""

    def __init__(self, runtime: EncoderRuntime, capacity_s: int) -> None:
        self.runtime = runtime
        self.capacity_s = capacity_s
        self.patients: dict[str, PatientEmbeddings] = {}
        self.windows_encoded = 0
        self.busy_s = 0.0  # time spent encoding and storing, waits excluded
        self.runs = 0

    def _patient(self, completed: CompletedWindows) -> PatientEmbeddings:
        current = self.patients.get(completed.patient_id)
        if current is not None and current.segment == completed.segment:
            return current
        leads = tuple(dict.fromkeys(w.lead for w in completed.windows))  # first-seen order = segment lead order
        ring = EmbeddingRing(len(leads), self.capacity_s, self.runtime.embedding_dim)
        fresh = PatientEmbeddings(completed.segment, leads, ring)
        self.patients[completed.patient_id] = fresh
        log.info("embedding_ring_started", patient_id=completed.patient_id, segment=completed.segment, leads=leads)
        return fresh

    def encode_tick(self, batch: list[CompletedWindows]) -> int:
        """Encode every window in ``batch`` (any patients) in one ORT run and store each in its ring."""
        items = [(c, w) for c in batch for w in c.windows]
        if not items:
            return 0
        t0 = time.perf_counter()
        windows = np.stack([w.samples for _, w in items])  # (N, 256) mV
        vectors = self.runtime.encode(windows)  # (N, 64)
        for (completed, window), vec in zip(items, vectors, strict=True):
            state = self._patient(completed)
            if window.lead not in state.leads:
                log.error("embedding_unknown_lead", patient_id=completed.patient_id, lead=window.lead)
                continue
            state.ring.put(state.leads.index(window.lead), window.second, window.t_start, vec, window.valid)
            state.encoded += 1
        self.windows_encoded += len(items)
        self.runs += 1
        self.busy_s += time.perf_counter() - t0
        return len(items)

    def embedded_seconds(self, patient_id: str) -> int:
        """Seconds currently held in the patient's ring (0 for an unknown patient)."""
        state = self.patients.get(patient_id)
        return state.ring.embedded_seconds() if state else 0

    def status_fields(self, patient_id: str) -> dict[str, int]:
        """Fields for the patient's status message."""
        state = self.patients.get(patient_id)
        return {
            "embedded_seconds": self.embedded_seconds(patient_id),
            "embedded_windows": state.encoded if state else 0,
            "embedding_segment": state.segment if state else 0,
        }

    def forget(self, patient_id: str) -> None:
        """Drop an evicted patient's ring."""
        self.patients.pop(patient_id, None)


def encode_ready(ready: queue.Queue[CompletedWindows], stage: EncoderStage, timeout_s: float) -> int:
    """One encoder tick: wait up to ``timeout_s`` for windows, take everything queued, encode it in one run."""
    try:
        batch = [ready.get(timeout=timeout_s)]
    except queue.Empty:
        return 0
    while True:
        try:
            batch.append(ready.get_nowait())
        except queue.Empty:
            break
    return stage.encode_tick(batch)
