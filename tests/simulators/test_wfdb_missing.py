"""Issue #22: samples a WFDB record marks missing are replayed as invalid samples, never as a flat 0 mV line.

The record is written with ``wfdb.wrsamp`` (NaN in ``p_signal`` becomes the format's invalid sample value), read
back, turned into the device's publish actions, and fed through the agent's own ingest worker: the seconds that
touch the missing stretch are invalid ("invalid_samples"), the seconds around it are valid and their samples are
the record's.
"""

from __future__ import annotations

import queue
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import wfdb

from agent.ingest import RawWave
from agent.ingest_worker import IngestWorker
from agent.patient import CompletedWindows
from agent.settings import Settings
from core.protocol import PayloadLimits, decode_wave
from simulators.benchmark import build_from_records
from simulators.faults import Publish, device_actions
from simulators.scenarios import generate_scenario
from simulators.wfdb_io import read_record

FS = 250
SECONDS = 20
MISSING = slice(8 * FS + 100, 10 * FS + 50)  # lead II only: 8.4 s .. 10.2 s
TOUCHED = {8, 9, 10}  # the seconds that stretch touches


class _Connection:
    def ack(self, mid: int, qos: int) -> None:
        return None

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        return None


def _signal() -> npt.NDArray[np.float64]:
    rec = generate_scenario("sinus_stable", seed=5, minutes=SECONDS / 60, fs=FS, leads=("II", "V1"), noise="none")
    return np.round(rec.p_signal.astype(np.float64), 3)  # what format 16 at 1 µV per count stores


@pytest.fixture
def record_dir(tmp_path: Path) -> Path:
    signal = _signal()
    signal[MISSING, 0] = np.nan
    wfdb.wrsamp(
        "gappy",
        fs=FS,
        units=["mV", "mV"],
        sig_name=["MLII", "V1"],
        p_signal=signal,
        fmt=["16", "16"],
        adc_gain=[1000.0, 1000.0],
        baseline=[0, 0],
        write_dir=str(tmp_path),
    )
    wfdb.wrann("gappy", "atr", np.array([0]), symbol=["+"], aux_note=["(N"], fs=FS, write_dir=str(tmp_path))
    return tmp_path


def test_read_record_keeps_missing_samples_apart_from_the_signal(record_dir: Path) -> None:
    rec = read_record(record_dir / "gappy")
    assert rec.missing is not None and rec.missing.shape == rec.p_signal.shape
    assert rec.missing[MISSING, 0].all() and rec.missing.sum() == MISSING.stop - MISSING.start
    assert np.isfinite(rec.p_signal).all()  # training and the benchmark read finite numbers
    assert rec.unusable[MISSING].all() and not rec.unusable[: MISSING.start].any()
    index = build_from_records(record_dir, record_dir / "bench")  # the benchmark still builds from such records
    assert index.exists()


@pytest.mark.parametrize("encoding", ["json", "b64"])
def test_replayed_missing_samples_are_invalid_seconds_not_a_flat_line(record_dir: Path, encoding: str) -> None:
    rec = read_record(record_dir / "gappy")
    payloads = [
        a.payload
        for a in device_actions(rec, "bed-3", t_start=1.7e9, encoding=encoding, rng=np.random.default_rng(0))
        if isinstance(a, Publish)
    ]
    assert len(payloads) == SECONDS
    if encoding == "json":  # a missing sample is JSON null; the protocol stores it as an invalid sample
        chunk = decode_wave(payloads[9], PayloadLimits(), "bed-3")
        assert np.isnan(chunk.samples[0]).all() and np.isfinite(chunk.samples[1]).all()
        assert b"null" in payloads[9] and b"NaN" not in payloads[9]
    completed: list[CompletedWindows] = []
    worker = IngestWorker(Settings(), _Connection(), queue.Queue(), completed.append)  # type: ignore[arg-type]
    worker.handle_batch([RawWave("bed-3", payload, i, 1, 0.0) for i, payload in enumerate(payloads)])
    patient = worker.patients["bed-3"]
    assert patient.counters["invalid_samples"] == MISSING.stop - MISSING.start

    windows = {(w.lead, w.second): w for done in completed for w in done.windows}
    for second in range(SECONDS):
        lead_ii = windows[("II", second)]
        assert lead_ii.valid is (second not in TOUCHED), second
        if second in TOUCHED:
            assert lead_ii.reason == "invalid_samples"
        assert windows[("V1", second)].valid, second  # the other lead is untouched

    stored = patient.segment.buffer.latest(SECONDS * FS)  # type: ignore[union-attr]
    assert np.isnan(stored[0, MISSING]).all()
    expected = _signal().T
    around = np.r_[0 : MISSING.start, MISSING.stop : SECONDS * FS]
    np.testing.assert_allclose(stored[0, around], expected[0, around], atol=6e-4)
    np.testing.assert_allclose(stored[1], expected[1], atol=6e-4)
