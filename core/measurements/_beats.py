"""Beat labelling: 'N' normal, 'A' premature narrow (PAC), 'V' ventricular (wide or unlike the dominant beat).

The rules are deliberately simple and explainable, so a nurse-facing count can be traced to a reason:

1. Morphology. Each QRS (±100 ms around R, 0.5–40 Hz) is compared with the normal template (the median of the
   most populous narrow shape cluster) by Pearson correlation, best over ±40 ms of lag, and by QRS width. A beat is
   'V' if it correlates poorly *and* is clearly wider than the normal beat, or is very much wider whatever its
   shape (two single upright waves of different width still correlate ~0.8 after lag alignment), or if it is
   premature with a full compensatory pause in a regular rhythm and is wider and only loosely alike. Requiring
   width as well as shape keeps fibrillatory waves riding on a QRS (which lower its correlation) from turning
   normal beats into PVCs; and relatively wide counts only at ≥ 120 ms (the clinical wide-QRS bound) unless the
   beat is early or in a VT-like run, since f-waves stretch a 60-ms conducted beat to 90-110 ms.
1b. Wide dominant beat. Without a narrow cluster the normal beat is the largest wide cluster whose own rhythm is
   not VT-like (bundle-branch block: as wide as a PVC, so there width cannot separate the two, and shape alone, or
   timing with a QRS area ≥ 1.2× larger or smaller, decides). A wide beat is 'V' by rate when it sits in a
   regular run at ≥ 115/min that was entered abruptly (or starts the strip): sustained VT, however alike it looks
   to the conducted beat on this lead. Sinus tachycardia with bundle-branch block ramps up and is not called VT.
2. Irregular rhythm. Where the supraventricular RR intervals are irregularly irregular (AF-like), timing says
   nothing and f-waves riding on each QRS blur its shape and width, so a beat is 'V' only on stronger morphology:
   unlike the normal template (< 0.85) *and* wide (≥ 120 ms) *and* carrying more QRS area than a normal beat
   (≥ 1.2×), with the QRS standing clear of the atrial activity before it (pre-QRS peak-to-peak < 35 % of its
   own), unless its area alone is ventricular (≥ 2×). Conducted AF beats are narrow and share the normal shape;
   only their timing is irregular.
3. Timing. A beat of normal morphology is 'A' if its RR is short against the local median RR of supraventricular
   intervals (< 85 %), the interval before it was settled, and the local rhythm is not irregularly irregular
   (AF-like), where prematurity means nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.ndimage import median_filter, uniform_filter1d

from ._checks import check_fs, check_r_peaks, check_sig
from ._quality import band_limited, run_bounds, usable_mask

__all__ = [
    "BeatFeatures",
    "ClassifierConfig",
    "artifact_beats",
    "beat_features",
    "classify_beats",
    "label_beats",
    "local_median",
]


@dataclass(frozen=True)
class ClassifierConfig:
    """Beat-classification constants and why they have these values."""

    band_hz: tuple[float, float] = (0.5, 40.0)  # keeps QRS shape, removes wander and most EMG
    qrs_halfwidth_s: float = 0.100  # ±100 ms holds a normal QRS and the bulk of a wide one
    max_lag_s: float = 0.040  # R may be placed on R or S; correlation is taken at the best lag up to ±40 ms
    min_corr: float = 0.80  # beats at least this alike share a shape (template clustering)
    v_corr: float = 0.90  # a beat less alike than this to the normal QRS ...
    wide_ratio: float = 1.40  # ... and this much wider took a different (ventricular) path
    very_wide_ratio: float = 1.80  # this much wider is ventricular whatever the shape (normal beats: 99th pct 1.3)
    loose_corr: float = 0.93  # premature + compensatory pause + wider + correlation under this: ventricular
    wide_abs_ms: float = 130.0  # a QRS this wide is wide in absolute terms (normal conduction: < 120 ms)
    min_wide_ms: float = 120.0  # relatively wide is not wide under this (the clinical wide-QRS bound): a 60-ms beat
    #                             bent by f-waves measured 88-112 ms (1.5-1.9x); PVCs in generator v2's AF: >= 130 ms
    wide_abs_ratio: float = 1.20  # absolutely wide and this much wider than normal also counts as wide (the
    #                               normal QRS on a lead like V1 can measure wide itself)
    premature_ratio: float = 0.85  # RR under 85 % of the local median: premature (common Holter criterion)
    compensatory_ratio: float = 1.85  # RR before + after ≥ 1.85 local RR: a (near-)full compensatory pause
    reference_beats: int = 41  # window of the local median RR: wide enough that a 15-beat atrial run stays premature
    context_beats: int = 17  # window of the local irregularity: short enough to follow AF onset within ~15 s
    min_neighbour_corr: float = 0.85  # 5-beat median neighbour likeness under this: motion (true beats: 1st pct 0.84)
    irregular_index: float = 0.07  # median calm |ΔRR| / RR above this: irregularly irregular (AF-like)
    af_corr: float = 0.85  # in AF-like rhythm a 'V' correlates under this (synthetic PVCs in AF: ≤ 0.81) ...
    af_area_ratio: float = 1.2  # ... and has this much more QRS area than normal (synthetic PVCs: 99 % ≥ 1.2) ...
    af_clear_ratio: float = 0.35  # ... and pre-QRS activity under this share of its own QRS (f-waves rival it) ...
    af_big_area_ratio: float = 2.0  # ... unless its area is this much larger: no f-wave makes a QRS that big
    bbb_area_ratio: float = 1.2  # wide dominant beat (bundle-branch block): premature + compensatory pause + QRS
    #                              area this many times larger or smaller than normal is ventricular (a PVC can be as
    #                              wide and alike as the conducted beat there; conducted beats: 99 % within 1.2×)
    vt_min_bpm: float = 115.0  # a wide rhythm is VT only at least this fast (VT: 120–220/min; sinus with bundle-
    #                            branch block at rest: ≤ 110/min), regular (median |ΔRR| / RR ≤ irregular_index:
    #                            monomorphic VT jitters ~2 %, AF with bundle-branch block does not pass) ...
    vt_run_beats: int = 9  # ... over this many beats (2.5–4.5 s of VT, under the shortest non-sustained run, 5 s),
    #                        and entered abruptly (RR < premature_ratio of the one before): sinus tachycardia ramps


@dataclass(frozen=True)
class BeatFeatures:
    """Per-beat measurements behind the labels, all of shape ``(n_beats,)``; NaN where not measurable."""

    qrs_width_ms: npt.NDArray[np.float64]  # onset–offset of the QRS slope envelope
    template_corr: npt.NDArray[np.float64]  # best-lag correlation with the dominant QRS template
    neighbour_corr: npt.NDArray[np.float64]  # best correlation with any of the 3 beats either side
    rr_prev_ms: npt.NDArray[np.float64]  # RR interval ending at this beat (NaN for the first, or across a gap)
    rr_next_ms: npt.NDArray[np.float64]  # RR interval starting at this beat
    qrs_amp_mv: npt.NDArray[np.float64]  # peak-to-peak within ±qrs_halfwidth of R
    pre_qrs_amp_mv: npt.NDArray[np.float64]  # peak-to-peak 250–100 ms before R: P wave, f-waves, noise
    qrs_area_mv_ms: npt.NDArray[np.float64]  # area of |signal − window median| within ±qrs_halfwidth of R
    dominant_width_ms: float  # QRS width of the dominant template


def classify_beats(
    sig_mv: npt.ArrayLike, fs: float, r_peaks: npt.ArrayLike, *, config: ClassifierConfig | None = None
) -> npt.NDArray[np.str_]:
    """Label each detected beat 'N', 'A' (premature narrow) or 'V' (ventricular).

    Parameters
    ----------
    sig_mv : array_like, shape (sig_len,)
        One lead in mV (the lead the R peaks were detected on).
    fs : float
        Sampling rate in Hz.
    r_peaks : array_like of int, shape (n_beats,)
        Strictly increasing R-peak sample indices, e.g. from :func:`detect_qrs`.
    config : ClassifierConfig, optional
        Thresholds; see the class for the reason behind each default.

    Returns
    -------
    numpy.ndarray of str, shape (n_beats,)
        One of 'N', 'A', 'V' per beat.

    Raises
    ------
    core.errors.SignalError
        On a bad signal, ``fs`` or ``r_peaks``.

    Examples
    --------
    >>> import numpy as np
    >>> from core.measurements import classify_beats
    >>> fs = 250.0
    >>> t = np.arange(int(20 * fs)) / fs
    >>> narrow = [b for b in np.arange(0.5, 20, 0.8) if abs(b - 10.1) > 0.1]
    >>> sig_mv = sum(np.exp(-(((t - b) / 0.012) ** 2)) for b in narrow)
    >>> sig_mv = sig_mv - 1.2 * np.exp(-(((t - 9.8) / 0.04) ** 2))  # one wide, early, inverted beat
    >>> r_peaks = np.round(np.array(sorted([*narrow, 9.8])) * fs).astype(int)
    >>> "".join(classify_beats(sig_mv, fs, r_peaks))[9:16]
    'NNNVNNN'
    """
    sig = check_sig(sig_mv)
    fs = check_fs(fs)
    peaks = check_r_peaks(r_peaks, sig.size)
    usable = usable_mask(sig, fs)
    return label_beats(beat_features(sig, fs, peaks, usable, config), config)


def beat_features(
    sig_mv: npt.NDArray[np.float64],
    fs: float,
    r_peaks: npt.NDArray[np.int64],
    usable: npt.NDArray[np.bool_],
    config: ClassifierConfig | None = None,
) -> BeatFeatures:
    """Widths, template correlations and RR intervals of checked beats (for ``classify_beats`` and ``measure``)."""
    cfg = config or ClassifierConfig()
    loc = band_limited(np.where(np.isfinite(sig_mv), sig_mv, 0.0), fs, usable, cfg.band_hz)
    # Shapes are compared at 250 Hz at most: the 0.5–40 Hz copy loses nothing, and the lag search costs fs².
    step = max(1, int(fs // 250.0))
    fs_m, loc_m, peaks_m = fs / step, loc[::step], np.minimum(r_peaks // step, (loc.size - 1) // step)
    half = round(cfg.qrs_halfwidth_s * fs_m)
    lag = round(cfg.max_lag_s * fs_m)
    windows = _windows(loc_m, peaks_m, half + lag)  # (n_beats, 2*(half+lag)+1), NaN outside usable
    shapes = QrsShapes.of(windows, half, lag)
    widths_ms = _qrs_widths(windows, fs_m) * 1000.0 / fs_m
    rr_ms = np.diff(r_peaks) * 1000.0 / fs
    rr_ms = np.where(_same_segment(usable, r_peaks), rr_ms, np.nan)
    rr_prev = np.concatenate(([np.nan], rr_ms))
    template = _normal_template(_shape_clusters(shapes, widths_ms, fs_m, cfg), rr_prev, windows.shape[1], cfg)
    corr = _best_lag_corr(shapes, template)
    finite = np.isfinite(template).all()
    dom_width = float(_qrs_widths(template[None, :], fs_m)[0] * 1000.0 / fs_m) if finite else np.nan
    qrs = windows[:, lag : lag + 2 * half + 1]
    pre = _windows(loc_m, peaks_m - round(0.175 * fs_m), round(0.075 * fs_m))
    return BeatFeatures(
        qrs_width_ms=widths_ms,
        template_corr=corr,
        neighbour_corr=_neighbour_corr(shapes, reach=3),
        qrs_amp_mv=qrs.max(axis=1) - qrs.min(axis=1),
        pre_qrs_amp_mv=pre.max(axis=1) - pre.min(axis=1),
        qrs_area_mv_ms=np.abs(qrs - np.median(qrs, axis=1, keepdims=True)).sum(axis=1) * 1000.0 / fs_m,
        rr_prev_ms=rr_prev,
        rr_next_ms=np.concatenate((rr_ms, [np.nan])),
        dominant_width_ms=dom_width,
    )


def _same_segment(usable: npt.NDArray[np.bool_], r_peaks: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """For each consecutive pair of beats: True if no unusable sample lies between them (RR is trustworthy)."""
    if r_peaks.size < 2:
        return np.zeros(0, dtype=bool)
    bad_before = np.concatenate(([0], np.cumsum(~usable)))  # bad_before[i] = unusable samples in [0, i)
    same: npt.NDArray[np.bool_] = (bad_before[r_peaks[1:] + 1] - bad_before[r_peaks[:-1]]) == 0
    return same


def _windows(loc: npt.NDArray[np.float64], r_peaks: npt.NDArray[np.int64], half: int) -> npt.NDArray[np.float64]:
    """Samples ``r - half … r + half`` of each beat, NaN where they fall outside the signal."""
    idx = r_peaks[:, None] + np.arange(-half, half + 1)[None, :]  # (n_beats, 2*half+1)
    inside = (idx >= 0) & (idx < loc.size)
    return np.where(inside, loc[np.clip(idx, 0, loc.size - 1)], np.nan)


def _qrs_widths(windows: npt.NDArray[np.float64], fs: float) -> npt.NDArray[np.float64]:
    """QRS width in samples: the run around R that is steep (slope ≥ 15 % of its peak) or tall (≥ 50 % of its peak).

    Slope alone stops at the flat apex of a wide R wave; height alone would stop at the R→S zero crossing; a QRS is
    where either holds, and it ends where the trace is both flat and near its baseline.
    """
    dev = np.abs(windows - np.nanmedian(windows, axis=1, keepdims=True))
    slope = np.abs(np.gradient(windows, axis=1)) if windows.shape[1] > 1 else np.zeros_like(windows)
    slope = uniform_filter1d(np.nan_to_num(slope), size=max(1, round(0.012 * fs)), axis=1)
    dev = np.nan_to_num(dev)
    rows = np.arange(windows.shape[0])
    centre = windows.shape[1] // 2
    near = max(1, round(0.040 * fs))
    peak_at = centre - near + np.argmax(slope[:, centre - near : centre + near + 1], axis=1)
    steep = slope >= 0.15 * slope[rows, peak_at][:, None]
    tall = dev >= 0.5 * dev[:, centre - near : centre + near + 1].max(axis=1)[:, None]
    inside = steep | tall
    cols = np.arange(windows.shape[1])[None, :]
    left_gap = np.where(~inside & (cols < peak_at[:, None]), cols, -1).max(axis=1)
    right_gap = np.where(~inside & (cols > peak_at[:, None]), cols, windows.shape[1]).min(axis=1)
    width = (right_gap - left_gap - 1).astype(np.float64)
    return np.where(np.isnan(windows).any(axis=1), np.nan, width)


class Cluster(NamedTuple):
    """One QRS shape: its beats (indices), the QRS width of its median template in ms, and that template."""

    members: npt.NDArray[np.int64]
    width_ms: float
    template: npt.NDArray[np.float64]


def _shape_clusters(
    shapes: QrsShapes, widths_ms: npt.NDArray[np.float64], fs: float, cfg: ClassifierConfig
) -> list[Cluster]:
    """QRS shapes peeled off greedily, most populous first (up to three), each with at least 5 % of the beats.

    A member must correlate with the cluster's template *and* have a width within 0.7–1.4× of it: on some leads
    a normal QRS and a PVC are both one upright wave, alike in shape after lag alignment, and differ only in width.
    """
    index = np.flatnonzero(shapes.complete)
    remaining, widths = shapes.rows(index), widths_ms[index]
    min_members = max(3, index.size // 20)
    clusters: list[Cluster] = []
    while index.size >= min_members and len(clusters) < 3:
        template = _refined_median(remaining, cfg.min_corr)
        width_ms = float(_qrs_widths(template[None, :], fs)[0]) * 1000.0 / fs
        alike = (_best_lag_corr(remaining, template) >= cfg.min_corr) & (
            np.abs(np.log(widths / width_ms)) <= np.log(1.4)
        )
        if alike.sum() < min_members:
            break
        template = np.median(remaining.windows[alike], axis=0)
        width_ms = float(_qrs_widths(template[None, :], fs)[0]) * 1000.0 / fs
        clusters.append(Cluster(index[alike], width_ms, template))
        remaining, widths, index = remaining.rows(~alike), widths[~alike], index[~alike]
    return clusters


def _normal_template(
    clusters: list[Cluster], rr_prev_ms: npt.NDArray[np.float64], n_cols: int, cfg: ClassifierConfig
) -> npt.NDArray[np.float64]:
    """Template of the normally conducted beat.

    The most common shape is not always the normal one (a strip that is mostly VT), so the largest cluster
    narrower than ``wide_abs_ms`` is chosen. Without one, a wide cluster is still the normal beat (bundle-branch
    block) unless its own rhythm is as fast and regular as VT; only if every cluster is, the largest is taken (the
    strip is VT, which :func:`label_beats` tells by rate).
    """
    if not clusters:
        return np.full(n_cols, np.nan)
    narrow = [c for c in clusters if c.width_ms <= cfg.wide_abs_ms]
    conducted = narrow or [c for c in clusters if not _tachycardic(rr_prev_ms, c.members, cfg)]
    return max(conducted or clusters, key=lambda c: c.members.size).template


def _tachycardic(rr_prev_ms: npt.NDArray[np.float64], members: npt.NDArray[np.int64], cfg: ClassifierConfig) -> bool:
    """Whether a cluster's beats come at a VT rate (≥ ``vt_min_bpm``) with regular intervals (not AF-like)."""
    rr = rr_prev_ms[members]
    before = rr_prev_ms[np.maximum(members - 1, 0)]
    change = np.abs(rr - before) / rr
    if not np.isfinite(rr).any() or not np.isfinite(change).any():
        return False
    return bool(_at_vt_rate(np.nanmedian(rr), np.nanmedian(change), cfg))


def _at_vt_rate(rr_ms: npt.ArrayLike, rr_change: npt.ArrayLike, cfg: ClassifierConfig) -> npt.NDArray[np.bool_]:
    """Median RR at a VT rate (≥ ``vt_min_bpm``) and median |ΔRR| / RR regular (≤ ``irregular_index``)."""
    return np.asarray((np.asarray(rr_ms) < 60_000.0 / cfg.vt_min_bpm) & (np.asarray(rr_change) <= cfg.irregular_index))


def _refined_median(beats: QrsShapes, min_corr: float) -> npt.NDArray[np.float64]:
    """Median of the beats, twice re-taken over only the beats that match it (so outliers do not blur it)."""
    template = np.median(beats.windows, axis=0)
    for _ in range(2):
        alike = beats.windows[_best_lag_corr(beats, template) >= min_corr]
        if alike.shape[0] < max(3, beats.windows.shape[0] // 5):
            break
        template = np.median(alike, axis=0)
    return template


class QrsShapes(NamedTuple):
    """Each beat's QRS window and its central QRS z-scored at every lag, computed once per lead.

    Every shape comparison (clustering, the template, neighbours) is a best-lag Pearson correlation; z-scoring the
    shifted QRS of every beat once, rather than at each comparison, is what makes measuring a 5-minute window cheap
    enough to run at every forecast. Memory: 8 bytes x 21 lags x 51 samples per beat at 250 Hz (9 MB for the
    1,000 beats of a fast 5-minute window).
    """

    windows: npt.NDArray[np.float64]  # (n_beats, 2*(half+lag)+1), NaN outside usable samples
    shifted: npt.NDArray[np.float64]  # (n_beats, 2*lag+1, 2*half+1): samples lag+shift ... of each, z-scored
    half: int
    lag: int

    @classmethod
    def of(cls, windows: npt.NDArray[np.float64], half: int, lag: int) -> QrsShapes:
        seg = np.lib.stride_tricks.sliding_window_view(windows, 2 * half + 1, axis=1)  # (n, 2*lag+1, 2*half+1)
        shifted = (seg - seg.mean(axis=2, keepdims=True)) / (seg.std(axis=2, keepdims=True) + 1e-12)
        return cls(windows, shifted, half, lag)

    @property
    def complete(self) -> npt.NDArray[np.bool_]:
        """Beats whose whole window lies in usable signal."""
        return np.asarray(~np.isnan(self.windows).any(axis=1))

    @property
    def central(self) -> npt.NDArray[np.float64]:
        """(n_beats, 2*half+1): each beat's QRS centred on its R peak, z-scored."""
        central: npt.NDArray[np.float64] = self.shifted[:, self.lag]
        return central

    def rows(self, which: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> QrsShapes:
        return QrsShapes(self.windows[which], self.shifted[which], self.half, self.lag)


def _best_lag(corr_by_lag: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """(n, n_lags) correlations -> (n,) the best, NaN lags ignored, never below -1."""
    best: npt.NDArray[np.float64] = np.fmax(np.fmax.reduce(corr_by_lag, axis=1), -1.0)
    return best


def _best_lag_corr(shapes: QrsShapes, template: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Pearson correlation of each beat's central QRS with the template's, at the best lag within ±``lag``."""
    ref = template[shapes.lag : shapes.lag + 2 * shapes.half + 1]
    ref = (ref - ref.mean()) / (ref.std() + 1e-12)
    best = _best_lag(shapes.shifted @ ref / ref.size)  # (n, n_lags, L) @ (L,): the mean product, no (n, n_lags, L) copy
    return np.where(shapes.complete, best, np.nan)


def _neighbour_corr(shapes: QrsShapes, reach: int) -> npt.NDArray[np.float64]:
    """Best-lag correlation of each beat with the most alike of the ``reach`` beats either side.

    Within ±3 beats a sinus beat finds a sinus beat and a PVC in bigeminy or trigeminy finds its twin; a
    "beat" drawn by electrode motion usually finds nothing like it.
    """
    n = shapes.windows.shape[0]
    best = np.full(n, -1.0)
    for step in range(1, min(reach, n - 1) + 1):
        later = shapes.central[step:, :, None]  # (n - step, 2*half+1, 1)
        pair = _best_lag((shapes.shifted[:-step] @ later)[:, :, 0] / later.shape[1])
        best[step:] = np.fmax(best[step:], pair)
        best[:-step] = np.fmax(best[:-step], pair)
    return np.where(shapes.complete, best, np.nan)  # NaN: the beat's own window is incomplete


def artifact_beats(features: BeatFeatures, config: ClassifierConfig | None = None) -> npt.NDArray[np.bool_]:
    """Beats in a stretch where neighbouring beats stop resembling each other: electrode motion, not rhythm.

    The test is the running median over 5 beats of :attr:`BeatFeatures.neighbour_corr`, so one odd beat among
    normal ones (an isolated PVC) is kept, while monomorphic VT, whose beats are alike, is not flagged. On the
    synthetic set it removes a third to a half of the false beats inside motion bursts; see docs/MEASUREMENTS.md.
    """
    cfg = config or ClassifierConfig()
    if features.neighbour_corr.size == 0:
        return np.zeros(0, dtype=bool)
    likeness = _nan_running_median(features.neighbour_corr, 5)  # +inf (never flagged) where nothing is measurable
    return np.asarray(likeness < cfg.min_neighbour_corr)


def label_beats(features: BeatFeatures, config: ClassifierConfig | None = None) -> npt.NDArray[np.str_]:
    """Apply the morphology and timing rules of the module docstring to precomputed features."""
    cfg = config or ClassifierConfig()
    n = features.template_corr.size
    labels = np.full(n, "N", dtype="<U1")
    if n == 0:
        return labels
    corr, width = features.template_corr, features.qrs_width_ms
    dom = features.dominant_width_ms
    measurable = np.isfinite(corr)
    wider = width / dom
    # Wider than normal yet under the clinical wide-QRS bound: ventricular only if early (a PVC is premature) or in
    # a VT-like run; f-waves stretch conducted beats that are neither. In AF-like rhythm, where early means nothing,
    # never (below).
    all_ref_rr = local_median(features.rr_prev_ms, cfg.reference_beats)  # over every interval, ectopic ones too
    in_vt_run = _tachycardic_run(features.rr_prev_ms, cfg)
    early = features.rr_prev_ms < cfg.premature_ratio * all_ref_rr
    wide_enough = (width >= cfg.min_wide_ms) | early | in_vt_run
    wide = ((wider > cfg.wide_ratio) & wide_enough) | ((width >= cfg.wide_abs_ms) & (wider > cfg.wide_abs_ratio))
    # A wide dominant beat: bundle-branch block, whose conducted beat is as wide as a PVC (so width cannot separate
    # them), or VT, which only its rate tells from it when the two look alike on this lead.
    wide_dominant = bool(dom > cfg.wide_abs_ms)
    wide = wide | wide_dominant
    vt_rate = measurable & wide_dominant & (width >= cfg.wide_abs_ms) & in_vt_run
    odd_shape = measurable & (((corr < cfg.v_corr) & wide) | ((wider > cfg.very_wide_ratio) & wide_enough) | vt_rate)
    # RR intervals that touch an odd-shaped beat say nothing about the supraventricular rhythm.
    odd_before = np.concatenate(([False], odd_shape[:-1]))
    supra_rr = np.where(odd_shape | odd_before, np.nan, features.rr_prev_ms)
    ref_rr = local_median(supra_rr, cfg.reference_beats)
    premature = features.rr_prev_ms < cfg.premature_ratio * ref_rr
    compensated = (features.rr_prev_ms + features.rr_next_ms) >= cfg.compensatory_ratio * ref_rr
    irregularity = _local_irregularity(supra_rr, ref_rr, cfg)
    irregular = irregularity > cfg.irregular_index
    # AF-like only where *all* intervals jump about too: inside VT, whose own intervals are regular, a few beats
    # mislabelled 'N' leave supraventricular-looking intervals that can look irregular; there the rules above hold.
    all_irregularity = _local_irregularity(features.rr_prev_ms, all_ref_rr, cfg)
    af_like = irregular & np.isfinite(irregularity) & (all_irregularity > cfg.irregular_index) & ~vt_rate
    area_ratio = _area_ratio(features.qrs_area_mv_ms, ~odd_shape)
    resized = np.abs(np.log(area_ratio)) >= np.log(cfg.bbb_area_ratio)
    unlike = ((corr < cfg.loose_corr) & (width > dom)) | (wide_dominant & resized)
    timing_says_v = premature & compensated & ~irregular & unlike
    ventricular = np.where(
        af_like,
        measurable
        & wide
        & ((width >= cfg.min_wide_ms) | wide_dominant)
        & _ventricular_in_af(features, area_ratio, cfg),
        odd_shape | (measurable & timing_says_v),
    )
    labels[ventricular] = "V"
    labels[_atrial_premature(features.rr_prev_ms / ref_rr, premature & ~ventricular & ~irregular, ventricular)] = "A"
    return labels


def _tachycardic_run(rr_prev_ms: npt.NDArray[np.float64], cfg: ClassifierConfig) -> npt.NDArray[np.bool_]:
    """Beats of a VT-like run: at a VT rate (own RR and the median over ``vt_run_beats``), regular, and started
    abruptly, i.e. its median RR is under ``premature_ratio`` of the ``vt_run_beats`` intervals before it (or it
    starts the strip: a wide-complex tachycardia with no onset in view is taken for VT, as at the bedside).

    Sinus tachycardia with bundle-branch block speeds up gradually, so it never jumps into such a run.
    """
    rr = rr_prev_ms
    change = _nan_running_median(np.abs(np.diff(rr, prepend=np.nan)) / rr, cfg.vt_run_beats)
    fast = _at_vt_rate(_nan_running_median(rr, cfg.vt_run_beats), change, cfg)
    run = np.zeros(rr.shape, dtype=bool)
    last_end = -rr.size  # a run that resumes within vt_run_beats of a VT run continues it (a beat missed in VT)
    for start, end in run_bounds(fast):
        before, inside = (r[np.isfinite(r)] for r in (rr[max(0, start - cfg.vt_run_beats) : start], rr[start:end]))
        jump = before.size == 0 or (inside.size > 0 and np.median(inside) < cfg.premature_ratio * np.median(before))
        if jump or start - last_end <= cfg.vt_run_beats:
            run[start:end], last_end = True, end
    return run & (rr < 60_000.0 / cfg.vt_min_bpm)


def _area_ratio(area: npt.NDArray[np.float64], normal_shape: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    """QRS area over the median area of the normally shaped beats (NaN if there are none).

    A ventricular beat depolarises the ventricles slowly and carries far more area; f-waves add little to it,
    though they do bend a conducted beat's shape and width.
    """
    normal = area[normal_shape & np.isfinite(area)]
    return area / float(np.median(normal)) if normal.size else np.full(area.shape, np.nan)


def _ventricular_in_af(
    features: BeatFeatures, area_ratio: npt.NDArray[np.float64], cfg: ClassifierConfig
) -> npt.NDArray[np.bool_]:
    """Beats whose morphology alone says ventricular in AF-like rhythm (rule 2 of the module docstring)."""
    clear = features.pre_qrs_amp_mv < cfg.af_clear_ratio * features.qrs_amp_mv
    unlike = features.template_corr < cfg.af_corr
    return np.asarray(unlike & (((area_ratio >= cfg.af_area_ratio) & clear) | (area_ratio >= cfg.af_big_area_ratio)))


def _atrial_premature(
    rr_ratio: npt.NDArray[np.float64], candidate: npt.NDArray[np.bool_], ventricular: npt.NDArray[np.bool_]
) -> npt.NDArray[np.bool_]:
    """PACs among premature narrow candidates: the interval before must be a settled one (0.85–1.15 of the local
    RR), or end in a PVC's pause, or belong to the same atrial run. In AF the interval before a short one is
    random, which removes most of the false PACs the irregularity test lets through at an onset.
    """
    settled = (rr_ratio >= 0.85) & (rr_ratio <= 1.15)
    pac = np.zeros(candidate.shape, dtype=bool)
    for i in np.flatnonzero(candidate):
        pac[i] = i > 0 and bool(settled[i - 1] or ventricular[i - 1] or pac[i - 1])
    return pac


def local_median(values: npt.NDArray[np.float64], size: int) -> npt.NDArray[np.float64]:
    """Centred running median; NaN entries count as the global median so one gap does not blank a neighbourhood."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.full(values.shape, np.nan)
    filled = np.where(np.isfinite(values), values, np.median(finite))
    return np.asarray(median_filter(filled, size=size, mode="nearest"), dtype=np.float64)


def _local_irregularity(
    supra_rr_ms: npt.NDArray[np.float64], ref_rr: npt.NDArray[np.float64], cfg: ClassifierConfig
) -> npt.NDArray[np.float64]:
    """Running median of |ΔRR| / local RR over the *calm* intervals: neither premature nor just after one.

    Dropping each premature interval and the pause after it removes what ectopy adds, so sinus with dense PACs
    stays regular (~0.02–0.06), while in AF the intervals that are left still jump about (~0.15–0.3).
    """
    premature = supra_rr_ms < cfg.premature_ratio * ref_rr
    after = np.concatenate(([False], premature[:-1]))
    calm = np.where(premature | after, np.nan, supra_rr_ms)
    delta = np.abs(np.diff(calm, prepend=np.nan)) / ref_rr
    local = _nan_running_median(delta, cfg.context_beats)
    wider = _nan_running_median(delta, 4 * cfg.context_beats)  # e.g. inside ventricular bigeminy
    centred = np.where(np.isfinite(local), local, wider)
    # Also look ahead (the window that starts at the beat), so the first beats of AF are not judged by the
    # sinus rhythm before them.
    half = cfg.context_beats // 2
    ahead = np.concatenate((local[half:], np.full(min(half, local.size), np.nan)))[: local.size]
    # And over 4× as many beats: AF has calm stretches of a dozen beats whose local median looks regular, where
    # a chance short interval would pass for a PAC. Sinus with PACs stays regular over the long window too.
    return np.fmax(
        np.fmax(centred, np.where(np.isfinite(ahead), ahead, centred)), np.where(np.isfinite(wider), wider, 0.0)
    )


def _nan_running_median(values: npt.NDArray[np.float64], size: int) -> npt.NDArray[np.float64]:
    """Centred running median over the finite entries of each window; +inf where a window has none.

    +inf, because a stretch in which every interval is premature or a pause cannot be called regular.
    """
    half = size // 2
    padded = np.concatenate((np.full(half, np.nan), values, np.full(half, np.nan)))
    windows = np.sort(np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1), axis=1)  # NaN sort last
    count = np.isfinite(windows).sum(axis=1)
    rows = np.arange(values.size)
    lo = windows[rows, np.maximum(count - 1, 0) // 2]
    hi = windows[rows, np.maximum(count, 1) // 2]
    return np.where(count > 0, (lo + hi) / 2.0, np.inf)
