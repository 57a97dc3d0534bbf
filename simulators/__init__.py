"""Synthetic arrhythmia scenarios with exact labels, WFDB records, MQTT replay with faults, forecasting benchmark.

Heavy parts (paho, matplotlib, neurokit2) are imported by the modules that need them, not here.
"""

from simulators.records import (
    RHYTHM_CLASSES,
    AnnotatedRecord,
    BeatAnnotations,
    RhythmSegment,
    rhythm_class,
)
from simulators.scenarios import GENERATOR_VERSION, SCENARIO_NAMES, SyntheticRecord, generate_scenario

__all__ = [
    "GENERATOR_VERSION",
    "RHYTHM_CLASSES",
    "SCENARIO_NAMES",
    "AnnotatedRecord",
    "BeatAnnotations",
    "RhythmSegment",
    "SyntheticRecord",
    "generate_scenario",
    "rhythm_class",
]
