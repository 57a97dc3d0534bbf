"""Ectopy burden of a window from a beat log, and the noise that rivals the QRS (issue 22: ectopy and noise surfaced).

Synthetic records only (``simulators``): a 20 % PVC burden with a burst of electrode motion, which the per-second
checks pass and which, before ``noisy_beats``, turned into a run of false PVCs.
"""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import numpy.typing as npt
import pytest

from core.measurements import (
    EctopyBurden,
    analyse_best_lead,
    clean_mask,
    ectopy_burden,
    noisy_beats,
    window_quality,
)
from simulators import generate_rhythm, generate_scenario

FS = 250.0
BURST = (50.0, 70.0)  # seconds of electrode motion added to both leads


def motion(n: int, rng: np.random.Generator, amp_mv: float = 0.8) -> npt.NDArray[np.float64]:
    """Electrode motion: 0.5-10 Hz noise (the ECG's own band), as the simulator's motion artifact draws it."""
    from scipy.signal import butter, sosfilt

    noise = sosfilt(butter(4, [0.5, 10.0], btype="bandpass", fs=FS, output="sos"), rng.normal(size=n))
    return np.asarray(amp_mv * noise / noise.std())


def pvc_strip(seed: int = 5, with_burst: bool = True) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(signal (n, 2), annotated beat times of PVCs) of a 2-min sinus strip with about 20 % PVCs."""
    rec = generate_rhythm("sinus", 120, seed, FS, ("II", "V1"), "ambient", pvc_burden=0.25)
    x = rec.p_signal.astype(np.float64)
    if with_burst:
        part = slice(int(BURST[0] * FS), int(BURST[1] * FS))
        rng = np.random.default_rng(seed)
        for lead in range(x.shape[1]):
            x[part, lead] += motion(part.stop - part.start, rng)
    return x, rec.beats.sample[rec.beats.symbol == "V"] / FS


def burden(symbols: str, rr: list[float] | None = None, clean: float = 1.0) -> EctopyBurden:
    """One 60-s window holding one beat a second with these labels."""
    n = len(symbols)
    t = np.arange(n, dtype=np.float64) + 0.5
    rr_ms = np.array(rr if rr is not None else [np.nan] + [1000.0] * (n - 1))
    return ectopy_burden(t, np.array(list(symbols)), rr_ms, np.arange(60.0), np.full(60, clean), 60.0, 60.0)


def test_burden_counts_share_of_beats_runs_and_rate() -> None:
    b = burden("NNVNNVVNNVVVNNNNNNNA" * 3)
    assert (b.beats, b.pvc, b.pac) == (60, 18, 3)
    assert b.pvc_burden == pytest.approx(0.3) and b.pac_burden == pytest.approx(0.05)
    assert (b.couplets, b.ventricular_runs, b.longest_ventricular_run) == (3, 3, 3)
    assert b.hr_bpm == pytest.approx(60.0) and b.pvc_per_min == pytest.approx(18.0)
    assert (b.covered_s, b.clean_s, b.quality) == (60.0, 60.0, "good")


def test_an_unknown_interval_ends_a_run_and_rates_are_per_measurable_minute() -> None:
    rr = [np.nan, 1000.0, 1000.0, np.nan, 1000.0, 1000.0]  # noise left out between the 3rd and 4th beat
    b = burden("VVVVVV", rr, clean=0.5)
    assert (b.ventricular_runs, b.longest_ventricular_run, b.couplets) == (2, 3, 0)
    assert b.pvc_per_min == pytest.approx(12.0)  # 6 PVCs in 30 measurable seconds
    assert b.quality == "degraded"


def test_window_quality_levels() -> None:
    assert [window_quality(c, 60.0) for c in (60.0, 54.0, 53.9, 30.0, 29.9)] == [
        "good",
        "good",
        "degraded",
        "degraded",
        "poor",
    ]
    assert window_quality(0.0, 0.0) == "poor"


def test_only_the_window_is_summarised_and_nothing_is_not_zero() -> None:
    t = np.array([10.0, 20.0, 70.0, 80.0])
    b = ectopy_burden(t, np.array(list("VVNN")), np.full(4, 1000.0), np.arange(90.0), np.ones(90), 90.0, 30.0)
    assert (b.beats, b.pvc, b.covered_s) == (2, 0, 30.0)
    empty = ectopy_burden(t, np.array(list("VVNN")), np.full(4, 1000.0), np.arange(90.0), np.ones(90), 5.0, 5.0)
    assert (empty.beats, empty.pvc_burden, empty.hr_bpm) == (0, None, None)


def test_motion_burst_beats_are_noisy_and_the_rest_keep_the_annotated_burden() -> None:
    x, pvc_s = pvc_strip()
    analysis = analyse_best_lead(x, FS, ["II", "V1"])
    noisy = noisy_beats(analysis)
    t = analysis.r_peaks / FS
    in_burst = (t >= BURST[0]) & (t < BURST[1])
    assert noisy[in_burst].mean() > 0.8
    assert not noisy[(t < BURST[0] - 2) | (t > BURST[1] + 2)].any()
    counted = analysis.symbols[~noisy]
    truth_outside = pvc_s[(pvc_s < BURST[0]) | (pvc_s >= BURST[1])].size
    assert abs(int((counted == "V").sum()) - truth_outside) <= 3
    clean = clean_mask(analysis, noisy)
    assert clean[int(55 * FS) : int(65 * FS)].mean() < 0.2 and clean[int(10 * FS) : int(40 * FS)].all()


def test_without_noisy_beats_the_burst_would_read_as_pvcs() -> None:
    """Why the rule exists: the same strip counted as the forecast path counts it."""
    x, pvc_s = pvc_strip()
    m = analyse_best_lead(x, FS, ["II", "V1"]).measurements
    assert m.pvc_count > pvc_s.size + 10


@pytest.mark.parametrize(
    ("scenario", "seed"), [("vt_onset", 1), ("af_onset", 2), ("flutter_onset", 1), ("sinus_ectopy", 1)]
)
def test_no_noise_found_in_rhythms_without_artifacts(scenario: str, seed: int) -> None:
    """VT (beats alike), AF and flutter (atrial activity before the QRS) and dense ectopy are not noise."""
    rec = generate_scenario(scenario, seed, 4.0, FS, ("II", "V1"), "ambient")
    analysis = analyse_best_lead(rec.p_signal, FS, list(rec.sig_name))
    assert noisy_beats(analysis).sum() <= 2


def test_clean_mask_needs_the_analysis_mask() -> None:
    x, _ = pvc_strip(with_burst=False)
    analysis = analyse_best_lead(x, FS, ["II", "V1"])
    assert not noisy_beats(analysis).any()
    with pytest.raises(ValueError, match="usability mask"):
        clean_mask(
            type(analysis)(analysis.measurements, analysis.r_peaks, analysis.symbols, analysis.features),
            noisy_beats(analysis),
        )


@pytest.mark.parametrize("module", ["_burden", "_noise"])
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(f"core.measurements.{module}"))
    assert result.attempted > 0 and result.failed == 0
