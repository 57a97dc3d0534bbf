"""Scenario scripts: one patient's minutes to hours as a list of segments, randomised from a seed.

Precursors follow what is reported before paroxysmal AF onset (rising PAC burden, short atrial runs, a modest
rate rise) and before VT (rising PVC burden, couplets, bigeminy). Their strength is drawn per patient and is zero
for about one patient in five, so onsets without warning exist and forecasting is learnable but not trivial.
Decoys (ectopy that leads nowhere, exertional sinus tachycardia) keep "ectopy" from meaning "onset".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

import numpy as np

from simulators._beats import Segment

__all__ = ["RHYTHM_PRESETS", "SCRIPTS", "RhythmPreset", "Script"]


@dataclass(frozen=True)
class Script:
    """Segments plus which segment (if any) is the scripted onset of which arrhythmia ("AF", "AFL", "VT")."""

    segments: list[Segment]
    base_hr_bpm: float
    onset_kind: str | None = None
    onset_segment: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def onset_s(self) -> float | None:
        """Scripted second of the onset (the start of its segment); None for a script without one. The rendered
        record's labelled onset falls on the first beat at or after it."""
        if self.onset_segment is None:
            return None
        return float(sum(seg.duration_s for seg in self.segments[: self.onset_segment]))


def _precursor(rng: np.random.Generator) -> float:
    """Precursor strength in [0, 1]; exactly 0 (no warning at all) with probability 0.2."""
    return 0.0 if rng.random() < 0.2 else float(rng.uniform(0.2, 1.0))


def _onset_split(rng: np.random.Generator, duration_s: float) -> tuple[float, float, float]:
    """(quiet baseline, precursor, after-onset) durations: onset at 50-80 % of the record."""
    onset_s = rng.uniform(0.5, 0.8) * duration_s
    precursor_s = min(onset_s * rng.uniform(0.3, 0.9), 1800.0)
    return onset_s - precursor_s, precursor_s, duration_s - onset_s


def _atrial_onset(rng: np.random.Generator, duration_s: float, target: Segment, kind: str) -> Script:
    """Sinus, then a precursor of rising PAC burden and atrial runs, then AF or flutter from a known time."""
    base_hr = rng.uniform(58, 88)
    strength = _precursor(rng)
    quiet_s, precursor_s, after_s = _onset_split(rng, duration_s)
    pac0 = rng.uniform(0.0, 0.01)
    pac1 = pac0 + strength * rng.uniform(0.06, 0.2)
    hr1 = base_hr + strength * rng.uniform(0.0, 10.0)
    segments = [
        Segment("sinus", quiet_s, (base_hr, base_hr), pac_burden=(pac0, pac0)),
        Segment(
            "sinus",
            precursor_s,
            (base_hr, hr1),
            pac_burden=(pac0, pac1),
            atrial_runs_per_min=(0.0, strength * rng.uniform(0.2, 1.0)),
        ),
        replace(target, duration_s=after_s + 5.0),
    ]
    meta = {"precursor_strength": strength, "precursor_duration_s": precursor_s, "pac_burden_end": pac1}
    return Script(segments, base_hr, kind, 2, meta)


def _af_onset(rng: np.random.Generator, duration_s: float) -> Script:
    af = Segment(
        "af",
        0.0,
        (rng.uniform(85, 140), rng.uniform(85, 140)),
        pvc_burden=(0.01, 0.01),
        irregularity=rng.uniform(0.15, 0.3),
        fwave_hz=rng.uniform(4.5, 8.5),
        atrial_amp_mv=rng.uniform(0.04, 0.15),
    )
    return _atrial_onset(rng, duration_s, af, "AF")


_CONDUCTIONS: Final[tuple[tuple[int, ...], ...]] = ((2,), (3,), (4,), (2, 4), (2, 3, 4))


def _flutter_onset(rng: np.random.Generator, duration_s: float) -> Script:
    conduction = _CONDUCTIONS[int(rng.integers(len(_CONDUCTIONS)))]
    flutter = Segment(
        "flutter",
        0.0,
        (0.0, 0.0),
        conduction=conduction,
        atrial_rate_bpm=rng.uniform(250, 350),
        atrial_amp_mv=rng.uniform(0.1, 0.25),
    )
    script = _atrial_onset(rng, duration_s, flutter, "AFL")
    script.meta["conduction"] = ":".join(str(c) for c in conduction)
    script.meta["atrial_rate_bpm"] = flutter.atrial_rate_bpm
    return script


def _vt_onset(rng: np.random.Generator, duration_s: float) -> Script:
    """Sinus, rising PVC burden with couplets (and a bigeminy episode when the precursor is strong), then VT."""
    base_hr = rng.uniform(58, 90)
    strength = _precursor(rng)
    quiet_s, precursor_s, after_s = _onset_split(rng, duration_s)
    pvc0 = rng.uniform(0.0, 0.01)
    pvc1 = pvc0 + strength * rng.uniform(0.05, 0.2)
    couplets = strength * rng.uniform(0.1, 0.4)
    vt_s = rng.uniform(5.0, 28.0) if rng.random() < 0.5 else rng.uniform(30.0, 180.0)
    vt_s = min(vt_s, max(after_s - 10.0, 5.0))
    rising = Segment("sinus", precursor_s, (base_hr, base_hr), pvc_burden=(pvc0, pvc1), couplet_fraction=couplets)
    precursor = [rising]
    if strength > 0.6 and precursor_s > 120:
        bigeminy_s = rng.uniform(20.0, 60.0)
        head = replace(rising, duration_s=precursor_s - bigeminy_s - 30.0)
        tail = replace(rising, duration_s=30.0, pvc_burden=(pvc1, pvc1))
        precursor = [head, Segment("sinus", bigeminy_s, (base_hr, base_hr), pattern="bigeminy"), tail]
    segments = [
        Segment("sinus", quiet_s, (base_hr, base_hr), pvc_burden=(pvc0, pvc0)),
        *precursor,
        Segment("vt", vt_s, (rng.uniform(140, 210),) * 2),
        Segment("sinus", after_s - vt_s + 5.0, (base_hr, base_hr), pvc_burden=(pvc1, pvc1), couplet_fraction=couplets),
    ]
    meta = {"precursor_strength": strength, "precursor_duration_s": precursor_s, "vt_duration_s": vt_s}
    return Script(segments, base_hr, "VT", len(segments) - 2, meta)


def _sinus_stable(rng: np.random.Generator, duration_s: float) -> Script:
    """Sinus that stays sinus, at a rate that may be bradycardic, with at most a trace of ectopy."""
    base_hr = rng.uniform(48, 95)
    drift = base_hr + rng.uniform(-5, 5)
    segment = Segment("sinus", duration_s + 5.0, (base_hr, drift), pac_burden=(0.002, 0.002))
    return Script([segment], base_hr)


def _sinus_ectopy(rng: np.random.Generator, duration_s: float) -> Script:
    """A decoy: PAC/PVC burdens that wander and may rise, couplets, runs, maybe trigeminy; never an onset."""
    base_hr = rng.uniform(55, 95)
    n_parts = 4
    pac = rng.uniform(0.0, 0.15, size=n_parts + 1)
    pvc = rng.uniform(0.0, 0.12, size=n_parts + 1)
    runs = rng.uniform(0.0, 0.5, size=n_parts + 1)
    segments = [
        Segment(
            "sinus",
            duration_s / n_parts + (5.0 if i == n_parts - 1 else 0.0),
            (base_hr, base_hr),
            pac_burden=(pac[i], pac[i + 1]),
            pvc_burden=(pvc[i], pvc[i + 1]),
            couplet_fraction=float(rng.uniform(0.0, 0.3)),
            atrial_runs_per_min=(runs[i], runs[i + 1]),
        )
        for i in range(n_parts)
    ]
    if rng.random() < 0.5:
        pattern: Literal["bigeminy", "trigeminy"] = "trigeminy" if rng.random() < 0.5 else "bigeminy"
        episode = min(duration_s / n_parts, rng.uniform(20.0, 90.0))
        first = segments[1]
        segments[1:2] = [
            replace(first, duration_s=first.duration_s - episode),
            Segment("sinus", episode, (base_hr, base_hr), pattern=pattern),
        ]
    return Script(segments, base_hr, meta={"pac_burden_max": float(pac.max()), "pvc_burden_max": float(pvc.max())})


def _sinus_tachy_exertion(rng: np.random.Generator, duration_s: float) -> Script:
    """A decoy: exertion drives sinus tachycardia (110-150/min) and recovery, with no arrhythmia."""
    base_hr = rng.uniform(60, 85)
    peak_hr = rng.uniform(110, 150)
    parts = rng.dirichlet([2.0, 2.0, 2.0, 3.0, 2.0]) * duration_s
    segments = [
        Segment("sinus", parts[0], (base_hr, base_hr)),
        Segment("sinus", parts[1], (base_hr, peak_hr)),
        Segment("sinus", parts[2], (peak_hr, peak_hr), pac_burden=(0.005, 0.005)),
        Segment("sinus", parts[3], (peak_hr, base_hr + 8.0)),
        Segment("sinus", parts[4] + 5.0, (base_hr + 8.0, base_hr)),
    ]
    return Script(segments, base_hr, meta={"peak_hr_bpm": peak_hr})


SCRIPTS: Final[dict[str, Callable[[np.random.Generator, float], Script]]] = {
    "af_onset": _af_onset,
    "flutter_onset": _flutter_onset,
    "vt_onset": _vt_onset,
    "sinus_stable": _sinus_stable,
    "sinus_ectopy": _sinus_ectopy,
    "sinus_tachy_exertion": _sinus_tachy_exertion,
}


@dataclass(frozen=True)
class RhythmPreset:
    """A single-rhythm strip with the values the realism check expects to measure back."""

    segment: Segment
    hr_bpm: float  # expected ventricular rate
    irregular: bool  # irregularly irregular RR (AF) or ectopy-driven irregularity
    qrs: Literal["narrow", "wide", "mixed"]  # wide: ventricular origin (QRS >= 120 ms); mixed: bigeminy
    p_waves: bool | None  # discrete P waves before (most) QRS complexes; None: not checked (flutter, bigeminy)
    family: str | None = None  # generator v2 morphology family (simulators._families); None: v1's morphology


RHYTHM_PRESETS: Final[dict[str, RhythmPreset]] = {
    "sinus": RhythmPreset(Segment("sinus", 0.0, (72.0, 72.0)), 72.0, False, "narrow", True),
    "sinus_brady": RhythmPreset(Segment("sinus", 0.0, (50.0, 50.0)), 50.0, False, "narrow", True),
    "sinus_tachy": RhythmPreset(Segment("sinus", 0.0, (125.0, 125.0)), 125.0, False, "narrow", True),
    "sinus_pac": RhythmPreset(Segment("sinus", 0.0, (72.0, 72.0), pac_burden=(0.15, 0.15)), 72.0, True, "narrow", True),
    "bigeminy": RhythmPreset(Segment("sinus", 0.0, (70.0, 70.0), pattern="bigeminy"), 70.0, True, "mixed", None),
    "af": RhythmPreset(
        Segment("af", 0.0, (110.0, 110.0), irregularity=0.22, atrial_amp_mv=0.1), 110.0, True, "narrow", False
    ),
    "flutter_2to1": RhythmPreset(Segment("flutter", 0.0, (0, 0), conduction=(2,)), 150.0, False, "narrow", None),
    "flutter_4to1": RhythmPreset(Segment("flutter", 0.0, (0, 0), conduction=(4,)), 75.0, False, "narrow", None),
    "vt": RhythmPreset(Segment("vt", 0.0, (170.0, 170.0)), 170.0, False, "wide", False),
}
"""Fixed (not randomised) rhythm strips: the realism table and the rhythm plot use these."""
