"""Deterministic ECG measurements: QRS detection, beat labels and rhythm metrics for alerts and LM prompts.

The evidence in a nurse's alert (rate, RR irregularity, ectopy, QRS width, signal quality) comes from here, by
signal processing, never from the language model. All functions are pure: array in, dataclass or array out, ``fs``
explicit. ``python -m agent.measurements`` measures accuracy on synthetic scenarios (docs/MEASUREMENTS.md).
"""

from __future__ import annotations

from ._beats import BeatFeatures, ClassifierConfig, classify_beats
from ._metrics import Measurements, analyse_lead, measure, measure_leads
from ._qrs import DetectorConfig, detect_qrs
from ._quality import QualityConfig

__all__ = [
    "BeatFeatures",
    "ClassifierConfig",
    "DetectorConfig",
    "Measurements",
    "QualityConfig",
    "analyse_lead",
    "classify_beats",
    "detect_qrs",
    "measure",
    "measure_leads",
]
