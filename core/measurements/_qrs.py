"""A Pan–Tompkins-style QRS detector of our own: band-pass, derivative, squaring, moving-window integration,
adaptive signal/noise thresholds with a refractory period, T-wave rejection and search-back.

Every decision uses only samples up to the candidate (the filters are causal), so the same logic can run on a live
stream; only the final placement of the R peak looks ±100 ms around the detection on a zero-phase filtered copy.
Detection runs separately inside each usable segment (see :mod:`._quality`), so thresholds relearn after lead-off.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.signal import butter, find_peaks, group_delay, lfilter, sos2tf, sosfilt, sosfilt_zi

from ._checks import check_fs, check_sig
from ._quality import band_limited, usable_mask, usable_segments

__all__ = ["DetectorConfig", "detect_qrs", "detect_qrs_in_mask"]


@dataclass(frozen=True)
class DetectorConfig:
    """Detector constants; the defaults are Pan & Tompkins (1985) values unless a reason says otherwise."""

    band_hz: tuple[float, float] = (5.0, 15.0)  # QRS energy peaks here; wander/P/T lie below, EMG and mains above
    band_order: int = 2  # 4th-order band-pass overall: steep enough, short ringing
    integration_s: float = 0.150  # about the widest QRS, so each complex gives one integrated lump
    refractory_s: float = 0.200  # a ventricle cannot depolarise twice within 200 ms
    t_wave_s: float = 0.360  # a candidate this soon after a QRS may be its T wave ...
    t_wave_slope_ratio: float = 0.5  # ... and is taken as one if its steepest slope is under half the last QRS's
    learn_s: float = 2.0  # thresholds start from the first 2 s of each usable segment
    relearn_s: float = 3.0  # 3 s without a beat (under 20 bpm): the levels are stale, relearn them
    searchback_rr: float = 1.66  # no QRS for 1.66 × recent RR: look back for a missed beat at half threshold
    locate_band_hz: tuple[float, float] = (0.5, 40.0)  # diagnostic-ish band for placing the R peak itself
    locate_halfwidth_s: float = 0.100  # the R peak is sought ±100 ms around the expected QRS centre


def detect_qrs(sig_mv: npt.ArrayLike, fs: float, *, config: DetectorConfig | None = None) -> npt.NDArray[np.int64]:
    """Detect R peaks in one ECG lead.

    Parameters
    ----------
    sig_mv : array_like, shape (sig_len,)
        One lead in mV. NaN stretches, flat (lead-off) and saturated stretches are treated as unusable.
    fs : float
        Sampling rate in Hz (100–2000; designed for 128–1000).
    config : DetectorConfig, optional
        Detector constants; defaults follow Pan & Tompkins.

    Returns
    -------
    numpy.ndarray of int64, shape (n_beats,)
        Sample indices of the R peaks (the largest deflection of each QRS), strictly increasing.

    Raises
    ------
    core.errors.SignalError
        If ``sig_mv`` is not 1-D real numbers or is empty, or ``fs`` is not a valid rate.

    Examples
    --------
    >>> import numpy as np
    >>> from core.measurements import detect_qrs
    >>> fs = 250.0
    >>> t = np.arange(int(10 * fs)) / fs
    >>> sig_mv = sum(np.exp(-(((t - b) / 0.012) ** 2)) for b in np.arange(0.5, 10, 1.0))  # 60 bpm spikes
    >>> detect_qrs(sig_mv, fs).size
    10
    >>> detect_qrs(np.zeros(2500), fs).size  # a flat line (lead off) has no beats
    0
    """
    sig = check_sig(sig_mv)
    fs = check_fs(fs)
    return detect_qrs_in_mask(sig, fs, usable_mask(sig, fs), config)


def detect_qrs_in_mask(
    sig_mv: npt.NDArray[np.float64],
    fs: float,
    usable: npt.NDArray[np.bool_],
    config: DetectorConfig | None = None,
) -> npt.NDArray[np.int64]:
    """Detect R peaks inside the usable segments of a checked signal (shared by :func:`detect_qrs` and ``measure``)."""
    cfg = config or DetectorConfig()
    loc = band_limited(sig_mv, fs, usable, cfg.locate_band_hz)
    found = [
        start + _detect_segment(sig_mv[start:end], loc[start:end], fs, cfg) for start, end in usable_segments(usable)
    ]
    return np.concatenate(found).astype(np.int64) if found else np.zeros(0, dtype=np.int64)


def _detect_segment(
    x: npt.NDArray[np.float64], loc: npt.NDArray[np.float64], fs: float, cfg: DetectorConfig
) -> npt.NDArray[np.int64]:
    """R peaks of one finite, usable segment (``loc``: its band-limited copy), indices relative to its start."""
    sos = butter(cfg.band_order, cfg.band_hz, btype="bandpass", fs=fs, output="sos")
    delay = _band_delay_samples(sos, fs, cfg) + 2  # + 2: the derivative's own delay
    # Hold the last value for a moment, as a live stream would wait, so a beat at the very end is still seen.
    held = np.concatenate((x, np.full(round((cfg.integration_s + cfg.refractory_s) * fs) + delay, x[-1])))
    band, _ = sosfilt(sos, held, zi=sosfilt_zi(sos) * x[0])
    taps = np.array([1.0, 2.0, 0.0, -2.0, -1.0]) * (fs / 8.0)  # Pan–Tompkins five-point derivative
    deriv = lfilter(taps, [1.0], band)
    win = max(1, round(cfg.integration_s * fs))
    mwi = lfilter(np.ones(win) / win, [1.0], deriv**2)
    refractory = max(1, round(cfg.refractory_s * fs))
    candidates, _ = find_peaks(mwi, distance=refractory)
    if candidates.size == 0:
        return np.zeros(0, dtype=np.int64)
    slope = _window_max(np.abs(deriv), win)[candidates]
    chosen = _threshold_candidates(candidates, mwi, slope, fs, cfg)
    centres = candidates[chosen] - win // 2 - delay
    return _locate_r_peaks(loc, fs, centres[centres < x.size], cfg)


def _window_max(a: npt.NDArray[np.float64], win: int) -> npt.NDArray[np.float64]:
    """Causal running maximum over the last ``win`` samples."""
    padded = np.concatenate((np.full(win - 1, a[0]), a))
    out: npt.NDArray[np.float64] = np.lib.stride_tricks.sliding_window_view(padded, win).max(axis=1)
    return out


def _band_delay_samples(sos: npt.NDArray[np.float64], fs: float, cfg: DetectorConfig) -> int:
    """Group delay of the QRS band-pass at its centre frequency, in samples."""
    b, a = sos2tf(sos)
    centre_hz = float(np.sqrt(cfg.band_hz[0] * cfg.band_hz[1]))
    _, gd = group_delay((b, a), w=[centre_hz], fs=fs)
    return round(float(gd[0]))


def _threshold_candidates(
    cand: npt.NDArray[np.intp],
    mwi: npt.NDArray[np.float64],
    slope: npt.NDArray[np.float64],
    fs: float,
    cfg: DetectorConfig,
) -> list[int]:
    """Pan–Tompkins adaptive thresholding over integrated-signal peaks; returns positions in ``cand`` kept as QRS.

    Beyond Pan–Tompkins: after ``relearn_s`` without a beat (an artifact inflated the signal level, or the
    amplitude dropped) both levels are relearned from the last ``learn_s`` of the integrated signal.
    """
    height = mwi[cand]
    learn_n, relearn_n = round(cfg.learn_s * fs), round(cfg.relearn_s * fs)
    spki, npki = _learn_levels(mwi[:learn_n])
    recent_rr: deque[int] = deque(maxlen=8)
    kept: list[int] = []
    last_event = 0  # sample of the last beat or relearning
    for k in range(cand.size):
        if cand[k] - last_event > relearn_n:
            spki, npki = _learn_levels(mwi[max(0, cand[k] - learn_n) : cand[k]])
            last_event = int(cand[k])
        thr = npki + 0.25 * (spki - npki)
        # Search back, repeatedly: at a VT onset several wide, low-slope beats in a row can fall under threshold.
        while (
            kept and len(recent_rr) >= 2 and cand[k] - cand[kept[-1]] > cfg.searchback_rr * statistics.median(recent_rr)
        ):
            back = _search_back(cand, height, kept[-1], k, 0.5 * thr, round(cfg.refractory_s * fs))
            if back is None:
                break
            recent_rr.append(int(cand[back] - cand[kept[-1]]))
            kept.append(back)
            spki = 0.25 * height[back] + 0.75 * spki
        gap = cand[k] - cand[kept[-1]] if kept else np.inf
        is_t_wave = gap < cfg.t_wave_s * fs and slope[k] < cfg.t_wave_slope_ratio * slope[kept[-1]]
        if height[k] <= thr or is_t_wave:
            npki = 0.125 * height[k] + 0.875 * npki
            continue
        if kept:
            recent_rr.append(int(gap))
        kept.append(k)
        last_event = int(cand[k])
        spki = 0.125 * height[k] + 0.875 * spki
    return kept


def _learn_levels(mwi: npt.NDArray[np.float64]) -> tuple[float, float]:
    """Initial signal and noise peak levels (SPKI, NPKI) from a stretch of the integrated signal."""
    if mwi.size == 0:
        return 0.0, 0.0
    return 0.25 * float(mwi.max()), 0.5 * float(mwi.mean())


def _search_back(
    cand: npt.NDArray[np.intp], height: npt.NDArray[np.float64], last: int, now: int, thr: float, refractory: int
) -> int | None:
    """The tallest candidate strictly between ``last`` and ``now`` above ``thr`` and outside refractory, if any."""
    between = np.arange(last + 1, now)
    between = between[(cand[between] - cand[last] >= refractory) & (cand[now] - cand[between] >= refractory)]
    between = between[height[between] > thr]
    if between.size == 0:
        return None
    return int(between[np.argmax(height[between])])


def _locate_r_peaks(
    loc: npt.NDArray[np.float64], fs: float, centres: npt.NDArray[np.intp], cfg: DetectorConfig
) -> npt.NDArray[np.int64]:
    """Place each beat on the largest deflection from the local baseline within ±halfwidth of its expected centre."""
    half = max(1, round(cfg.locate_halfwidth_s * fs))
    idx = np.clip(centres[:, None] + np.arange(-half, half + 1)[None, :], 0, loc.size - 1)  # (n_beats, 2*half+1)
    windows = loc[idx]
    dev = np.abs(windows - np.median(windows, axis=1, keepdims=True))
    peaks: npt.NDArray[np.int64] = idx[np.arange(idx.shape[0]), np.argmax(dev, axis=1)].astype(np.int64)
    if peaks.size < 2:
        return peaks
    keep = np.concatenate(([True], np.diff(peaks) >= round(cfg.refractory_s * fs)))
    return peaks[keep]
