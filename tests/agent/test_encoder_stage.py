"""Streaming through the agent (sequencer, window assembler, encoder stage) equals encoding the record offline."""

from __future__ import annotations

import queue
from itertools import cycle

import numpy as np
import numpy.typing as npt

from agent.encoder_stage import EncoderStage, encode_ready
from agent.patient import CompletedWindows, PatientStream
from agent.sequencer import Delivery
from agent.settings import BufferSettings, Settings
from core.protocol import WaveChunk
from core.windows import preprocess_record
from encoder_onnx.runtime import EncoderRuntime
from simulators.scenarios import generate_scenario

FS = 250.0
T0 = 1_700_000_000.0
CHUNK_SIZES = (37, 101, 250, 13, 499, 64)  # odd sizes: chunk boundaries fall anywhere inside a window


def chunks(
    p_signal: npt.NDArray[np.float32], drop_seq: int | None, stream_id: str = "s1", t0: float = T0
) -> list[WaveChunk]:
    out, start, seq = [], 0, 0
    for size in cycle(CHUNK_SIZES):
        if start >= len(p_signal):
            break
        block = np.ascontiguousarray(p_signal[start : start + size].T)  # (n_leads, n)
        if seq != drop_seq:
            out.append(WaveChunk("bed-7", stream_id, seq, t0 + start / FS, FS, ("II", "V1"), block))
        start, seq = start + size, seq + 1
    return out


def stream(
    p_signal: npt.NDArray[np.float32], stage: EncoderStage, drop_seq: int | None, patient: PatientStream | None = None
) -> None:
    patient = patient or new_patient()
    stream_chunks(chunks(p_signal, drop_seq), stage, patient)


def new_patient() -> PatientStream:
    return PatientStream("bed-7", Settings(buffer=BufferSettings(reorder_window=0)))  # a missing chunk: gap at once


def stream_chunks(all_chunks: list[WaveChunk], stage: EncoderStage, patient: PatientStream) -> None:
    ready: queue.Queue[CompletedWindows] = queue.Queue()
    for i, chunk in enumerate(all_chunks):
        update = patient.accept(Delivery(chunk), now_mono=float(i), now_wall=T0 + i)
        assert patient.segment is not None
        if update.windows:
            ready.put(CompletedWindows("bed-7", patient.segment.index, update.windows, 0.0))
        if i % 3 == 2:  # the encoder ticks every few chunks: batches mix several chunks' windows
            encode_ready(ready, stage, timeout_s=0.0)
    encode_ready(ready, stage, timeout_s=0.0)


def offline(p_signal: npt.NDArray[np.float32], runtime: EncoderRuntime) -> tuple[np.ndarray, np.ndarray]:
    pre = preprocess_record(p_signal, FS)
    n_sig, n_sec, _ = pre.windows.shape
    emb = runtime.encode(pre.windows.reshape(-1, 256)).reshape(n_sig, n_sec, 64)  # (n_sig*n_sec, 64) -> per lead
    return emb, pre.valid


def record() -> npt.NDArray[np.float32]:
    rec = generate_scenario("sinus_ectopy", seed=11, minutes=0.5, fs=FS, leads=("II", "V1"), noise="low")
    return np.asarray(rec.p_signal, dtype=np.float32)


def test_streamed_embeddings_equal_offline(runtime: EncoderRuntime) -> None:
    p_signal = record()
    stage = EncoderStage(runtime, capacity_s=600)
    stream(p_signal, stage, drop_seq=None)
    ref, ref_valid = offline(p_signal, runtime)
    emb, valid, t_start = stage.patients["bed-7"].ring.window(600)
    assert emb.shape == ref.shape == (2, 30, 64)
    assert np.array_equal(valid, ref_valid)
    assert np.max(np.abs(emb[valid] - ref[ref_valid])) <= 1e-5
    np.testing.assert_allclose(t_start, T0 + np.arange(30), atol=1e-9)
    assert stage.embedded_seconds("bed-7") == 30
    assert stage.windows_encoded == 60  # each lead-second encoded exactly once


def test_gap_matches_offline_with_missing_samples(runtime: EncoderRuntime) -> None:
    p_signal = record()
    drop_seq = 20  # ~1.6 s of samples never arrive
    stage = EncoderStage(runtime, capacity_s=600)
    stream(p_signal, stage, drop_seq)
    sizes = [CHUNK_SIZES[i % len(CHUNK_SIZES)] for i in range(drop_seq + 1)]
    start = sum(sizes[:-1])
    with_gap = p_signal.copy()
    with_gap[start : start + sizes[-1]] = np.nan  # offline: the same samples are missing
    ref, ref_valid = offline(with_gap, runtime)
    emb, valid, _ = stage.patients["bed-7"].ring.window(600)
    gap_seconds = np.flatnonzero(~valid[0])
    assert 1 <= len(gap_seconds) <= 3
    assert np.array_equal(valid, ref_valid)
    assert np.max(np.abs(emb[valid] - ref[ref_valid])) <= 1e-5  # includes the filter restart after the gap


def test_device_restart_starts_a_new_ring(runtime: EncoderRuntime) -> None:
    """A new stream id is a new segment of the sample ring; the embedding ring restarts with it."""
    stage = EncoderStage(runtime, capacity_s=60)
    patient = new_patient()
    p_signal = record()
    stream_chunks(chunks(p_signal[:2500], None, "s1", T0), stage, patient)
    assert stage.status_fields("bed-7") == {"embedded_seconds": 10, "embedded_windows": 20, "embedding_segment": 1}
    stream_chunks(chunks(p_signal[2500:3750], None, "s2", T0 + 100.0), stage, patient)
    assert stage.status_fields("bed-7") == {"embedded_seconds": 5, "embedded_windows": 10, "embedding_segment": 2}
    emb, valid, t_start = stage.patients["bed-7"].ring.window(60)
    assert valid.all() and t_start[0] == T0 + 100.0
    ref, _ = offline(p_signal[2500:3750], runtime)
    assert np.max(np.abs(emb - ref)) <= 1e-5
    stage.forget("bed-7")
    assert stage.status_fields("bed-7") == {"embedded_seconds": 0, "embedded_windows": 0, "embedding_segment": 0}
