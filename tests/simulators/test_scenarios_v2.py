"""Generator v2: labels still exact, v1 untouched, and the variety v2 exists for (precursors not tied to outcomes,
decoys, onsets anywhere, morphology families, varied noise) actually present."""

from __future__ import annotations

import hashlib
from collections import Counter
from functools import cache

import numpy as np
import pytest
from scipy.ndimage import maximum_filter1d

from simulators.records import AnnotatedRecord
from simulators.scenarios import PRECURSOR_KINDS, SCENARIO_NAMES_V2, generate_scenario

ONSETS = {"af_onset": ("AF", "(AFIB"), "flutter_onset": ("AFL", "(AFL"), "vt_onset": ("VT", "(VT")}
DECOYS = [name for name in SCENARIO_NAMES_V2 if name not in ONSETS]


@cache
def v2(name: str, seed: int, minutes: float = 12.0, noise: str = "none") -> AnnotatedRecord:
    return generate_scenario(name, seed=seed, minutes=minutes, leads=("II", "V1", "V5"), noise=noise, generator="2")


def test_generator_1_is_unchanged_bit_for_bit() -> None:
    """v1 stays reproducible: this digest was taken before v2 existed."""
    rec = generate_scenario("af_onset", seed=3, minutes=2.0, noise="low")
    digest = hashlib.sha256(rec.p_signal.tobytes() + rec.beats.sample.tobytes()).hexdigest()
    assert digest == "9867b266709a409a89aa7308d6d6df79885a0b7370554ed52a925c8d000fab97"
    assert rec.meta["generator_version"] == "1"


def test_v2_is_deterministic_and_differs_from_v1() -> None:
    leads = ("II", "V1", "V5")
    a = v2("af_onset", 4, 3.0, "medium")
    b = generate_scenario("af_onset", 4, 3.0, leads=leads, noise="medium", generator="2")
    np.testing.assert_array_equal(a.p_signal, b.p_signal)
    assert a.rhythms == b.rhythms and a.onsets == b.onsets and a.meta["generator_version"] == "2"
    v1 = generate_scenario("af_onset", 4, 3.0, noise="medium")
    assert not np.array_equal(v1.beats.sample, a.beats.sample)


def test_noise_level_leaves_v2_labels_alone() -> None:
    quiet, noisy = v2("vt_onset", 5, 6.0, "none"), v2("vt_onset", 5, 6.0, "high")
    np.testing.assert_array_equal(quiet.beats.sample, noisy.beats.sample)
    assert quiet.rhythms == noisy.rhythms and quiet.meta["morphology_family"] == noisy.meta["morphology_family"]


@pytest.mark.parametrize("name", SCENARIO_NAMES_V2)
def test_every_annotated_beat_is_a_rendered_qrs(name: str) -> None:
    """Annotations vs the signal: a QRS (steep slope on some lead) within 40 ms of every annotated beat, and no
    steep slope far from every annotation (an unannotated beat)."""
    rec = v2(name, 8, 6.0)
    slope = np.abs(np.diff(rec.p_signal, axis=0)).max(axis=1) * rec.fs  # mV/s, any lead
    reach = round(0.04 * rec.fs)
    peak_near = maximum_filter1d(slope, 2 * reach + 1)[np.clip(rec.beats.sample, 0, slope.size - 1)]
    floor = np.median(slope)
    assert np.all(peak_near > 4 * floor), name
    beat_zone = np.zeros(slope.size, bool)
    for sample in rec.beats.sample:
        beat_zone[max(0, sample - round(0.45 * rec.fs)) : sample + round(0.6 * rec.fs)] = True  # P..T of the beat
    assert slope[~beat_zone].max(initial=0.0) < 0.5 * np.median(peak_near), name


@pytest.mark.parametrize("name", list(ONSETS))
def test_onsets_are_exact_and_fall_anywhere(name: str) -> None:
    from simulators._scripts_v2 import SCRIPTS_V2

    kind, aux = ONSETS[name]
    for seed in range(6):
        rec = v2(name, seed)
        onset = round(rec.onsets[kind] * rec.fs)
        first = next(seg for seg in rec.rhythms if seg.aux == aux)
        assert first.start_sample == onset and rec.rhythm_at(onset - 1) != aux
        assert list(rec.beats.symbol[rec.beats.sample == onset]) == ["V" if kind == "VT" else "N"]
    seeds = np.random.SeedSequence(20261207).spawn(120)
    fractions = [SCRIPTS_V2[name](np.random.default_rng(s), 3600.0).meta["onset_fraction"] for s in seeds]
    assert min(fractions) < 0.15 and max(fractions) > 0.85  # not pinned to 50-80 % of the record


def test_precursors_are_not_tied_to_the_outcome() -> None:
    """Each outcome is preceded by several kinds of precursor (and sometimes none), and a decoy by the same kinds."""
    from simulators._scripts_v2 import SCRIPTS_V2

    def kinds(name: str) -> Counter[str]:
        seeds = np.random.SeedSequence(20261207).spawn(120)
        return Counter(SCRIPTS_V2[name](np.random.default_rng(s), 3600.0).meta["precursor_kind"] for s in seeds)

    for name in ONSETS:
        seen = kinds(name)
        assert len(seen) >= 5 and seen["none"] > 0, (name, seen)
        assert max(seen.values()) < 0.5 * sum(seen.values()), (name, seen)
    assert set(kinds("ectopy_rise_fall")) | set(kinds("precursor_no_onset")) == set(PRECURSOR_KINDS) - {"none"}


@pytest.mark.parametrize("name", DECOYS)
def test_decoys_never_convert(name: str) -> None:
    for seed in range(4):
        rec = v2(name, seed)
        assert rec.onsets == {}
        assert not {seg.aux for seg in rec.rhythms} & {"(AFIB", "(AFL", "(VT"}


def test_a_rise_and_fall_decoy_rises_then_falls_back() -> None:
    """Ectopy burden: baseline < peak (end of the rise), and back down after the fall (same length as the rise)."""
    checked = 0
    for seed in range(16):
        rec = v2("ectopy_rise_fall", seed, 60.0)
        start, rise = rec.meta["precursor_start_s"], rec.meta["precursor_duration_s"]
        if rec.meta["precursor_kind"] not in ("pac_rise", "pvc_rise", "mixed") or start + 2 * rise + 200 > 3600:
            continue
        t = rec.beats.sample / rec.fs

        def burden(lo: float, hi: float, t: np.ndarray = t, rec: AnnotatedRecord = rec) -> float:
            return float(np.mean(rec.beats.symbol[(t >= lo) & (t < hi)] != "N"))

        base, peak = burden(start - 120, start), burden(start + 0.8 * rise, start + 1.2 * rise)
        after = burden(start + 2 * rise + 20, 3600)
        assert base < peak and after < peak, (seed, base, peak, after)
        checked += 1
    assert checked >= 2


def test_morphology_families_and_noise_vary_between_patients() -> None:
    families = Counter(v2("sinus_stable", seed, 1.0).meta["morphology_family"] for seed in range(40))
    assert len(families) >= 5 and families["normal"] < 30
    emg = [np.std(np.diff(v2("sinus_stable", s, 1.0, "medium").p_signal[:, 0])) for s in range(6)]
    assert max(emg) > 1.5 * min(emg)  # one nominal level, different patients' noise
