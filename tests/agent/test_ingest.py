"""Batch decoding of queued raw waves, and the worker's handling of what it yields."""

from __future__ import annotations

import queue

import numpy as np

from agent.ingest import RawWave, Rejection, decode_batch
from agent.ingest_worker import IngestWorker
from agent.sequencer import Delivery
from agent.settings import Settings
from core.protocol import PayloadLimits, WaveChunk, encode_wave


def _b64(patient: str, seq: int) -> bytes:
    samples = np.zeros((2, 250), np.float32)
    return encode_wave(WaveChunk(patient, "dev-1", seq, 1.7e9 + seq, 250.0, ("II", "V1"), samples), "b64")


class _RecordingConnection:
    def __init__(self) -> None:
        self.acks: list[tuple[int, int]] = []

    def ack(self, mid: int, qos: int) -> None:
        self.acks.append((mid, qos))

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        return None


def test_decode_batch_keeps_order_and_each_message_handle() -> None:
    passthrough = Rejection(None, "bad_topic")
    items = [RawWave("bed-1", _b64("bed-1", 0), 5, 1, 2.0), passthrough, RawWave("bed-1", b"{nope", 6, 1, 3.0)]
    out = decode_batch(items, PayloadLimits())  # type: ignore[arg-type]
    assert isinstance(out[0], Delivery) and (out[0].mid, out[0].qos, out[0].received_mono) == (5, 1, 2.0)
    assert out[0].chunk.patient_id == "bed-1" and out[0].chunk.samples.shape == (2, 250)
    assert out[1] is passthrough
    assert out[2] == Rejection("bed-1", "bad_json", 6, 1)


def test_worker_acks_a_malformed_message_and_keeps_the_good_ones_of_its_batch() -> None:
    connection = _RecordingConnection()
    worker = IngestWorker(Settings(), connection, queue.Queue(), lambda completed: None)  # type: ignore[arg-type]
    worker.handle_batch(
        [
            RawWave("bed-1", _b64("bed-1", 0), 1, 1, 0.0),
            RawWave("bed-2", _b64("someone-else", 0), 2, 1, 0.0),  # payload id differs from the topic's
            RawWave("bed-1", _b64("bed-1", 1), 3, 1, 0.0),
        ]
    )
    assert sorted(connection.acks) == [(1, 1), (2, 1), (3, 1)]
    assert worker.rejected == {"patient_mismatch": 1}
    assert set(worker.patients) == {"bed-1"}
    assert worker.patients["bed-1"].samples_received == {"II": 500, "V1": 500}


def test_out_of_range_int16_samples_are_marked_invalid_through_the_batch_path() -> None:
    samples = np.zeros((2, 250), np.float32)
    samples[1, 10:13] = 25.0  # mV, past protocol.max_abs_mv (20)
    payload = encode_wave(WaveChunk("bed-1", "dev-1", 0, 1.7e9, 250.0, ("II", "V1"), samples), "b64")
    worker = IngestWorker(Settings(), _RecordingConnection(), queue.Queue(), lambda completed: None)  # type: ignore[arg-type]
    worker.handle_batch([RawWave("bed-1", payload, 1, 1, 0.0), RawWave("bed-1", _b64("bed-1", 1), 2, 1, 0.0)])
    patient = worker.patients["bed-1"]
    assert patient.counters["invalid_samples"] == 3
    stored = patient.segment.buffer.latest(500)  # type: ignore[union-attr]
    assert np.isnan(stored[1, 10:13]).all() and not np.isnan(stored[0]).any()
