"""Label exactness of the scenario generator: scripted onsets, beat types and rhythm labels match the signal."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from core.errors import SignalError
from simulators.records import AnnotatedRecord
from simulators.scenarios import GENERATOR_VERSIONS, generate_scenario, scenario_names

FS = 250.0


@pytest.fixture(
    scope="module",
    params=[(g, name) for g in GENERATOR_VERSIONS for name in scenario_names(g)],
    ids=lambda p: f"v{p[0]}-{p[1]}",
)
def clean_record(request: pytest.FixtureRequest) -> AnnotatedRecord:
    generator, name = request.param
    leads = ("II", "V1", "V5")
    return generate_scenario(name, seed=3, minutes=4.0, fs=FS, leads=leads, noise="none", generator=generator)


def test_shapes_units_and_coverage(clean_record: AnnotatedRecord) -> None:
    rec = clean_record
    assert rec.p_signal.shape == (int(4 * 60 * FS), 3)
    assert rec.p_signal.dtype == np.float32
    assert rec.sig_name == ["II", "V1", "V5"]
    assert rec.rhythms[0].start_sample == 0
    assert rec.rhythms[-1].end_sample == rec.sig_len
    for before, after in zip(rec.rhythms, rec.rhythms[1:], strict=False):
        assert before.end_sample == after.start_sample
        assert before.aux != after.aux
    assert np.all(np.diff(rec.beats.sample) > 0)
    assert set(np.unique(rec.beats.symbol)) <= {"N", "A", "V"}
    assert not rec.unusable.any()  # noise="none" has no artifacts
    assert float(np.abs(rec.p_signal).max()) < 8.0


def test_deterministic_from_seed() -> None:
    a = generate_scenario("vt_onset", seed=11, minutes=2.0, noise="medium")
    b = generate_scenario("vt_onset", seed=11, minutes=2.0, noise="medium")
    c = generate_scenario("vt_onset", seed=12, minutes=2.0, noise="medium")
    np.testing.assert_array_equal(a.p_signal, b.p_signal)
    np.testing.assert_array_equal(a.beats.sample, b.beats.sample)
    assert a.rhythms == b.rhythms and a.onsets == b.onsets
    assert not np.array_equal(a.beats.sample, c.beats.sample)


def test_noise_level_leaves_labels_alone() -> None:
    quiet = generate_scenario("af_onset", seed=5, minutes=2.0, noise="none")
    noisy = generate_scenario("af_onset", seed=5, minutes=2.0, noise="high")
    np.testing.assert_array_equal(quiet.beats.sample, noisy.beats.sample)
    assert quiet.rhythms == noisy.rhythms
    assert not np.allclose(quiet.p_signal, noisy.p_signal)


@pytest.mark.parametrize(
    ("name", "kind", "aux"), [("af_onset", "AF", "(AFIB"), ("flutter_onset", "AFL", "(AFL"), ("vt_onset", "VT", "(VT")]
)
def test_onset_time_matches_rhythm_labels(name: str, kind: str, aux: str) -> None:
    rec = generate_scenario(name, seed=7, minutes=6.0, noise="none")
    onset = round(rec.onsets[kind] * rec.fs)
    assert rec.rhythm_at(onset) == aux
    assert rec.rhythm_at(onset - 1) != aux
    first = next(seg for seg in rec.rhythms if seg.aux == aux)
    assert first.start_sample == onset
    at_onset = rec.beats.symbol[rec.beats.sample == onset]
    assert list(at_onset) == ["V" if kind == "VT" else "N"]  # the onset is the first beat of the new rhythm
    if kind == "VT":
        run = (rec.beats.sample >= onset) & (rec.beats.sample < first.end_sample)
        assert run.sum() >= 3 and set(rec.beats.symbol[run]) == {"V"}
    assert 0.5 * rec.duration_s - 60 <= rec.onsets[kind] <= 0.8 * rec.duration_s + 5


def _rr_cv(samples: npt.NDArray[np.int64]) -> float:
    rr = np.diff(samples).astype(float)
    return float(rr.std() / rr.mean())


def test_af_is_irregular_and_sinus_is_not() -> None:
    rec = generate_scenario("af_onset", seed=2, minutes=8.0, noise="none")
    onset = int(rec.onsets["AF"] * rec.fs)
    normal_before = rec.beats.sample[(rec.beats.sample < onset) & (rec.beats.symbol == "N")][:60]
    after = rec.beats.sample[rec.beats.sample > onset]
    assert _rr_cv(after) > 0.12
    assert _rr_cv(normal_before) < 0.08


def test_flutter_conducts_whole_flutter_cycles() -> None:
    rec = generate_scenario("flutter_onset", seed=6, minutes=6.0, noise="none")
    cycle = 60.0 / rec.meta["atrial_rate_bpm"] * rec.fs  # samples per flutter wave
    after = rec.beats.sample[rec.beats.sample >= rec.onsets["AFL"] * rec.fs]
    ratios = np.diff(after) / cycle
    allowed = {int(c) for c in str(rec.meta["conduction"]).split(":")}
    assert np.all(np.abs(ratios - np.round(ratios)) < 1.0 / cycle + 1e-6)  # exact up to rounding to a sample
    assert set(np.round(ratios).astype(int)) <= allowed
    assert 250 <= rec.meta["atrial_rate_bpm"] <= 350


def _qrs_width_ms(lead: npt.NDArray[np.float32], sample: int, fs: float) -> float:
    """Width of the main deflection: span around the fiducial where |x - baseline| exceeds 30 % of its peak."""
    half = int(0.15 * fs)
    seg = lead[sample - half : sample + half].astype(float)
    dev = np.abs(seg - np.median(seg))
    above = dev > 0.3 * dev[half - 5 : half + 6].max()
    lo = hi = half
    while lo > 0 and above[lo - 1]:
        lo -= 1
    while hi < above.size - 1 and above[hi + 1]:
        hi += 1
    return (hi - lo) / fs * 1000.0


def test_beat_types_show_in_the_signal() -> None:
    rec = generate_scenario("sinus_ectopy", seed=4, minutes=10.0, noise="none", leads=("II",))
    lead = rec.lead("II")
    inner = (rec.beats.sample > 100) & (rec.beats.sample < rec.sig_len - 100)
    widths = {
        sym: np.median([_qrs_width_ms(lead, s, rec.fs) for s in rec.beats.sample[inner & (rec.beats.symbol == sym)]])
        for sym in ("N", "V")
    }
    assert rec.beats.count("V") > 5 and rec.beats.count("A") > 5
    assert widths["V"] > 1.8 * widths["N"]
    rr_before = np.diff(rec.beats.sample, prepend=0)
    median_nn = np.median(rr_before[1:][(rec.beats.symbol[1:] == "N") & (rec.beats.symbol[:-1] == "N")])
    assert np.median(rr_before[rec.beats.symbol == "A"]) < 0.85 * median_nn  # PACs are premature


def test_rejects_bad_inputs() -> None:
    with pytest.raises(SignalError):
        generate_scenario("nope")
    with pytest.raises(SignalError):
        generate_scenario("af_onset", fs=2000.0)
    with pytest.raises(SignalError):
        generate_scenario("af_onset", noise="loud")
