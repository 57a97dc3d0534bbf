"""rhythm_spans: the measured strip in 10-s spans ending at its last sample, with the rate, the NN irregular index
and the ventricular share a present-rhythm alert reads (synthetic rhythm presets, generator v1)."""

from __future__ import annotations

import numpy as np
import pytest

from core.measurements import RHYTHM_SPAN_S, analyse_best_lead, analyse_lead, measure_leads, rhythm_spans
from simulators.scenarios import generate_rhythm

FS = 250.0
AF_FROM = 0.08  # alerts.defaults.present_rhythm.af.min_irregular_index


def spans_of(preset: str, seed: int = 0, seconds: float = 40.0) -> list:
    record = generate_rhythm(preset, seconds=seconds, seed=seed, fs=FS, leads=("II", "V1"))
    return list(rhythm_spans(analyse_best_lead(record.p_signal, FS, record.sig_name)))


def test_spans_end_at_the_strip_end_and_drop_the_leftover_at_its_start() -> None:
    t = np.arange(int(35 * FS)) / FS
    sig = sum(np.exp(-(((t - b) / 0.012) ** 2)) for b in np.arange(0.4, 35, 0.8))
    spans = rhythm_spans(analyse_lead(sig, FS, "II"))
    assert [(s.start_s, s.end_s) for s in spans] == [(5.0, 15.0), (15.0, 25.0), (25.0, 35.0)]
    assert all(round(s.hr_bpm or 0) == 75 and s.rr_irregular_index == 0.0 for s in spans)
    assert rhythm_spans(analyse_lead(sig[: int(9 * FS)], FS, "II")) == ()  # shorter than one span
    with pytest.raises(ValueError, match="span_s"):
        rhythm_spans(analyse_lead(sig, FS, "II"), span_s=0.0)
    assert RHYTHM_SPAN_S == 10.0


def test_analyse_best_lead_is_measure_leads_with_the_beats_kept() -> None:
    record = generate_rhythm("sinus_pac", seconds=30, seed=1, fs=FS, leads=("II", "V1"))
    analysis = analyse_best_lead(record.p_signal, FS, record.sig_name)
    assert analysis.measurements == measure_leads(record.p_signal, FS, record.sig_name)
    assert analysis.r_peaks.size == analysis.symbols.size == analysis.measurements.n_beats


@pytest.mark.parametrize("seed", [0, 1])
def test_af_reads_irregularly_irregular_in_every_span(seed: int) -> None:
    spans = spans_of("af", seed)
    assert all(s.rr_irregular_index is not None and s.rr_irregular_index >= AF_FROM for s in spans), spans


@pytest.mark.parametrize("preset", ["sinus", "sinus_brady", "sinus_tachy", "sinus_pac", "bigeminy", "flutter_2to1"])
def test_regular_rhythms_and_repeating_patterns_do_not(preset: str) -> None:
    """Sinus with PACs (left out of NN), bigeminy (the interval two beats back matches), 2:1 flutter (regular)."""
    for seed in (0, 1):
        for s in spans_of(preset, seed):
            assert s.rr_irregular_index is None or s.rr_irregular_index < AF_FROM, (preset, seed, s)


def test_vt_reads_ventricular_fast_and_still_going() -> None:
    for s in spans_of("vt"):
        assert s.hr_bpm is not None and s.hr_bpm > 150
        assert s.ventricular_fraction is not None and s.ventricular_fraction >= 0.9
        assert s.longest_ventricular_run >= 3 and s.trailing_ventricular_run >= 3
        assert s.rr_irregular_index is None  # no normal-to-normal intervals: AF cannot be judged, and is not claimed


def test_sinus_has_no_ventricular_run() -> None:
    assert all(s.ventricular_fraction == 0.0 and s.trailing_ventricular_run == 0 for s in spans_of("sinus"))
