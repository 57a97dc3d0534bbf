"""Noise that rivals the QRS: which beats of an analysed lead sit in a burst of electrode motion or muscle noise,
and which samples of it can be measured at all.

Why a test beside the usability mask and :func:`._beats.artifact_beats`: a burst of electrode motion in the ECG's
own band (0.5-10 Hz, about a millivolt) is neither flat nor saturated, passes the ingest's per-second spectral test
(its power is below 40 Hz), and the "beats" the detector finds in it still resemble their neighbours at 0.85-0.95,
above the artifact rule's 0.85. They measure wide and unlike the normal beat, so they were labelled 'V' by the
dozen: a 20-s burst in a 5-min strip at a 20 % PVC burden read 26 %.

What gives such a beat away is the signal *before* its QRS: 250-100 ms before R a clean lead carries a P wave or
a flat baseline (a tenth of the QRS or less), a noise burst carries noise as large as the QRS. Ventricular
tachycardia and flutter also fill that stretch (the previous beat's T wave, flutter waves), but their beats are
near copies of each other, which noise never makes. Both parts are running medians over 5 beats, so one odd beat
(a PVC whose T wave precedes the next beat) is not a burst.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.ndimage import maximum_filter1d

from ._beats import _nan_running_median
from ._metrics import LeadAnalysis
from ._quality import beat_stretches

__all__ = ["NoiseConfig", "clean_mask", "noisy_beats"]


@dataclass(frozen=True)
class NoiseConfig:
    """Thresholds of :func:`noisy_beats`, and why they have these values (docs/MEASUREMENTS.md has the numbers)."""

    pre_qrs_ratio: float = 0.4  # activity 250-100 ms before R at 40 % of the beat's own QRS or more: noise rivals it
    max_alike: float = 0.97  # ... in beats less alike than this to their neighbours: VT and flutter beats are copies
    smooth_beats: int = 5  # running median over this many beats: one odd beat is not a burst
    bridge_beats: int = 2  # up to this many beats between two noisy ones are in the burst too (its median dips)
    margin_beats: int = 1  # and this many beats either side of it (the running median is late at the edges)


def noisy_beats(analysis: LeadAnalysis, config: NoiseConfig | None = None) -> npt.NDArray[np.bool_]:
    """Per beat of ``analysis``: True where the stretch around it is noise as large as the QRS (see the module
    docstring). Their labels mean nothing; a caller counting ectopy leaves them out.

    Examples
    --------
    >>> import numpy as np
    >>> from core.measurements import analyse_lead, noisy_beats
    >>> fs = 250.0
    >>> t = np.arange(int(30 * fs)) / fs
    >>> sig_mv = sum(np.exp(-(((t - b) / 0.012) ** 2)) for b in np.arange(0.4, 30, 0.8))  # clean, 75 bpm
    >>> bool(noisy_beats(analyse_lead(sig_mv, fs, "II")).any())
    False
    """
    cfg = config or NoiseConfig()
    features = analysis.features
    if features.qrs_amp_mv.size == 0:
        return np.zeros(0, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = features.pre_qrs_amp_mv / features.qrs_amp_mv  # NaN where a window left the usable signal
    ratio = np.where(np.isfinite(ratio), ratio, np.nan)
    rivalled = _nan_running_median(ratio, cfg.smooth_beats)  # +inf where nothing is measurable
    alike = _nan_running_median(features.neighbour_corr, cfg.smooth_beats)
    noisy = np.isfinite(rivalled) & (rivalled >= cfg.pre_qrs_ratio) & (alike < cfg.max_alike)
    return _widened(noisy, cfg.bridge_beats, cfg.margin_beats)


def _widened(noisy: npt.NDArray[np.bool_], bridge: int, margin: int) -> npt.NDArray[np.bool_]:
    """Close gaps of up to ``bridge`` beats between noisy beats, then add ``margin`` beats either side."""
    idx = np.flatnonzero(noisy)
    out = noisy.copy()
    bridged = (np.diff(idx) > 1) & (np.diff(idx) <= bridge + 1)
    for first, last in zip(idx[:-1][bridged], idx[1:][bridged], strict=True):
        out[first:last] = True
    if margin > 0 and out.any():
        out = maximum_filter1d(out.astype(np.uint8), size=2 * margin + 1, mode="constant") > 0
    return out


def clean_mask(analysis: LeadAnalysis, noisy: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Per sample of the analysed strip: usable (finite, not flat, not saturated, not motion) and outside the
    stretches of the ``noisy`` beats (halfway to each neighbour), i.e. the signal an ectopy count can rest on."""
    usable = analysis.usable
    if usable is None:
        raise ValueError("this LeadAnalysis carries no usability mask (built by hand, not by analyse_lead)")
    return usable & ~beat_stretches(analysis.r_peaks, noisy, usable.size)
