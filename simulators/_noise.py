"""Noise and artifacts at a chosen level, with a label of the stretches no one could read.

Baseline wander, muscle (EMG) noise and mains hum are always-on and leave the signal readable; electrode motion,
lead-off and amplifier saturation are events, and every sample they touch is marked unusable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from core.errors import SignalError

__all__ = ["NOISE_LEVELS", "NoiseLevel", "NoiseProfile", "add_noise", "varied_profile"]

NoiseLevel = Literal["none", "ambient", "low", "medium", "high"]

SATURATION_MV: Final = 5.0  # amplifier rail of the simulated front end


@dataclass(frozen=True)
class NoiseProfile:
    """Amplitudes in mV and artifact-event rates per hour for one noise level."""

    wander_mv: float
    emg_mv: float
    mains_mv: float
    motion_per_h: float
    lead_off_per_h: float
    saturation_per_h: float


NOISE_LEVELS: Final[dict[str, NoiseProfile]] = {
    "none": NoiseProfile(0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    "ambient": NoiseProfile(0.08, 0.01, 0.005, 0.0, 0.0, 0.0),  # "low" without artifact events: realism checks
    "low": NoiseProfile(0.08, 0.01, 0.005, 2.0, 0.5, 0.3),
    "medium": NoiseProfile(0.2, 0.03, 0.02, 6.0, 2.0, 1.0),
    "high": NoiseProfile(0.4, 0.06, 0.05, 20.0, 6.0, 3.0),
}


def varied_profile(level: str, rng: np.random.Generator) -> NoiseProfile:
    """Generator v2: one patient's profile around ``level``: wander 0.5-2.5x, EMG 0.3-3x, mains 0-2x, artifact
    rates 0.3-2x (log-uniform), so records of one nominal level are not all alike. "none" stays silent."""
    if level not in NOISE_LEVELS:
        raise SignalError(f"noise level {level!r} unknown; choose from {sorted(NOISE_LEVELS)}")
    base = NOISE_LEVELS[level]
    scale = np.exp(rng.uniform(np.log([0.5, 0.3, 0.3, 0.3, 0.3]), np.log([2.5, 3.0, 2.0, 2.0, 2.0])))
    return NoiseProfile(
        base.wander_mv * scale[0],
        base.emg_mv * scale[1],
        base.mains_mv * float(rng.uniform(0.0, 2.0)),
        base.motion_per_h * scale[2],
        base.lead_off_per_h * scale[3],
        base.saturation_per_h * scale[4],
    )


def _band_noise(rng: np.random.Generator, n: int, fs: float, low_hz: float, high_hz: float) -> npt.NDArray[np.float64]:
    """Unit-RMS Gaussian noise band-limited to [low_hz, high_hz] (clipped below Nyquist)."""
    from scipy import signal as sps  # imported here: scipy.signal costs ~1 s, and `main.py --help` must stay fast

    high = min(high_hz, 0.45 * fs)
    sos = sps.butter(4, [low_hz, high], btype="bandpass", fs=fs, output="sos")
    noise = sps.sosfilt(sos, rng.normal(size=n))
    rms = float(np.sqrt(np.mean(noise**2))) or 1.0
    return np.asarray(noise / rms)


def _wander(rng: np.random.Generator, t_s: npt.NDArray[np.float64], amp_mv: float) -> npt.NDArray[np.float64]:
    """Respiration-locked plus slow drift components (0.05-0.5 Hz)."""
    freqs = rng.uniform(0.05, 0.5, size=3)
    phases = rng.uniform(0, 2 * np.pi, size=3)
    weights = rng.uniform(0.3, 1.0, size=3)
    return np.asarray(amp_mv * (weights[None, :] * np.sin(2 * np.pi * freqs * t_s[:, None] + phases)).sum(axis=1) / 2)


def _event_spans(
    rng: np.random.Generator, per_h: float, duration_s: float, length_s: tuple[float, float]
) -> list[tuple[float, float]]:
    """Poisson-distributed artifact events, each ``length_s`` long (uniform range)."""
    count = int(rng.poisson(per_h * duration_s / 3600.0))
    starts = np.sort(rng.uniform(0.0, duration_s, size=count))
    return [(float(s), float(s + rng.uniform(*length_s))) for s in starts]


def add_noise(
    p_signal: npt.NDArray[np.float64],
    fs: float,
    level: str,
    rng: np.random.Generator,
    mains_hz: float = 50.0,
    profile: NoiseProfile | None = None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Return (noisy signal, unusable mask). ``p_signal`` is (sig_len, n_sig) in mV and is not modified.
    ``profile`` replaces the level's amplitudes and rates (generator v2's per-patient variation).

    Examples
    --------
    >>> clean = np.zeros((2500, 2))
    >>> noisy, unusable = add_noise(clean, 250.0, "none", np.random.default_rng(0))
    >>> bool(unusable.any()), float(abs(noisy).max())
    (False, 0.0)
    """
    if level not in NOISE_LEVELS:
        raise SignalError(f"noise level {level!r} unknown; choose from {sorted(NOISE_LEVELS)}")
    profile = profile or NOISE_LEVELS[level]
    sig_len, n_sig = p_signal.shape
    out = p_signal.copy()
    unusable = np.zeros(sig_len, dtype=bool)
    if level == "none":
        return out, unusable
    t_s = np.arange(sig_len) / fs
    duration_s = sig_len / fs
    common_wander = _wander(rng, t_s, profile.wander_mv)
    mains_phase = rng.uniform(0, 2 * np.pi)
    for lead in range(n_sig):
        out[:, lead] += common_wander * rng.uniform(0.5, 1.2) + _wander(rng, t_s, 0.3 * profile.wander_mv)
        out[:, lead] += profile.emg_mv * _band_noise(rng, sig_len, fs, 20.0, 150.0)
        out[:, lead] += profile.mains_mv * np.sin(2 * np.pi * mains_hz * t_s + mains_phase)
    events = (
        (_motion, profile.motion_per_h, (1.0, 6.0)),
        (_lead_off, profile.lead_off_per_h, (2.0, 15.0)),
        (_saturation, profile.saturation_per_h, (1.0, 4.0)),
    )
    for apply, per_h, length_s in events:
        for start_s, end_s in _event_spans(rng, per_h, duration_s, length_s):
            part = slice(int(start_s * fs), min(sig_len, int(np.ceil(end_s * fs))))
            if part.stop - part.start >= 8:
                apply(out, part, fs, rng)
                unusable[part] = True
    return out, unusable


def _motion(out: npt.NDArray[np.float64], part: slice, fs: float, rng: np.random.Generator) -> None:
    """Electrode motion: large 0.5-10 Hz bursts (the band of the ECG itself, so no filter can remove them)."""
    n = part.stop - part.start
    envelope = np.hanning(n)
    for lead in range(out.shape[1]):
        out[part, lead] += _band_noise(rng, n, fs, 0.5, 10.0) * rng.uniform(0.4, 1.5) * envelope


def _lead_off(out: npt.NDArray[np.float64], part: slice, fs: float, rng: np.random.Generator) -> None:
    """One lead goes flat (electrode off): a constant near zero plus a trace of amplifier noise."""
    lead = int(rng.integers(out.shape[1]))
    out[part, lead] = 0.002 * rng.normal(size=part.stop - part.start)


def _saturation(out: npt.NDArray[np.float64], part: slice, fs: float, rng: np.random.Generator) -> None:
    """Electrode pop: a step offset decaying over the span drives the amplifier against its rail."""
    n = part.stop - part.start
    offset = rng.choice([-1.0, 1.0]) * rng.uniform(6.0, 12.0) * np.exp(-np.arange(n) / (0.6 * n + 1))
    lead = int(rng.integers(out.shape[1]))
    out[part, lead] = np.clip(out[part, lead] + offset, -SATURATION_MV, SATURATION_MV)
