"""Beat waveforms from neurokit2's ECGSYN dynamical model (McSharry et al. 2003), one patient at a time.

Why ECGSYN: the second source must not share the project's morphology (Gaussian P/Q/R/S/T dipoles projected on
lead vectors). ECGSYN draws an ECG as the trajectory of a limit-cycle ODE whose z coordinate is pushed by five
Gaussian-weighted attractors in phase. Run at a constant rate (``heart_rate_std=0``) its output is exactly periodic,
so one period is one beat: we cut that period out and use it as the beat's waveform. ECGSYN scales its wave
widths and timings with the rate itself (``hrfact``), so templates are made at the rate they are placed at, on a
geometric grid of rates, and rate-dependent repolarisation comes from ECGSYN, not from us.

Only ``neurokit2.ecg_simulate`` (public) draws the waves. Ectopic and AF-conducted beats are ECGSYN beats with
other attractor parameters (no P term; an inverted early P term; wide Q/R/S and a discordant T).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

import neurokit2 as nk
import numpy as np
import numpy.typing as npt

BeatKind = Literal["normal", "pac", "conducted", "pvc"]
"""normal: sinus beat with P; pac: atrial premature (other P); conducted: no P (AF, flutter); pvc: ventricular."""

_RATE_STEP: Final = 1.06  # geometric grid of template rates: beats are placed within ±3 % of their template's rate
_RATE_MIN: Final = 30.0
_CYCLES: Final = 7  # cycles per ECGSYN run, and at least _SETTLE_S seconds: the ODE starts off its limit cycle
_SETTLE_S: Final = 8.0


Five = tuple[float, float, float, float, float]


@dataclass(frozen=True)
class Morphology:
    """One patient's ECGSYN attractor parameters (P, Q, R, S, T) and amplitudes.

    ``ti`` are phase angles in degrees, ``ai`` attractor strengths, ``bi`` widths in radians, as in ECGSYN.
    """

    ti: Five
    ai: Five
    bi: Five
    gain_mv: float  # peak-to-peak of a sinus beat
    pvc_gain: float  # a PVC's peak-to-peak relative to a sinus beat
    pac_p: float  # PAC P-wave strength relative to the sinus P (negative: inverted, low-atrial focus)
    pvc_sign: float  # +1: PVC main deflection upright in lead II, -1: inverted


def draw_morphology(rng: np.random.Generator) -> Morphology:
    """Random ECGSYN parameters around the published defaults (ti -70,-15,0,15,100; ai 1.2,-5,30,-7.5,0.75)."""
    ti = (rng.uniform(-80, -60), rng.uniform(-18, -12), 0.0, rng.uniform(12, 18), rng.uniform(90, 115))
    ai = (rng.uniform(0.7, 1.6), rng.uniform(-6, -3), rng.uniform(25, 38), rng.uniform(-10, -4), rng.uniform(0.5, 0.9))
    bi = (rng.uniform(0.2, 0.3), rng.uniform(0.09, 0.11), rng.uniform(0.09, 0.11), rng.uniform(0.09, 0.11))
    return Morphology(
        ti=ti,
        ai=ai,
        bi=(*bi, rng.uniform(0.35, 0.45)),
        gain_mv=float(rng.uniform(0.8, 2.0)),
        pvc_gain=float(rng.uniform(1.2, 1.8)),
        pac_p=float(rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 0.8)),
        pvc_sign=float(rng.choice([-1.0, 1.0])),
    )


@dataclass(frozen=True)
class Template:
    """One beat: a full ECGSYN period with its baseline at 0 mV, and the sample of its main QRS deflection."""

    wave: npt.NDArray[np.float64]
    r_index: int


def _params(morph: Morphology, kind: BeatKind) -> tuple[Five, Five, Five]:
    """ECGSYN attractors of a beat kind, derived from the patient's sinus parameters."""
    ti, ai, bi = morph.ti, morph.ai, morph.bi
    if kind == "conducted":
        return ti, (0.0, *ai[1:]), bi
    if kind == "pac":
        return (ti[0] * 0.8, *ti[1:]), (ai[0] * morph.pac_p, *ai[1:]), bi
    if kind == "pvc":  # no P, slurred wide QRS, large discordant T
        s = morph.pvc_sign
        return (
            (ti[0], -35.0, 0.0, 35.0, ti[4] + 15.0),
            (0.0, s * ai[1] * 0.6, s * ai[2] * 0.7, s * ai[3] * 1.6, -s * ai[4] * 2.5),
            (bi[0], 0.22, 0.26, 0.22, bi[4] * 1.2),
        )
    return ti, ai, bi


class TemplateBank:
    """Lazily computed templates of one patient, keyed by beat kind and rate-grid step (a per-patient cache)."""

    def __init__(self, morph: Morphology, fs: float, seed: int) -> None:
        self.morph = morph
        self.fs = fs
        self.seed = seed
        self._beats: dict[tuple[BeatKind, int], Template] = {}

    def beat(self, kind: BeatKind, rr_s: float) -> Template:
        """The template of ``kind`` made at the grid rate nearest to 60 / ``rr_s``.

        Grid rates give a whole number of samples per beat: ECGSYN rounds beat times to its sample grid, so only
        then is its output exactly periodic and one cut period exactly one beat.
        """
        step = max(0, round(math.log(60.0 / max(rr_s, 0.2) / _RATE_MIN) / math.log(_RATE_STEP)))
        period = round(self.fs * 60.0 / (_RATE_MIN * _RATE_STEP**step))
        key = (kind, period)
        if key not in self._beats:
            self._beats[key] = self._make(kind, period)
        return self._beats[key]

    def _make(self, kind: BeatKind, period: int) -> Template:
        ti, ai, bi = _params(self.morph, kind)
        strip = _ecgsyn(self.fs, 60.0 * self.fs / period, self.seed, ti, ai, bi)
        start = strip.size - 2 * period  # one whole period, late in the strip
        last = strip[start : start + period]
        peak = _main_deflection(strip, start, period, self.fs)
        pre = round(0.42 * period)
        cycle = strip[peak - pre : peak - pre + period + 1]
        wave = (cycle - np.linspace(cycle[0], cycle[-1], cycle.size))[:-1]  # both ends at 0 mV: beats join smoothly
        gain = self.morph.gain_mv * (self.morph.pvc_gain if kind == "pvc" else 1.0)
        wave = wave * gain / max(float(np.ptp(last)), 1e-9)
        return Template(wave, pre)

    def flutter_wave(self, period_samples: int, amplitude_mv: float) -> npt.NDArray[np.float64]:
        """One atrial flutter cycle: ECGSYN with only a wide, inverted P attractor, run at the atrial rate.

        ``period_samples`` is whole, so the cycle tiles into an exactly periodic F-wave train.
        """
        rate = 60.0 * self.fs / period_samples
        morph = self.morph
        ti: Five = (morph.ti[0], morph.ti[1], 0.0, morph.ti[3], morph.ti[4])
        ai: Five = (-abs(morph.ai[0]) * 2.0, 0.0, 0.0, 0.0, 0.0)
        bi: Five = (0.9, *morph.bi[1:])
        strip = _ecgsyn(self.fs, rate, self.seed, ti, ai, bi)
        cycle = strip[strip.size - 2 * period_samples : strip.size - period_samples]
        cycle = cycle - cycle.mean()
        return np.asarray(cycle * amplitude_mv / max(float(np.ptp(cycle)), 1e-9), dtype=np.float64)


def _ecgsyn(fs: float, rate_bpm: float, seed: int, ti: Five, ai: Five, bi: Five) -> npt.NDArray[np.float64]:
    """A noise-free, constant-rate ECGSYN strip (neurokit2's public ``ecg_simulate``), its settling start removed."""
    duration = max(_CYCLES * 60.0 / rate_bpm, _SETTLE_S)
    strip = nk.ecg_simulate(
        duration=duration,
        sampling_rate=round(fs),
        noise=0.0,
        heart_rate=rate_bpm,
        heart_rate_std=0.0,
        method="ecgsyn",
        random_state=seed,
        ti=ti,
        ai=ai,
        bi=bi,
    )
    strip = np.asarray(strip, dtype=np.float64)
    return strip[strip.size // 3 :]  # drop the start: the ODE begins off its limit cycle, at the R phase


def _main_deflection(strip: npt.NDArray[np.float64], start: int, period: int, fs: float) -> int:
    """Index in ``strip`` of the QRS's largest |deflection| for the period from ``start``: found near the steepest
    slope of that period (a QRS, never a wider T wave), then climbed to the local extremum it lies on, since a wide
    ventricular complex can peak more than 40 ms from its steepest slope (or in the neighbouring period)."""
    level = np.abs(strip - np.median(strip[start : start + period]))
    centre = start + int(np.argmax(np.abs(np.gradient(strip[start : start + period]))))
    half = round(0.04 * fs)
    i = centre - half + int(np.argmax(level[centre - half : centre + half + 1]))
    while 0 < i < strip.size - 1 and max(level[i - 1], level[i + 1]) > level[i]:
        i = i - 1 if level[i - 1] > level[i + 1] else i + 1
    return i
