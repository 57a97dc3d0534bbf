"""Issue #19 item 4 on the agent: a cap on patients, provisioned ids, and ring buffers that cost what they hold."""

from __future__ import annotations

import queue
import time
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from agent.ingest import RawWave
from agent.ingest_worker import NOT_PROVISIONED, PATIENT_LIMIT, IngestWorker, provisioned_matcher
from agent.settings import BufferSettings, Settings, load_settings
from core.protocol import WaveChunk, encode_wave

TWELVE = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
T0 = 1.7e9


class _Broker:
    """Records acknowledgements and retained status messages instead of sending them."""

    def __init__(self) -> None:
        self.acks: list[tuple[int, int]] = []
        self.published: list[str] = []

    def ack(self, mid: int, qos: int) -> None:
        self.acks.append((mid, qos))

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.published.append(topic)


def _worker(**buffer: Any) -> tuple[IngestWorker, _Broker]:
    broker = _Broker()
    settings = Settings.model_validate({"buffer": buffer})
    return IngestWorker(settings, broker, queue.Queue(), lambda completed: None), broker  # type: ignore[arg-type]


def _raw(pid: str, seq: int, t0: float, samples: np.ndarray, fs: float = 250.0, mid: int = 0) -> RawWave:
    leads = TWELVE if len(samples) == 12 else ("II", "V1")
    payload = encode_wave(WaveChunk(pid, "dev-1", seq, t0, fs, leads, samples.astype(np.float32)), "b64")
    return RawWave(pid, payload, mid, 1, time.monotonic())


def _feed(worker: IngestWorker, raws: list[RawWave]) -> None:
    for start in range(0, len(raws), 512):  # the running worker's batch size
        worker.handle_batch(raws[start : start + 512])  # type: ignore[arg-type]


def test_a_flood_of_one_sample_patients_stops_at_the_cap_and_costs_kilobytes_each() -> None:
    worker, broker = _worker(max_patients=500)
    one_sample = np.zeros((2, 1))
    with capture_logs() as logs:
        _feed(worker, [_raw(f"n{i:05d}", 0, T0, one_sample, mid=i + 1) for i in range(2000)])
    assert len(worker.patients) == 500 and worker.rejected == {PATIENT_LIMIT: 1500}
    assert worker.accepted == 500 and len(broker.acks) == 2000  # refused messages are acknowledged too
    full_ring = 2 * 250 * 600 * 4  # 2 leads, 250 Hz, 10 minutes, float32
    for patient in worker.patients.values():
        assert patient.segment is not None and patient.segment.buffer.nbytes == 2 * 250 * 4  # one 1-s block
    assert full_ring > 100 * 2 * 250 * 4
    refusals = [e for e in logs if e["event"] == "patient_refused"]
    assert [e["refused"] for e in refusals] == [1, 1000]  # rate-limited: the first and every 1000th
    assert refusals[0]["reason"] == PATIENT_LIMIT and refusals[0]["patient_id"] == "n00500"


def test_a_full_agent_keeps_its_patients_streaming_and_admits_again_once_one_leaves() -> None:
    worker, _ = _worker(max_patients=2)
    second = np.ones((2, 250))
    _feed(worker, [_raw("bed-1", 0, T0, second), _raw("bed-2", 0, T0, second), _raw("bed-3", 0, T0, second)])
    _feed(worker, [_raw("bed-1", 1, T0 + 1, second), _raw("bed-3", 1, T0 + 1, second)])
    assert set(worker.patients) == {"bed-1", "bed-2"} and worker.rejected == {PATIENT_LIMIT: 2}
    assert worker.patients["bed-1"].samples_received == {"II": 500, "V1": 500}  # never evicted for a newcomer
    worker.patients["bed-2"].last_seen_mono = time.monotonic() - 601  # silent past buffer.idle_evict_s
    worker.housekeeping(time.monotonic())
    _feed(worker, [_raw("bed-3", 2, T0 + 2, second)])
    assert set(worker.patients) == {"bed-1", "bed-3"}


def test_a_590_s_t0_jump_of_12_leads_at_1_khz_stores_the_gap_without_memory() -> None:
    worker, _ = _worker()
    second = np.ones((12, 1000))
    raws = [_raw("bed-1", seq, T0 + seq, second, fs=1000.0) for seq in range(10)]
    # seq 10 never comes; seq 11 on says the clock jumped 590 s past where seq 10 would have been
    raws += [_raw("bed-1", seq, T0 + 600 + seq - 11, second * 2, fs=1000.0) for seq in range(11, 21)]
    _feed(worker, raws)
    patient = worker.patients["bed-1"]
    ring = patient.segment.buffer  # type: ignore[union-attr]
    assert patient.counters["gap_samples"] == 590_000 and ring.end == 610_000
    assert ring.start == 10_000  # the 10 s before the jump fell out of the 10-minute ring; the gap is all it holds
    assert ring.nbytes == 10 * 12 * 1000 * 4  # the 10 s after the jump: 0.5 MB, where the whole ring is 28.8 MB
    assert ring.nbytes < (12 * 1000 * 600 * 4) / 25
    assert np.isnan(ring.read(10_000, 11_000)).all() and np.isnan(ring.read(599_000, 600_000)).all()
    np.testing.assert_array_equal(ring.read(600_000, 600_010), np.full((12, 10), 2.0, np.float32))


def test_provisioned_ids_only_and_a_clean_patients_samples_are_untouched() -> None:
    worker, broker = _worker(provisioned_patients=["bed-*", "P001"])
    clean, _ = _worker()
    rng = np.random.default_rng(3)
    seconds = [rng.uniform(-1, 1, (2, 250)) for _ in range(4)]
    mine = [_raw("bed-1", seq, T0 + seq, block) for seq, block in enumerate(seconds)]
    others = [_raw(pid, 0, T0, seconds[0]) for pid in ("intruder", "P0010", "BED-2", "bed")]
    with capture_logs() as logs:
        _feed(worker, [mine[0], others[0], _raw("P001", 0, T0, seconds[0]), mine[1], *others[1:], *mine[2:]])
    _feed(clean, mine)
    assert set(worker.patients) == {"bed-1", "P001"} and worker.rejected == {NOT_PROVISIONED: 4}
    assert "bed" not in worker.patients  # "bed-*" needs the dash
    assert len(broker.acks) == 9
    got, want = worker.patients["bed-1"], clean.patients["bed-1"]
    np.testing.assert_array_equal(got.segment.buffer.latest(1000), want.segment.buffer.latest(1000))  # type: ignore[union-attr]
    assert got.samples_received == want.samples_received and got.counters == want.counters
    refusals = [e for e in logs if e["event"] == "patient_refused"]
    assert len(refusals) == 1 and refusals[0]["reason"] == NOT_PROVISIONED


def test_provisioned_matcher_exact_ids_and_patterns() -> None:
    accepts = provisioned_matcher(["P001", "ICU-?", "W[12]-*"])
    assert [accepts(pid) for pid in ("P001", "ICU-7", "W2-bed", "P0011", "ICU-12", "W3-bed", "p001")] == [
        True, True, True, False, False, False, False,
    ]  # fmt: skip
    assert provisioned_matcher(None)("anyone")


@pytest.mark.parametrize(
    ("buffer", "message"),
    [
        ({"provisioned_patients": []}, "empty list would refuse every patient"),
        ({"provisioned_patients": ["ok", "no spaces"]}, "not a patient id or pattern"),
        ({"max_patients": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_bounds_are_refused(buffer: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        BufferSettings.model_validate(buffer)


def test_default_config_has_the_bounds() -> None:
    buffer = load_settings(env={}).buffer
    assert (buffer.max_patients, buffer.provisioned_patients) == (2000, None)
    assert buffer == BufferSettings()
