"""Beat-centred windows for the beat-type probe: centring, skipping, labels, and the agent's filtering."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.windows import preprocess_record, resample_window
from encoder_onnx.beat_probe import beat_windows, centred_windows, cut_beat_windows, filtered_signal
from encoder_onnx.data import DataSpec, WindowSet, build_window_set
from encoder_onnx.evaluate import BEAT_FEATURES, beat_probe_report
from encoder_onnx.model import ConvEncoder

FS = 250.0


def tent(sig_len: int, peak: int) -> np.ndarray:
    """(1, sig_len) signal with a sharp symmetric peak at sample ``peak``."""
    return -np.abs(np.arange(sig_len, dtype=np.float64) - peak)[None, :]


@pytest.mark.parametrize("fs", [128.0, 250.0, 251.0, 360.0])
def test_beat_sample_lands_at_the_window_centre(fs: float) -> None:
    peak = 3 * int(fs)
    w = centred_windows(tent(6 * int(fs), peak), fs, np.array([peak]))[0, 0]
    assert w.shape == (256,)
    np.testing.assert_allclose(w, w[::-1], atol=1e-4)  # symmetric about output position 127.5
    assert set(np.argsort(w)[-2:].tolist()) == {127, 128}
    # the span is the agent's 1-s window: round(fs) - 1 sample intervals from first to last output
    assert w[0] == pytest.approx(-(round(fs) - 1) / 2, abs=1e-4)


def test_odd_window_is_the_agents_resampling_of_the_samples_around_the_beat() -> None:
    x = np.random.default_rng(0).normal(size=(2, 1000))
    beat, half = 500, (251 - 1) // 2
    got = centred_windows(x, 251.0, np.array([beat]))[:, 0]
    np.testing.assert_allclose(got, resample_window(x[:, beat - half : beat + half + 1]), atol=1e-6)


def ecg_like(seconds: int) -> np.ndarray:
    """(seconds * FS, 2) mV: a clean 1.2 Hz + 8 Hz waveform the agent judges valid on both leads."""
    t = np.arange(int(seconds * FS)) / FS
    lead = 0.8 * np.sin(2 * np.pi * 1.2 * t) + 0.4 * np.sin(2 * np.pi * 8 * t)
    return np.stack([lead, 0.5 * lead], axis=1)


def test_windows_leaving_the_record_or_touching_invalid_seconds_are_skipped() -> None:
    p_signal = ecg_like(5)
    p_signal[500:750, 1] = 0.0  # lead 1, second 2: flat, "leads_off"
    assert preprocess_record(p_signal, FS).valid.tolist() == [[True] * 5, [True, True, False, True, True]]
    samples = np.array([60, 300, 400, 620, 800, 1180])
    symbols = np.array(["N", "V", "Q", "A", "N", "V"])
    beats = beat_windows(p_signal, FS, samples, symbols)
    assert beats.windows.shape == (2, 6, 256)
    assert beats.label.tolist() == ["N", "V", "", "A", "N", "V"]  # "Q" is not a generator symbol: unmapped
    assert beats.second.tolist() == [0, 1, 1, 2, 3, 4]
    assert beats.usable.tolist() == [
        # 60 and 1180: window leaves the record; 400: unmapped; 620, 800: touch second 2, invalid on lead 1
        [False, True, False, True, True, False],
        [False, True, False, False, False, False],
    ]


def test_windows_come_from_the_agents_filtered_signal() -> None:
    p_signal = ecg_like(4)
    p_signal[:, 0] += 1.5  # a DC offset the high-pass removes without a start-up transient
    y = filtered_signal(p_signal, FS)
    agent = preprocess_record(p_signal, FS).windows  # (n_sig, n_sec, 256)
    ours = np.stack([resample_window(y[:, s * 250 : (s + 1) * 250]) for s in range(4)], axis=1)
    np.testing.assert_array_equal(ours, agent)
    beats = beat_windows(p_signal, FS, np.array([375]), np.array(["N"]))
    np.testing.assert_allclose(beats.windows[:, 0], centred_windows(y, FS, np.array([375]))[:, 0])


def test_cut_of_a_synthetic_patient_is_a_window_set() -> None:
    spec = DataSpec(n_records=1, minutes=0.25)
    data = build_window_set(spec, cut=cut_beat_windows)
    n = len(data.windows)
    assert n > 0 and data.windows.shape == (n, 256) and data.valid.all()
    assert set(data.beat.tolist()) <= {"N", "A", "V"}
    fields = [getattr(data, name) for name in WindowSet.__dataclass_fields__]
    assert all(len(f) == n for f in fields if f is not None)
    assert data.beat_bins is None  # beat positions belong to lead-seconds, not to beat-centred windows
    assert np.all(np.diff(data.second[data.lead == data.lead[0]]) >= 0)  # one lead's beats in time order


def test_beat_probe_reports_all_beats_and_beats_outside_vt() -> None:
    rng = np.random.default_rng(1)
    beat = np.array(["N"] * 60 + ["A"] * 20 + ["V"] * 40)
    rhythm = np.array(["(N"] * 80 + ["(VT"] * 20 + ["(N"] * 20)
    shapes = {"N": 0.0, "A": 1.0, "V": -1.0}
    windows = (rng.normal(0, 0.1, (120, 256)) + np.array([shapes[b] for b in beat])[:, None]).astype(np.float32)
    n = len(beat)
    data = WindowSet(
        windows=windows,
        valid=np.ones(n, bool),
        record=np.arange(n, dtype=np.int32) % 2,
        lead=np.zeros(n, np.int32),
        second=np.arange(n, dtype=np.int32),
        rhythm=rhythm,
        beat=beat,
        noise=np.full(n, "none"),
        scenario=np.full(n, "sinus_ectopy"),
        fs=np.full(n, FS, np.float32),
    )
    torch.manual_seed(0)
    train, test = np.flatnonzero(data.record == 0), np.flatnonzero(data.record == 1)
    every, outside_vt = beat_probe_report(ConvEncoder(), data, (train, test))
    assert every.features == outside_vt.features == BEAT_FEATURES
    assert every.classes == outside_vt.classes == ["A", "N", "V"]
    assert every.n_test == 60 and outside_vt.n_test == 50  # the 10 test beats in "(VT" are left out
