"""Synthetic arrhythmia scenarios with exact labels, WFDB records, MQTT replay with faults, forecasting benchmark.

The generator and the record type are exported here; WFDB I/O (``simulators.wfdb_io``), replay
(``simulators.faults``, ``simulators.publisher``), the benchmark (``simulators.benchmark``), realism and plots live in
their modules, so that importing the package does not pull in wfdb, paho, matplotlib or neurokit2.
"""

from simulators.records import (
    RHYTHM_CLASSES,
    AnnotatedRecord,
    BeatAnnotations,
    RhythmSegment,
    rhythm_class,
)
from simulators.scenarios import GENERATOR_VERSION, SCENARIO_NAMES, SyntheticRecord, generate_rhythm, generate_scenario

__all__ = [
    "GENERATOR_VERSION",
    "RHYTHM_CLASSES",
    "SCENARIO_NAMES",
    "AnnotatedRecord",
    "BeatAnnotations",
    "RhythmSegment",
    "SyntheticRecord",
    "generate_rhythm",
    "generate_scenario",
    "rhythm_class",
]
