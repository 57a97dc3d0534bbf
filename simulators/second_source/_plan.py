"""What happens in one second-source record: rhythm episodes, ectopy intensities and their precursor shape.

Why a plan that differs from ``simulators/_scripts.py``: that script puts onsets at 50-80 % of the record after a
precursor of *linearly* rising PAC burden over 30-90 % of the pre-onset time. Here onsets fall anywhere from 10 %
to 95 % of the record; the precursor is one of four shapes (none, an exponential ramp, a step, or self-exciting
clusters) over the last 2-20 minutes only; AF and flutter may end again (paroxysms); and decoys carry the same
ectopy shapes at random times with no onset at all, so ectopy alone cannot give the onset away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

__all__ = ["KINDS", "EctopyWave", "Episode", "Plan", "draw_plan"]

Kind = Literal["af_onset", "flutter_onset", "vt_onset", "sinus_stable", "ectopy_decoy"]
KINDS: Final[tuple[Kind, ...]] = ("af_onset", "flutter_onset", "vt_onset", "sinus_stable", "ectopy_decoy")
Shape = Literal["none", "ramp", "step", "clusters"]
_SHAPES: Final[tuple[Shape, ...]] = ("none", "ramp", "step", "clusters")
_SHAPE_P: Final = (0.35, 0.25, 0.2, 0.2)
CLUSTER_OFFSPRING: Final = 0.7


@dataclass(frozen=True)
class Episode:
    """A stretch of AF, flutter or VT from ``start_s`` to ``end_s`` (``inf``: to the end of the record)."""

    rhythm: Literal["af", "flutter", "vt"]
    start_s: float
    end_s: float


@dataclass(frozen=True)
class EctopyWave:
    """Extra ectopy of one symbol ("A" or "V") over ``[start_s, end_s)``.

    ``ramp``: ``peak_per_min`` times exp(3 (t - end) / length), a twentyfold rise; ``step``: flat at the peak;
    ``clusters``: a quarter of the peak, but every ectopic beat begets on average :data:`CLUSTER_OFFSPRING` more
    (a self-exciting, Hawkes-like process kept below its critical branching ratio of 1).
    """

    symbol: Literal["A", "V"]
    start_s: float
    end_s: float
    peak_per_min: float
    shape: Shape

    def rate_at(self, t_s: float) -> tuple[float, float]:
        """(intensity in beats/min, expected offspring of an ectopic beat at ``t_s``)."""
        if not self.start_s <= t_s < self.end_s or self.shape == "none":
            return 0.0, 0.0
        if self.shape == "ramp":
            return self.peak_per_min * math.exp(3.0 * (t_s - self.end_s) / (self.end_s - self.start_s)), 0.0
        if self.shape == "step":
            return self.peak_per_min, 0.0
        return 0.25 * self.peak_per_min, CLUSTER_OFFSPRING


@dataclass(frozen=True)
class Plan:
    """Everything random about one record except the beat-level draws (which use their own stream)."""

    kind: Kind
    duration_s: float
    base_hr: float
    pac_per_min: float
    pvc_per_min: float
    waves: tuple[EctopyWave, ...]
    episodes: tuple[Episode, ...]
    precursor: Shape
    precursor_s: float
    exertion: tuple[float, float, float] | None  # (centre s, width s, extra bpm): a decoy rate bump
    af_rate_bpm: float
    fwave_mv: float  # AF fibrillatory-wave RMS; 0 for about a third of patients
    flutter_rate_bpm: float
    flutter_mv: float  # F-wave peak-to-peak
    flutter_block: int  # usual conduction ratio (2, 3 or 4)
    vt_rate_bpm: float


def _onset(rng: np.random.Generator, duration_s: float) -> float:
    return float(np.clip(rng.uniform(0.1, 0.95) * duration_s, 20.0, max(20.0, duration_s - 20.0)))


def _episode(rng: np.random.Generator, kind: Kind, onset_s: float) -> Episode:
    """AF and flutter run to the end or end as a paroxysm; VT is non-sustained (3-30 s) or sustained (30-120 s)."""
    if kind == "vt_onset":
        length = rng.uniform(3.0, 30.0) if rng.random() < 0.6 else rng.uniform(30.0, 120.0)
        return Episode("vt", onset_s, onset_s + length)
    paroxysm = rng.random() < (0.4 if kind == "af_onset" else 0.3)
    end = onset_s + rng.uniform(60.0, 600.0) if paroxysm else math.inf
    return Episode("af" if kind == "af_onset" else "flutter", onset_s, end)


def _wave(
    rng: np.random.Generator, symbol: Literal["A", "V"], start_s: float, end_s: float, shape: Shape
) -> EctopyWave:
    return EctopyWave(symbol, start_s, end_s, float(rng.uniform(2.0, 12.0)), shape)


def draw_plan(rng: np.random.Generator, kind: Kind, duration_s: float) -> Plan:
    """A random plan of ``kind``; every number comes from ``rng``."""
    episodes: tuple[Episode, ...] = ()
    waves: list[EctopyWave] = []
    precursor: Shape = "none"
    precursor_s = 0.0
    if kind in ("af_onset", "flutter_onset", "vt_onset"):
        onset = _onset(rng, duration_s)
        episodes = (_episode(rng, kind, onset),)
        precursor = _SHAPES[int(rng.choice(len(_SHAPES), p=_SHAPE_P))]
        precursor_s = float(min(rng.uniform(120.0, 1200.0), onset - 10.0))
        symbol: Literal["A", "V"] = "V" if kind == "vt_onset" else "A"
        waves.append(_wave(rng, symbol, onset - precursor_s, onset, precursor))
    elif kind == "ectopy_decoy":
        for _ in range(int(rng.integers(1, 4))):
            start = float(rng.uniform(0.0, 0.9) * duration_s)
            length = float(rng.uniform(60.0, 600.0))
            shape = _SHAPES[1 + int(rng.integers(3))]
            for sym in ("A", "V") if rng.random() < 0.3 else (("A",) if rng.random() < 0.6 else ("V",)):
                waves.append(_wave(rng, sym, start, start + length, shape))
    exertion = None
    if kind in ("sinus_stable", "ectopy_decoy") and rng.random() < 0.3:
        exertion = (float(rng.uniform(0.2, 0.8) * duration_s), float(rng.uniform(60, 240)), float(rng.uniform(20, 50)))
    quiet = kind == "sinus_stable"
    return Plan(
        kind=kind,
        duration_s=duration_s,
        base_hr=float(rng.uniform(50, 95)),
        pac_per_min=float(rng.uniform(0.0, 0.2 if quiet else 0.6)),
        pvc_per_min=float(rng.uniform(0.0, 0.1 if quiet else 0.4)),
        waves=tuple(waves),
        episodes=episodes,
        precursor=precursor,
        precursor_s=precursor_s,
        exertion=exertion,
        af_rate_bpm=float(rng.uniform(80, 150)),
        fwave_mv=0.0 if rng.random() < 0.35 else float(rng.uniform(0.01, 0.05)),
        flutter_rate_bpm=float(rng.uniform(240, 340)),
        flutter_mv=float(rng.uniform(0.08, 0.25)),
        flutter_block=int(rng.choice([2, 2, 3, 4])),
        vt_rate_bpm=float(rng.uniform(130, 220)),
    )
