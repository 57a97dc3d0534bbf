from __future__ import annotations

import numpy as np
import pytest

from core.errors import SignalError
from core.settings import QualitySettings, WindowSettings
from core.windows import WindowAssembler, WindowBatch, assess_window, preprocess_record, resample_window

FS = 250.0


def ecg_like(seconds: float, fs: float = FS, seed: int = 0) -> np.ndarray:
    """Spiky 72 bpm train plus baseline wander and mains hum: enough structure to exercise the filters."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    beats = np.exp(-(((t % (60 / 72)) - 0.3) ** 2) / (2 * 0.01**2))
    return beats + 0.4 * np.sin(2 * np.pi * 0.2 * t) + 0.2 * np.sin(2 * np.pi * 50 * t) + rng.normal(0, 0.01, len(t))


def stream(x: np.ndarray, chunk_sizes: list[int], fs: float = FS, start: int = 0) -> list:
    assembler = WindowAssembler(("II",), fs, 0.0, WindowSettings(), QualitySettings())
    out, pos = [], 0
    for n in chunk_sizes:
        if pos >= len(x):
            break
        block = x[pos : pos + n]
        out += assembler.push(start + pos, block[None], ~np.isfinite(block[None]))
        pos += len(block)
    return out


@pytest.mark.parametrize("fs", [128.0, 250.0, 360.0, 500.0, 257.3])
def test_streaming_equals_offline_for_any_chunking(fs: float) -> None:
    x = ecg_like(12, fs)
    rng = np.random.default_rng(1)
    sizes = list(rng.integers(1, int(fs * 1.7), 200))
    windows = stream(x, sizes, fs)
    offline = preprocess_record(x[:, None], fs)
    complete_seconds = sum(1 for k in range(13) if np.ceil((k + 1) * fs) <= len(x))
    assert len(windows) == offline.windows.shape[1] == complete_seconds >= 11

    for k, w in enumerate(windows):
        assert w.second == k
        np.testing.assert_array_equal(w.samples, offline.windows[0, k])
        assert w.samples.shape == (256,)


def test_filters_remove_mains_and_baseline_wander() -> None:
    t = np.arange(int(20 * FS)) / FS
    hum_and_wander = 0.5 * np.sin(2 * np.pi * 50 * t) + 1.0 * np.sin(2 * np.pi * 0.05 * t) + 2.0
    out = preprocess_record(hum_and_wander[:, None], FS)
    assert np.abs(out.windows[0, 10:]).max() < 0.05  # after the filters settle, >95% removed


def test_gap_marks_partial_second_invalid_and_never_splices() -> None:
    x = ecg_like(6)
    assembler = WindowAssembler(("II",), FS, 0.0, WindowSettings(), QualitySettings())
    ok = np.zeros((1, len(x)), bool)
    first = assembler.push(0, x[None, :375], ok[:, :375])  # 1.5 s
    after_gap = assembler.push(1000, x[None, 1000:1500], ok[:, 1000:1500])  # resumes at 4.0 s
    assert [w.second for w in first] == [0]
    assert [(w.second, w.valid, w.reason) for w in after_gap] == [(1, False, "gap"), (4, True, None), (5, True, None)]


def test_resume_mid_second_after_gap_is_invalid() -> None:
    x = ecg_like(6)
    assembler = WindowAssembler(("II",), FS, 0.0, WindowSettings(), QualitySettings())
    assembler.push(0, x[None, :250], np.zeros((1, 250), bool))
    out = assembler.push(600, x[None, 600:1000], np.zeros((1, 400), bool))
    assert [(w.second, w.reason) for w in out] == [(2, "gap"), (3, None)]


def test_invalid_samples_invalidate_their_window_only() -> None:
    x = ecg_like(4)
    x[300] = np.nan
    windows = stream(x, [100] * 10)
    assert [w.reason for w in windows] == [None, "invalid_samples", None, None]
    assert all(np.isfinite(w.samples).all() for w in windows)


def test_invalid_samples_on_one_lead_leave_the_other_lead_identical() -> None:
    x = ecg_like(4)
    both = np.vstack([x, x])
    both[0, 300:320] = np.nan
    assembler = WindowAssembler(("II", "V1"), FS, 0.0, WindowSettings(), QualitySettings())
    out = [
        w
        for k in range(0, 1000, 100)
        for w in assembler.push(k, both[:, k : k + 100], ~np.isfinite(both[:, k : k + 100]))
    ]
    reference = preprocess_record(x[:, None], FS)
    v1 = [w for w in out if w.lead == "V1"]
    assert [w.reason for w in out if w.lead == "II"] == [None, "invalid_samples", None, None]
    for k, w in enumerate(v1):
        np.testing.assert_array_equal(w.samples, reference.windows[0, k])


def test_quality_verdicts() -> None:
    q = QualitySettings()
    x = ecg_like(1)[:250]
    noisy = x + np.random.default_rng(0).normal(0, 1.0, 250)
    leads = np.vstack([x, np.full(250, 0.3), np.clip(x * 30, -12, 12), noisy])
    assert assess_window(leads, FS, q) == [None, "leads_off", "saturated", "noisy"]


def test_resample_keeps_endpoints() -> None:
    y = resample_window(np.arange(250, dtype=float))
    assert y.shape == (256,) and y[0] == 0 and y[-1] == 249


def test_preprocess_record_checks_inputs() -> None:
    with pytest.raises(SignalError, match="p_signal must be 2-D"):
        preprocess_record(np.zeros(10), FS)
    with pytest.raises(SignalError, match="fs must be positive"):
        preprocess_record(np.zeros((10, 1)), 0.0)


def _plan(seed: int, fs: float) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A 2-lead record and its (start, stop) blocks: uneven sizes, one gap, one invalid run."""
    rng = np.random.default_rng(seed)
    x = np.vstack([ecg_like(12, fs, seed), 0.5 * ecg_like(12, fs, seed + 1)])
    x[1, int(3.2 * fs) : int(3.5 * fs)] = np.nan
    blocks, pos = [], 0
    while pos < x.shape[1]:
        n = int(rng.integers(30, 400))
        blocks.append((pos, min(pos + n, x.shape[1])))
        pos += n + (int(1.7 * fs) if len(blocks) == 6 else 0)  # one gap after the sixth block
    return x, blocks


def test_a_shared_batch_gives_the_windows_of_pushing_each_assembler_alone() -> None:
    """Patients at two rates, several blocks of the same patient per batch: bit-identical to one-by-one pushes."""
    patients = [_plan(seed, fs) for seed, fs in ((1, 250.0), (2, 250.0), (3, 360.0), (4, 250.0))]

    def assembler(fs: float) -> WindowAssembler:
        return WindowAssembler(("II", "V1"), fs, 0.0, WindowSettings(), QualitySettings())

    alone = []
    for (x, blocks), fs in zip(patients, (250.0, 250.0, 360.0, 250.0), strict=True):
        a = assembler(fs)
        alone.append(
            [w for start, stop in blocks for w in a.push(start, x[:, start:stop], ~np.isfinite(x[:, start:stop]))]
        )

    shared = [assembler(fs) for fs in (250.0, 250.0, 360.0, 250.0)]
    together: list[list] = [[] for _ in patients]
    n_blocks = max(len(blocks) for _, blocks in patients)
    for first in range(0, n_blocks, 3):  # three blocks of every patient per batch
        batch = WindowBatch()
        tickets = []
        for p, (x, blocks) in enumerate(patients):
            for start, stop in blocks[first : first + 3]:
                block = x[:, start:stop]
                tickets.append((p, batch.add(shared[p], start, block, ~np.isfinite(block))))
        results = batch.run()
        for p, ticket in tickets:
            together[p] += results[ticket]

    for mine, ref in zip(together, alone, strict=True):
        assert [(w.lead, w.second, w.valid, w.reason) for w in mine] == [
            (w.lead, w.second, w.valid, w.reason) for w in ref
        ]
        assert all(np.array_equal(a.samples, b.samples) for a, b in zip(mine, ref, strict=True))
    assert any(w.reason == "gap" for w in alone[0]) and any(w.reason == "invalid_samples" for w in alone[0])


def _as_offline(windows: list, n_sig: int) -> tuple[np.ndarray, list[list]]:
    """Streamed windows (second, then lead) as preprocess_record's (n_sig, n_seconds, 256) array and reasons."""
    n_seconds = len(windows) // n_sig
    grid = [[windows[s * n_sig + i] for s in range(n_seconds)] for i in range(n_sig)]
    return np.array([[w.samples for w in lead] for lead in grid]), [[w.reason for w in lead] for lead in grid]


def test_whole_second_chunks_match_the_offline_windows_exactly() -> None:
    """1-s chunks take the batch's whole-second lane (no cutting); a patient sending 0.6-s chunks shares their filter
    call and is cut as usual, sometimes twice per batch. Both reproduce preprocess_record bit for bit."""
    x_whole = np.vstack([ecg_like(8, FS, 5), 0.5 * ecg_like(8, FS, 6)])
    x_cut = np.vstack([ecg_like(8, FS, 7), np.full(8 * int(FS), 0.02)])  # lead 2 is a flat line: leads_off
    new = [WindowAssembler(("II", "V1"), FS, 0.0, WindowSettings(), QualitySettings()) for _ in range(2)]
    streamed: list[list] = [[], []]
    step, pos = 150, 0
    for k in range(8):
        batch = WindowBatch()
        first, stop = k * int(FS), (k + 1) * int(FS)
        assert new[0].spans_one_second(stop - first)
        tickets = [(0, batch.add(new[0], first, x_whole[:, first:stop], None))]
        while pos < stop:
            tickets.append((1, batch.add(new[1], pos, x_cut[:, pos : pos + step], None)))
            pos += step
        results = batch.run()
        for p, ticket in tickets:
            streamed[p] += results[ticket]
    for x, windows in zip((x_whole, x_cut), streamed, strict=True):
        offline = preprocess_record(x.T, FS, sig_name=["II", "V1"])
        samples, reasons = _as_offline(windows, 2)
        n = offline.windows.shape[1]
        assert np.array_equal(samples[:, :n], offline.windows)
        assert reasons[0][:n] == offline.reasons[0] and reasons[1][:n] == offline.reasons[1]
    assert set(_as_offline(streamed[1], 2)[1][1]) == {"leads_off"}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_resampling_in_row_blocks_equals_the_one_expression_formula(dtype: type) -> None:
    x = np.random.default_rng(2).normal(size=(3, 45, 257)).astype(dtype)  # 135 rows: several blocks and a tail
    pos = np.linspace(0.0, 256, 256)
    left = np.minimum(pos.astype(int), 255)
    expected = (x[..., left] * (1.0 - (pos - left)) + x[..., left + 1] * (pos - left)).astype(np.float32)
    assert np.array_equal(resample_window(x), expected)
