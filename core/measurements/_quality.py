"""Which samples of a lead can be measured at all: not NaN, not flat (lead off), not railed or swamped by artifact.

A measurement taken on a stretch of lead-off or saturation is garbage that looks like data, so these stretches are
found first and every later step works only inside the usable segments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.ndimage import maximum_filter1d, minimum_filter1d
from scipy.signal import butter, sosfiltfilt

__all__ = ["QualityConfig", "band_limited", "beat_stretches", "run_bounds", "usable_mask", "usable_segments"]


@dataclass(frozen=True)
class QualityConfig:
    """Thresholds of the usability mask; defaults chosen for surface ECG in mV."""

    window_s: float = 2.0  # longest normal RR (30 bpm): every window of a live lead holds at least one QRS
    flat_ptp_mv: float = 0.05  # a lead whose 2-s peak-to-peak stays below 50 µV shows no QRS: lead off or flat line
    max_ptp_mv: float = 10.0  # surface QRS rarely exceeds 5 mV; swings of 10 mV are saturation or motion artifact
    margin_s: float = 0.3  # filters need this long to settle after a gap, so the edges of a bad stretch go too
    min_segment_s: float = 2.0  # a usable island shorter than this cannot train the detector's adaptive thresholds


def run_bounds(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """Return ``(n_runs, 2)`` half-open ``[start, end)`` bounds of the True runs of a 1-D boolean mask."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return edges.reshape(-1, 2).astype(np.int64)  # (2 * n_runs,) -> (n_runs, 2)


def usable_mask(
    sig_mv: npt.NDArray[np.float64], fs: float, config: QualityConfig | None = None
) -> npt.NDArray[np.bool_]:
    """Per-sample usability of one lead: finite, not flat, not saturated, in a stretch long enough to measure.

    Inputs are assumed checked (1-D float, valid ``fs``); see :func:`core.measurements.measure` for the public edge.
    """
    cfg = config or QualityConfig()
    finite = np.isfinite(sig_mv)
    if not finite.any():
        return np.zeros(sig_mv.shape, dtype=bool)
    win = max(3, round(cfg.window_s * fs))
    filled = np.where(finite, sig_mv, np.nan)
    hi = maximum_filter1d(np.where(finite, filled, -np.inf), size=win, mode="nearest")
    lo = minimum_filter1d(np.where(finite, filled, np.inf), size=win, mode="nearest")
    ptp = hi - lo
    bad = ~finite | ~np.isfinite(ptp) | (ptp < cfg.flat_ptp_mv) | (ptp > cfg.max_ptp_mv)
    margin = round(cfg.margin_s * fs)
    if margin > 0 and bad.any():
        bad = maximum_filter1d(bad.astype(np.uint8), size=2 * margin + 1, mode="constant") > 0  # dilation
    good: npt.NDArray[np.bool_] = ~bad
    min_len = round(cfg.min_segment_s * fs)
    for start, end in run_bounds(good):
        if end - start < min_len:
            good[start:end] = False
    return good


def usable_segments(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """Half-open ``(start, end)`` sample bounds of the usable stretches of a mask from :func:`usable_mask`."""
    return [(int(s), int(e)) for s, e in run_bounds(mask)]


def band_limited(
    sig_mv: npt.NDArray[np.float64], fs: float, usable: npt.NDArray[np.bool_], band_hz: tuple[float, float]
) -> npt.NDArray[np.float64]:
    """Zero-phase band-pass of each usable segment (NaN elsewhere): the copy used to place and measure QRS shapes.

    Filtering segment by segment keeps the step at a lead-off edge from ringing into the usable signal.
    """
    out = np.full(sig_mv.shape, np.nan)
    sos = butter(2, band_hz, btype="bandpass", fs=fs, output="sos")
    for start, end in usable_segments(usable):
        out[start:end] = sosfiltfilt(sos, sig_mv[start:end], padlen=min(end - start - 1, 3 * round(fs)))
    return out


def beat_stretches(
    r_peaks: npt.NDArray[np.int64], flagged: npt.NDArray[np.bool_], sig_len: int
) -> npt.NDArray[np.bool_]:
    """Samples belonging to the flagged beats: from halfway to the previous beat to halfway to the next one."""
    mask = np.zeros(sig_len, dtype=bool)
    if r_peaks.size == 0:
        return mask
    bounds = np.concatenate(([0], (r_peaks[:-1] + r_peaks[1:]) // 2, [sig_len]))
    for i in np.flatnonzero(flagged):
        mask[bounds[i] : bounds[i + 1]] = True
    return mask
