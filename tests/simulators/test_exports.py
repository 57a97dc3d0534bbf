"""The package's public surface is curated: every name in __all__ exists, nothing private leaks."""

from __future__ import annotations

import simulators


def test_exported_members() -> None:
    assert set(simulators.__all__) == {
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
    }
    for name in simulators.__all__:
        assert hasattr(simulators, name), name
        assert not name.startswith("_")
    assert set(simulators.SCENARIO_NAMES) >= {
        "af_onset",
        "flutter_onset",
        "vt_onset",
        "sinus_stable",
        "sinus_ectopy",
        "sinus_tachy_exertion",
    }
