"""Scripted beat sequences: each segment of a scenario becomes beats with exact times, types and rhythm labels.

The loop runs once per *beat* (a few thousand per hour), never per sample. Sinus timing follows a sinus node
that ectopy does not disturb except where physiology says so: a PVC leaves the node alone (compensatory pause,
the next sinus beat falling in the refractory period is blocked), a PAC resets it (non-compensatory pause).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

__all__ = ["AtrialSpan", "BeatSequence", "RateModulator", "Segment", "build_beats"]

SINUS: Final = 0
PAC: Final = 1
VENTRICULAR: Final = 2
"""Beat template indices; symbols are 'N', 'A', 'V'."""

_SYMBOL: Final = ("N", "A", "V")
_REFRACTORY_FRACTION: Final = 0.6  # a sinus beat closer than this × RR to an ectopic beat is blocked


@dataclass(frozen=True)
class Segment:
    """One scripted stretch of a scenario. Ramps are linear from the first to the second value."""

    rhythm: Literal["sinus", "af", "flutter", "vt"]
    duration_s: float
    hr_bpm: tuple[float, float]  # ventricular target rate (flutter: ignored, the conduction ratio decides)
    pac_burden: tuple[float, float] = (0.0, 0.0)  # probability per sinus beat of a following PAC
    pac_coupling: tuple[float, float] = (0.55, 0.75)  # PAC time after its sinus beat, in RR (early: P' in the T)
    pvc_burden: tuple[float, float] = (0.0, 0.0)  # probability per beat of a following PVC event
    couplet_fraction: float = 0.0  # share of PVC events that are couplets
    atrial_runs_per_min: tuple[float, float] = (0.0, 0.0)  # short PAC runs, labelled "(SVTA"
    pattern: Literal["none", "bigeminy", "trigeminy"] = "none"
    conduction: tuple[int, ...] = (2,)  # flutter AV ratios; more than one value = variable conduction
    atrial_rate_bpm: float = 300.0  # flutter wave rate (250-350/min)
    irregularity: float = 0.0  # AF: sigma of the log-normal RR factor (irregularly irregular)
    fwave_hz: float = 6.0  # AF fibrillatory wave dominant frequency (4-9 Hz)
    atrial_amp_mv: float = 0.1  # f-wave or flutter-wave amplitude


@dataclass(frozen=True)
class AtrialSpan:
    """Continuous atrial activity that is not P waves: AF f-waves or flutter waves from ``start_s``."""

    kind: Literal["af", "flutter"]
    start_s: float
    end_s: float
    rate_hz: float  # f-wave dominant frequency or flutter-wave rate
    amp_mv: float
    phase_ref_s: float  # flutter: time of a wave trough, so each QRS follows a flutter wave


@dataclass
class BeatSequence:
    """Growing beat list plus rhythm changes; arrays are built at the end."""

    time_s: list[float] = field(default_factory=list)
    kind: list[int] = field(default_factory=list)
    has_p: list[bool] = field(default_factory=list)
    rhythm_changes: list[tuple[float, str]] = field(default_factory=list)
    atrial: list[AtrialSpan] = field(default_factory=list)
    segment_starts_s: list[float] = field(default_factory=list)

    def beat(self, t: float, kind: int, has_p: bool) -> None:
        self.time_s.append(t)
        self.kind.append(kind)
        self.has_p.append(has_p)

    def label(self, t: float, aux: str) -> None:
        if not self.rhythm_changes or self.rhythm_changes[-1][1] != aux:
            self.rhythm_changes.append((t, aux))

    @property
    def symbols(self) -> npt.NDArray[np.str_]:
        return np.array([_SYMBOL[k] for k in self.kind], dtype="<U1")


class RateModulator:
    """Heart-rate variability as a multiplicative RR factor: respiratory sinus arrhythmia, a ~0.1 Hz Mayer wave
    and a slow random drift, with per-patient amplitudes."""

    def __init__(self, rng: np.random.Generator, duration_s: float, strength: float = 1.0) -> None:
        self.resp_hz = rng.uniform(0.2, 0.33)
        self.rsa = strength * rng.uniform(0.015, 0.05)
        self.mayer = strength * rng.uniform(0.01, 0.03)
        self.phases = rng.uniform(0, 2 * np.pi, size=2)
        grid_s = 10.0
        steps = rng.normal(0.0, 0.012 * strength, size=int(duration_s / grid_s) + 3)
        drift = np.cumsum(steps)
        self.drift = np.convolve(drift - drift.mean(), np.ones(3) / 3, mode="same")
        self.grid_s = grid_s

    def __call__(self, t: float) -> float:
        drift = float(np.interp(t / self.grid_s, np.arange(self.drift.size), self.drift))
        resp = self.rsa * np.sin(2 * np.pi * self.resp_hz * t + self.phases[0])
        mayer = self.mayer * np.sin(2 * np.pi * 0.1 * t + self.phases[1])
        return float(1.0 + resp + mayer + drift)


def _ramp(pair: tuple[float, float], frac: float) -> float:
    return pair[0] + (pair[1] - pair[0]) * min(max(frac, 0.0), 1.0)


def sinus_aux(hr_bpm: float) -> str:
    """Sinus label from the scripted (noise-free) rate: bradycardia below 60/min, tachycardia above 100/min."""
    return "(SBR" if hr_bpm < 60 else "(ST" if hr_bpm > 100 else "(N"


def _sinus_segment(seq: BeatSequence, seg: Segment, t: float, rng: np.random.Generator, hrv: RateModulator) -> float:
    """Emit one sinus segment starting with a sinus beat at ``t``; return the time of the next beat."""
    start, end = t, t + seg.duration_s
    n_sinus = 0
    pattern_aux = {"bigeminy": "(B", "trigeminy": "(T"}.get(seg.pattern)
    pvc_coupling = rng.uniform(0.42, 0.55)
    while t < end:
        frac = (t - start) / seg.duration_s
        hr = _ramp(seg.hr_bpm, frac)
        rr = 60.0 / hr * hrv(t) * (1.0 + rng.normal(0.0, 0.006))
        seq.label(t, pattern_aux or sinus_aux(hr))
        seq.beat(t, SINUS, True)
        n_sinus += 1
        every = {"bigeminy": 1, "trigeminy": 2}.get(seg.pattern, 0)
        if every and n_sinus % every == 0:
            last = t + pvc_coupling * rr * rng.uniform(0.97, 1.03)
            seq.beat(last, VENTRICULAR, False)
            t = _next_sinus_after_ectopy(t, rr, last)
            continue
        u = rng.random()
        p_pvc, p_pac = _ramp(seg.pvc_burden, frac), _ramp(seg.pac_burden, frac)
        p_run = _ramp(seg.atrial_runs_per_min, frac) * rr / 60.0
        if u < p_pvc:
            last = t + pvc_coupling * rr * rng.uniform(0.95, 1.05)
            seq.beat(last, VENTRICULAR, False)
            if rng.random() < seg.couplet_fraction:
                last += rng.uniform(0.36, 0.46) * min(rr, 1.0)
                seq.beat(last, VENTRICULAR, False)
            t = _next_sinus_after_ectopy(t, rr, last)
        elif u < p_pvc + p_pac:
            pac_t = t + rng.uniform(*seg.pac_coupling) * rr
            seq.beat(pac_t, PAC, True)
            t = pac_t + rr * rng.uniform(1.0, 1.1)
        elif u < p_pvc + p_pac + p_run:
            t = _atrial_run(seq, t, rr, rng, pattern_aux or sinus_aux(hr))
        else:
            t += rr
    return t


def _next_sinus_after_ectopy(t_sinus: float, rr: float, last_ectopic: float) -> float:
    """The undisturbed sinus node fires at t + k·RR; beats inside the ectopic refractory period are blocked."""
    k = 1
    while t_sinus + k * rr < last_ectopic + _REFRACTORY_FRACTION * rr:
        k += 1
    return t_sinus + k * rr


def _atrial_run(seq: BeatSequence, t: float, rr: float, rng: np.random.Generator, back_aux: str) -> float:
    """A short supraventricular run (3-12 PACs at 130-190/min), labelled "(SVTA", then a reset sinus node."""
    run_rr = 60.0 / rng.uniform(130, 190)
    pac_t = t + max(rng.uniform(0.5, 0.7) * rr, run_rr)
    seq.label(pac_t, "(SVTA")
    for _ in range(int(rng.integers(3, 13))):
        seq.beat(pac_t, PAC, True)
        pac_t += run_rr * rng.uniform(0.95, 1.05)
    next_sinus = pac_t - run_rr + rr * rng.uniform(1.05, 1.25)
    seq.label(next_sinus, back_aux)
    return next_sinus


def _af_segment(seq: BeatSequence, seg: Segment, t: float, rng: np.random.Generator, hrv: RateModulator) -> float:
    """Irregularly irregular ventricular response with no P waves; f-waves are rendered from an AtrialSpan."""
    start, end = t, t + seg.duration_s
    seq.label(t, "(AFIB")
    while t < end:
        frac = (t - start) / seg.duration_s
        kind = VENTRICULAR if rng.random() < _ramp(seg.pvc_burden, frac) else SINUS
        seq.beat(t, kind, False)
        mean_rr = 60.0 / _ramp(seg.hr_bpm, frac) * hrv(t)
        t += float(np.clip(mean_rr * rng.lognormal(0.0, seg.irregularity), 0.27, 2.5))
    seq.atrial.append(AtrialSpan("af", start, t, seg.fwave_hz, seg.atrial_amp_mv, start))
    return t


def _flutter_segment(seq: BeatSequence, seg: Segment, t: float, rng: np.random.Generator) -> float:
    """QRS complexes locked to every n-th flutter wave (n from ``conduction``: fixed 2:1/3:1/4:1 or variable)."""
    start, end = t, t + seg.duration_s
    cycle_s = 60.0 / seg.atrial_rate_bpm
    seq.label(t, "(AFL")
    while t < end:
        seq.beat(t, SINUS, False)
        t += int(rng.choice(seg.conduction)) * cycle_s
    av_delay_s = rng.uniform(0.18, 0.26)
    seq.atrial.append(AtrialSpan("flutter", start - av_delay_s, t, 1.0 / cycle_s, seg.atrial_amp_mv, start))
    return t


def _vt_segment(seq: BeatSequence, seg: Segment, t: float, rng: np.random.Generator) -> float:
    """Monomorphic VT: regular wide-complex beats at the scripted rate (RR jitter about 2 %)."""
    start, end = t, t + seg.duration_s
    seq.label(t, "(VT")
    while t < end:
        seq.beat(t, VENTRICULAR, False)
        rr = 60.0 / _ramp(seg.hr_bpm, (t - start) / seg.duration_s)
        t += rr * (1.0 + rng.normal(0.0, 0.02))
    return t + 0.3  # post-VT pause before the sinus node recovers


def build_beats(
    segments: list[Segment], t_first_s: float, rng: np.random.Generator, hrv: RateModulator
) -> BeatSequence:
    """Run the script: each segment starts at the time the previous one left for its next beat."""
    seq = BeatSequence()
    t = t_first_s
    for seg in segments:
        seq.segment_starts_s.append(t)
        if seg.rhythm == "sinus":
            t = _sinus_segment(seq, seg, t, rng, hrv)
        elif seg.rhythm == "af":
            t = _af_segment(seq, seg, t, rng, hrv)
        elif seg.rhythm == "flutter":
            t = _flutter_segment(seq, seg, t, rng)
        else:
            t = _vt_segment(seq, seg, t, rng)
    return seq
