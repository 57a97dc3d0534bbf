"""Training samples cut from synthetic scenario records: the ECG strip and the ground truth around it.

A :class:`Strip` is what the model reads, prepared exactly as ``python main.py forecast`` prepares a window: the
segment ``[at - window_s, at)`` is preprocessed into 1-s windows by the agent's own code and measured by the
deterministic measurement module on that segment only. The encoder runs later (inside training), so the samples
stay valid when the encoder is swapped or fine-tuned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.measurements import Measurements, measure_leads
from core.protocol import canonical_lead
from core.settings import QualitySettings, WindowSettings
from core.windows import preprocess_record
from simulators.records import RHYTHM_CLASSES, AnnotatedRecord, rhythm_class
from simulators.scenarios import SCENARIO_NAMES, generate_scenario

__all__ = ["EVAL_SEED_BASE", "ONSET_CLASS", "Strip", "WindowTruth", "cut_strip", "patient_record", "window_truth"]

EVAL_SEED_BASE = 1_000_000
"""Held-out patients use seeds from here up; training patients start at ``patient_seed_offset`` (< 10**6)."""

ONSET_CLASS = {"AF": "af", "AFL": "flutter", "VT": "vt"}
"""Scenario onset keys -> forecasting classes (llm_runtime.prompts.RHYTHMS keys)."""


@dataclass(frozen=True, eq=False)
class Strip:
    """One window of one patient, ready for the LM: ``windows`` (n_leads, window_s, 256) mV, leads lower-case."""

    windows: npt.NDArray[np.float32]
    leads: tuple[str, ...]
    at_s: int  # window end (exclusive), seconds since record start; the runtime's "--at"
    evidence: str  # Measurements.as_prompt_text() of the segment, as the runtime builds it
    measurements: Measurements
    valid: npt.NDArray[np.bool_] | None = None  # (n_leads, window_s): seconds the agent would encode (else zero)

    @property
    def window_s(self) -> int:
        return int(self.windows.shape[1])

    @property
    def t_end_s(self) -> int:
        """Index of the last second read, as the runner reports it (first_second + T - 1 = at - 1)."""
        return self.at_s - 1


@dataclass(frozen=True)
class WindowTruth:
    """Exact labels of a window from the generator's annotations."""

    rhythm: str  # forecasting class at the window's last sample
    pac: int  # atrial premature beats in the window (generator labels)
    pvc: int  # ventricular premature beats in the window
    unusable_fraction: float  # share of the window the generator marked as noise / lead-off / saturated


def patient_record(seed: int, minutes: float, leads: Sequence[str], noise: str) -> AnnotatedRecord:
    """The scenario of patient ``seed``: the scenario name is a function of the seed (cycled), so every split
    holds every scenario in equal measure."""
    name = SCENARIO_NAMES[seed % len(SCENARIO_NAMES)]
    return generate_scenario(
        name, seed=seed, minutes=minutes, leads=tuple(canonical_lead(x) for x in leads), noise=noise
    )


def cut_strip(
    record: AnnotatedRecord,
    at_s: int,
    window_s: int,
    windows: WindowSettings | None = None,
    quality: QualitySettings | None = None,
) -> Strip:
    """Window ``[at_s - window_s, at_s)`` of ``record`` with its preprocessing and measurements."""
    fs = record.fs
    start, end = round((at_s - window_s) * fs), round(at_s * fs)
    if start < 0 or end > record.sig_len:
        raise ValueError(f"window [{at_s - window_s}, {at_s}) s is outside record {record.record_name}")
    segment = record.p_signal[start:end]
    names = list(record.sig_name)
    pre = preprocess_record(segment, fs, windows, quality, sig_name=names)
    measured = measure_leads(segment, fs, names)
    leads = tuple(name.lower() for name in names)
    return Strip(pre.windows, leads, at_s, measured.as_prompt_text(), measured, pre.valid)


def window_truth(record: AnnotatedRecord, at_s: int, window_s: int) -> WindowTruth:
    fs = record.fs
    start, end = round((at_s - window_s) * fs), round(at_s * fs)
    inside = (record.beats.sample >= start) & (record.beats.sample < end)
    symbols = record.beats.symbol[inside]
    return WindowTruth(
        rhythm=record.class_at(end - 1),
        pac=int(np.count_nonzero(symbols == "A")),
        pvc=int(np.count_nonzero(symbols == "V")),
        unusable_fraction=float(record.unusable[start:end].mean()),
    )


def rhythm_after(record: AnnotatedRecord, at_s: int, horizon_s: int) -> str:
    """Forecasting class at ``at_s + horizon_s`` (the rhythm-at-horizon label)."""
    sample = min(round((at_s + horizon_s) * record.fs), record.sig_len - 1)
    cls = record.class_at(sample)
    assert cls in RHYTHM_CLASSES
    return cls


def onset_within(record: AnnotatedRecord, at_s: int, horizon_s: int) -> dict[str, bool]:
    """Per arrhythmia class: does its scripted onset fall in ``(at_s, at_s + horizon_s]``?"""
    out = {cls: False for cls in ONSET_CLASS.values()}
    for key, onset_s in record.onsets.items():
        cls = ONSET_CLASS.get(key, rhythm_class(f"({key}"))
        if cls in out and at_s < onset_s <= at_s + horizon_s:
            out[cls] = True
    return out
