"""Deterministic ECG measurements: QRS detection, beat labels and rhythm metrics for alerts and LM prompts.

The evidence in a nurse's alert (rate, RR irregularity, ectopy, QRS width, signal quality) comes from here, by
signal processing, never from the language model. All functions are pure: array in, dataclass or array out, ``fs``
explicit. ``python bench/measurements_bench.py`` measures accuracy on synthetic scenarios (docs/MEASUREMENTS.md).
"""

from __future__ import annotations

from ._accuracy import BEAT_CLASSES, score_beats, true_rate_bpm
from ._beats import BeatFeatures, ClassifierConfig, classify_beats
from ._burden import EctopyBurden, WindowQuality, ectopy_burden, window_quality
from ._ec57 import Ec57Score, gross_ec57, score_ec57
from ._metrics import (
    LeadAnalysis,
    Measurements,
    analyse_best_lead,
    analyse_lead,
    analyse_leads,
    best_lead,
    measure,
    measure_leads,
)
from ._noise import NoiseConfig, clean_mask, noisy_beats
from ._qrs import DetectorConfig, detect_qrs
from ._quality import QualityConfig, run_bounds
from ._rhythm import RHYTHM_SPAN_S, RhythmSpan, rhythm_spans
from ._trends import TREND_FEATURE_NAMES, analysis_trends, trend_features, ventricular_runs

__all__ = [
    "BEAT_CLASSES",
    "RHYTHM_SPAN_S",
    "TREND_FEATURE_NAMES",
    "BeatFeatures",
    "ClassifierConfig",
    "DetectorConfig",
    "Ec57Score",
    "EctopyBurden",
    "LeadAnalysis",
    "Measurements",
    "NoiseConfig",
    "QualityConfig",
    "RhythmSpan",
    "WindowQuality",
    "analyse_best_lead",
    "analyse_lead",
    "analyse_leads",
    "analysis_trends",
    "best_lead",
    "classify_beats",
    "clean_mask",
    "detect_qrs",
    "ectopy_burden",
    "gross_ec57",
    "measure",
    "measure_leads",
    "noisy_beats",
    "rhythm_spans",
    "run_bounds",
    "score_beats",
    "score_ec57",
    "trend_features",
    "true_rate_bpm",
    "ventricular_runs",
    "window_quality",
]
