"""The WFDB record of issue 22's acceptance test, written by the tests: 4 minutes at 360 Hz (MLII, V1, as MIT-BIH
records are), sinus at 72/min with about 20 % PVCs, and a 20-s burst of electrode motion (0.5-10 Hz, 1 mV RMS:
the ECG's own band, which the per-second spectral check passes) marked '~' in its annotations, as MIT-BIH marks
noise. Synthetic, from our generator; read back with the project's own WFDB reader."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Final

import numpy as np
from scipy.signal import butter, sosfilt

from simulators import AnnotatedRecord, generate_rhythm
from simulators.wfdb_io import read_record, write_record

FS: Final = 360.0
SECONDS: Final = 240
BURST_S: Final = (100.0, 120.0)
NAME: Final = "pvc20_burst"


def write_pvc_record(directory: Path) -> Path:
    """Write the record (signals and ``atr`` annotations) into ``directory``; returns its path without extension."""
    rec = generate_rhythm("sinus", SECONDS, seed=5, fs=FS, leads=("MLII", "V1"), noise="ambient", pvc_burden=0.25)
    signal = rec.p_signal.astype(np.float64)
    part = slice(int(BURST_S[0] * FS), int(BURST_S[1] * FS))
    sos = butter(4, [0.5, 10.0], btype="bandpass", fs=FS, output="sos")
    rng = np.random.default_rng(22)
    for lead in range(signal.shape[1]):
        motion = sosfilt(sos, rng.normal(size=part.stop - part.start))
        signal[part, lead] += motion / motion.std()
    unusable = rec.unusable.copy()
    unusable[part] = True
    noisy = dataclasses.replace(rec, record_name=NAME, p_signal=signal.astype(np.float32), unusable=unusable)
    return write_record(noisy, directory)


def annotated_pvc_burden(rec: AnnotatedRecord, t_end_s: float, window_s: float) -> float:
    """Share of the annotated beats in ``[t_end_s - window_s, t_end_s)`` that are PVCs ('V')."""
    t = rec.beats.sample / rec.fs
    inside = (t >= t_end_s - window_s) & (t < t_end_s)
    return float(np.mean(rec.beats.symbol[inside] == "V"))


def read_pvc_record(path: Path) -> AnnotatedRecord:
    return read_record(path)
