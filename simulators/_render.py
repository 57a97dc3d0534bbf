"""Turn a beat sequence and atrial spans into multi-lead samples (vectorised; one pass per wave type)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulators._beats import AtrialSpan
from simulators._morphology import WAVES, PatientMorphology, render_waves

__all__ = ["Canvas", "render_atrial", "render_beats"]

_T = WAVES.index("T")


@dataclass(frozen=True)
class Canvas:
    """Where waves are drawn: ``sig_len`` samples at ``fs`` Hz on the leads of ``lead_mat`` (n_leads, 3)."""

    fs: float
    sig_len: int
    lead_mat: npt.NDArray[np.float64]


_P = WAVES.index("P")


def render_beats(
    time_s: npt.NDArray[np.float64],
    kind: npt.NDArray[np.int64],
    has_p: npt.NDArray[np.bool_],
    morph: PatientMorphology,
    canvas: Canvas,
    rng: np.random.Generator,
) -> npt.NDArray[np.float64]:
    """(sig_len, n_leads) P-QRS-T waves of every beat.

    The T wave moves with the preceding RR (Bazett: QT ∝ sqrt(RR)), amplitudes vary 3 % beat to beat, and
    beats without atrial depolarisation (AF, flutter, PVC, VT) get no P wave.
    """
    rr_prev = np.diff(time_s, prepend=time_s[0] - 0.8) if time_s.size else time_s
    rr_prev = np.clip(rr_prev, 0.25, 2.0)
    fs, sig_len, lead_mat = canvas.fs, canvas.sig_len, canvas.lead_mat
    templates = (morph.sinus, morph.pac, morph.pvc)
    jitter = 1.0 + 0.03 * rng.standard_normal(time_s.size)
    out = np.zeros((sig_len, lead_mat.shape[0]))
    for wave in range(len(WAVES)):
        centers, sigmas, amps, projections = [], [], [], []
        for index, template in enumerate(templates):
            sel = kind == index
            if template.amp_mv[wave] == 0.0 or not sel.any():
                continue
            rr = rr_prev[sel]
            stretch = np.sqrt(rr) if wave == _T else np.ones_like(rr)
            amp = template.amp_mv[wave] * morph.qrs_gain * jitter[sel]
            if wave == _P:
                amp = amp * has_p[sel]
            centers.append(time_s[sel] + template.offset_s[wave] * stretch)
            sigmas.append(template.sigma_s[wave] * np.sqrt(stretch))
            amps.append(amp)
            projections.append(np.broadcast_to(lead_mat @ template.direction[wave], (int(sel.sum()), len(lead_mat))))
        if centers:
            out += render_waves(
                sig_len,
                fs,
                np.concatenate(centers),
                np.concatenate(sigmas),
                np.concatenate(amps),
                np.concatenate(projections),
            )
    return out


def _slow_noise(rng: np.random.Generator, n: int, fs: float, step_s: float = 0.5) -> npt.NDArray[np.float64]:
    """Smooth unit-scale noise (changes over ~``step_s`` seconds), interpolated from a coarse grid."""
    knots = rng.standard_normal(int(n / fs / step_s) + 2)
    knots = np.convolve(knots, np.ones(3) / np.sqrt(3), mode="same")
    return np.interp(np.arange(n) / fs / step_s, np.arange(knots.size), knots)


def _fibrillatory(rng: np.random.Generator, n: int, fs: float, span: AtrialSpan) -> npt.NDArray[np.float64]:
    """AF f-waves: dominant frequency wandering within 4-9 Hz, amplitude waxing and waning."""
    freq_hz = np.clip(span.rate_hz + 0.8 * _slow_noise(rng, n, fs), 4.0, 9.0)
    phase = 2 * np.pi * np.cumsum(freq_hz) / fs
    amp = span.amp_mv * np.clip(1.0 + 0.45 * _slow_noise(rng, n, fs, 1.5), 0.25, 2.0)
    return np.asarray(amp * (np.sin(phase) + 0.3 * np.sin(2 * phase + 1.0)))


def _flutter(t_s: npt.NDArray[np.float64], span: AtrialSpan) -> npt.NDArray[np.float64]:
    """Sawtooth flutter waves: slow 75 % descent, quick 25 % return, one per atrial cycle."""
    phase = np.mod((t_s - span.phase_ref_s) * span.rate_hz + 0.25, 1.0)
    shape = np.where(phase < 0.75, 0.5 - phase / 0.75, -0.5 + (phase - 0.75) / 0.25)
    return np.asarray(span.amp_mv * 2.0 * shape)


def render_atrial(
    spans: list[AtrialSpan], morph: PatientMorphology, canvas: Canvas, rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """(sig_len, n_leads) f-waves and flutter waves, projected on the patient's atrial axis."""
    fs, sig_len, lead_mat = canvas.fs, canvas.sig_len, canvas.lead_mat
    out = np.zeros((sig_len, lead_mat.shape[0]))
    for span in spans:
        lo = max(0, int(np.ceil(span.start_s * fs)))
        hi = min(sig_len, int(np.ceil(span.end_s * fs)))
        if hi <= lo:
            continue
        t_s = np.arange(lo, hi) / fs
        if span.kind == "af":
            wave, projection = _fibrillatory(rng, hi - lo, fs, span), lead_mat @ morph.atrial_axis  # (n_leads,)
        else:
            wave, projection = _flutter(t_s, span), lead_mat @ morph.flutter_axis
        fade = np.clip(np.minimum(t_s - span.start_s, span.end_s - t_s) / 0.2, 0.0, 1.0)  # no steps at the edges
        out[lo:hi] += (wave * fade)[:, None] * projection[None, :]
    return out
