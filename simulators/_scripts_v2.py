"""Generator v2's scenario scripts: precursors of several kinds not tied to the outcome, decoys that look like them.

Why a v2: in v1 every AF or flutter onset that has a warning has the same one (rising PAC burden), every VT onset
a rising PVC burden, the onset always falls at 50-80 % of the record, and decoys never look like a precursor that
stopped. A model fitted to v1 can learn those regularities and fail on anyone else's data. Here:

- each onset draws its precursor from six kinds (rising PAC burden, atrial runs, heart-rate drift, rising PVC
  burden, mixed, none) with weights that favour, but never force, the physiological one; the precursor lasts
  2-30 min (log-uniform) and its strength is random;
- the onset falls anywhere from 5 % to 95 % of the record, and AF or flutter may end again;
- every patient has a background ectopy level of its own, so ectopy is not itself a marker;
- decoys use the same precursor builders and never convert: a precursor that rises and falls back, one that runs
  to the end of the record, steady ectopy, exertional tachycardia, and stable sinus.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final

import numpy as np

from simulators._beats import Segment
from simulators._scripts import _CONDUCTIONS, RhythmPreset, Script, _sinus_tachy_exertion

__all__ = ["PRECURSOR_KINDS", "RHYTHM_PRESETS_V2", "SCRIPTS_V2"]

PRECURSOR_KINDS: Final[tuple[str, ...]] = ("pac_rise", "atrial_runs", "rate_drift", "pvc_rise", "mixed", "none")
_PRECURSOR_WEIGHTS: Final[dict[str, tuple[float, ...]]] = {
    "AF": (0.25, 0.2, 0.15, 0.1, 0.1, 0.2),
    "AFL": (0.25, 0.2, 0.15, 0.1, 0.1, 0.2),
    "VT": (0.1, 0.05, 0.15, 0.3, 0.15, 0.25),
    "decoy": (0.25, 0.2, 0.15, 0.2, 0.2, 0.0),  # a decoy always shows something
}
"""Precursor kind probabilities (in PRECURSOR_KINDS order) per outcome: likely kinds, never exclusive ones."""
_MIN_LEAD_IN_S: Final = 30.0  # sinus before anything happens: the first window always starts in sinus
_MIN_PRECURSOR_S: Final = 20.0  # shorter than this, a drawn precursor is dropped (recorded as "none")


@dataclass(frozen=True)
class _Patient:
    """What a patient carries through every segment of the script."""

    base_hr: float
    pac0: float  # background PAC burden
    pvc0: float  # background PVC burden
    pac_coupling: tuple[float, float]  # early (P' on the T wave) for about one patient in three

    def sinus(self, duration_s: float, **changes: object) -> Segment:
        base = Segment(
            "sinus",
            duration_s,
            (self.base_hr, self.base_hr),
            pac_burden=(self.pac0, self.pac0),
            pvc_burden=(self.pvc0, self.pvc0),
            pac_coupling=self.pac_coupling,
        )
        return replace(base, **changes)  # type: ignore[arg-type]


def _patient(rng: np.random.Generator) -> _Patient:
    pac0 = float(rng.uniform(0.0, 0.03)) if rng.random() < 0.6 else 0.0
    pvc0 = float(rng.uniform(0.0, 0.02)) if rng.random() < 0.5 else 0.0
    coupling = (0.35, 0.5) if rng.random() < 1 / 3 else (0.55, 0.75)
    return _Patient(float(rng.uniform(50, 100)), pac0, pvc0, coupling)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _draw_kind(rng: np.random.Generator, outcome: str) -> str:
    weights = np.asarray(_PRECURSOR_WEIGHTS[outcome])
    return PRECURSOR_KINDS[int(rng.choice(len(PRECURSOR_KINDS), p=weights / weights.sum()))]


def _precursor(kind: str, p: _Patient, duration_s: float, s: float, rng: np.random.Generator) -> list[Segment]:
    """Segments of one precursor of strength ``s`` in (0, 1], ramping from the patient's baseline."""
    hr = (p.base_hr, p.base_hr)
    if kind == "pac_rise":
        pac = (p.pac0, p.pac0 + s * rng.uniform(0.05, 0.2))
        return [p.sinus(duration_s, pac_burden=pac, atrial_runs_per_min=(0.0, s * rng.uniform(0.0, 0.3)))]
    if kind == "atrial_runs":
        pac = (p.pac0, p.pac0 + s * rng.uniform(0.0, 0.03))
        return [p.sinus(duration_s, pac_burden=pac, atrial_runs_per_min=(0.0, s * rng.uniform(0.5, 2.0)))]
    if kind == "rate_drift":
        sign = 1.0 if rng.random() < 0.8 else -1.0
        end_hr = float(np.clip(p.base_hr + sign * s * rng.uniform(8, 25), 42, 140))
        return [p.sinus(duration_s, hr_bpm=(p.base_hr, end_hr))]
    if kind == "pvc_rise":
        return _pvc_rise(p, duration_s, s, rng)
    if kind == "mixed":
        pac = (p.pac0, p.pac0 + s * rng.uniform(0.03, 0.12))
        pvc = (p.pvc0, p.pvc0 + s * rng.uniform(0.03, 0.12))
        return [p.sinus(duration_s, pac_burden=pac, pvc_burden=pvc, couplet_fraction=s * rng.uniform(0, 0.3))]
    return [p.sinus(duration_s, hr_bpm=hr)]


def _pvc_rise(p: _Patient, duration_s: float, s: float, rng: np.random.Generator) -> list[Segment]:
    """Rising PVC burden with couplets; a strong, long one has a bigeminy episode before its last 30 s."""
    pvc1 = p.pvc0 + s * rng.uniform(0.04, 0.2)
    rising = p.sinus(duration_s, pvc_burden=(p.pvc0, pvc1), couplet_fraction=s * rng.uniform(0.1, 0.4))
    if s <= 0.6 or duration_s <= 150:
        return [rising]
    episode_s = rng.uniform(20.0, 60.0)
    head = replace(rising, duration_s=duration_s - episode_s - 30.0)
    tail = replace(rising, duration_s=30.0, pvc_burden=(pvc1, pvc1))
    return [head, p.sinus(episode_s, pattern="bigeminy"), tail]


def _reversed(segments: list[Segment]) -> list[Segment]:
    """The same stretch played backwards: every ramp runs from its end value back to its start value."""
    return [
        replace(
            seg,
            hr_bpm=seg.hr_bpm[::-1],
            pac_burden=seg.pac_burden[::-1],
            pvc_burden=seg.pvc_burden[::-1],
            atrial_runs_per_min=seg.atrial_runs_per_min[::-1],
        )
        for seg in reversed(segments)
    ]


def _held(segments: list[Segment], duration_s: float) -> Segment:
    """A segment that holds the end state of ``segments`` (rate and burdens where the precursor left them)."""
    last = segments[-1]
    return replace(
        last,
        duration_s=duration_s,
        hr_bpm=(last.hr_bpm[1],) * 2,
        pac_burden=(last.pac_burden[1],) * 2,
        pvc_burden=(last.pvc_burden[1],) * 2,
        atrial_runs_per_min=(last.atrial_runs_per_min[1],) * 2,
        pattern="none",
    )


def _arrhythmia(outcome: str, rng: np.random.Generator, duration_s: float) -> Segment:
    """The target rhythm: AF of any rate and f-wave size, flutter of any conduction, or monomorphic VT."""
    if outcome == "AF":
        rate = rng.uniform(60, 170)
        return Segment(
            "af",
            duration_s,
            (rate, float(np.clip(rate + rng.uniform(-15, 15), 55, 180))),
            pvc_burden=(0.01, 0.01),
            irregularity=rng.uniform(0.1, 0.35),
            fwave_hz=rng.uniform(4.0, 9.0),
            atrial_amp_mv=_log_uniform(rng, 0.01, 0.3),
        )
    if outcome == "AFL":
        conduction = _CONDUCTIONS[int(rng.integers(len(_CONDUCTIONS)))]
        return Segment(
            "flutter",
            duration_s,
            (0.0, 0.0),
            conduction=conduction,
            atrial_rate_bpm=rng.uniform(240, 340),
            atrial_amp_mv=rng.uniform(0.05, 0.3),
        )
    return Segment("vt", duration_s, (rng.uniform(120, 220),) * 2)


def _onset(outcome: str) -> Callable[[np.random.Generator, float], Script]:
    def script(rng: np.random.Generator, duration_s: float) -> Script:
        p = _patient(rng)
        onset_s = max(_MIN_LEAD_IN_S + 1.0, rng.uniform(0.05, 0.95) * duration_s)
        kind, strength = _draw_kind(rng, outcome), float(rng.uniform(0.3, 1.0))
        precursor_s = min(_log_uniform(rng, 120.0, 1800.0), onset_s - _MIN_LEAD_IN_S)
        if kind == "none" or precursor_s < _MIN_PRECURSOR_S:
            kind, precursor_s = "none", 0.0
        before = [p.sinus(onset_s - precursor_s)]
        if precursor_s:
            before += _precursor(kind, p, precursor_s, strength, rng)
        after_s = duration_s - onset_s + 5.0
        if outcome == "VT":
            episode_s = rng.uniform(5.0, 28.0) if rng.random() < 0.5 else rng.uniform(30.0, 180.0)
            episode_s = min(episode_s, max(after_s - 10.0, 5.0))
            after = [_arrhythmia("VT", rng, episode_s), _held(before, after_s - episode_s)]
        elif rng.random() < 0.3:  # paroxysm that ends: back to sinus where the precursor left off
            episode_s = min(rng.uniform(120.0, 1200.0), after_s)
            after = [_arrhythmia(outcome, rng, episode_s), _held(before, max(after_s - episode_s, 5.0))]
        else:
            after = [_arrhythmia(outcome, rng, after_s)]
        meta = {
            "precursor_kind": kind,
            "precursor_strength": strength if precursor_s else 0.0,
            "precursor_duration_s": precursor_s,
            "onset_fraction": onset_s / duration_s,
            "background_pac": p.pac0,
            "background_pvc": p.pvc0,
            "pac_coupling": "early" if p.pac_coupling[0] < 0.5 else "normal",
        }
        return Script([*before, *after], p.base_hr, outcome, len(before), meta)

    return script


def _decoy_precursor(rng: np.random.Generator, duration_s: float, falls_back: bool) -> Script:
    """A precursor that never converts: it rises and falls back to baseline, or runs to the end of the record."""
    p = _patient(rng)
    start_s = rng.uniform(_MIN_LEAD_IN_S, max(0.7 * duration_s, _MIN_LEAD_IN_S + 1.0))
    kind, strength = _draw_kind(rng, "decoy"), float(rng.uniform(0.3, 1.0))
    rise_s = min(_log_uniform(rng, 120.0, 1800.0), duration_s - start_s)
    rise = _precursor(kind, p, max(rise_s, 1.0), strength, rng)
    segments = [p.sinus(start_s), *rise]
    if falls_back:
        segments += [*_reversed(rise), p.sinus(duration_s + 5.0)]
    else:
        segments.append(_held(rise, duration_s + 5.0))
    meta = {
        "decoy_kind": "rise_fall" if falls_back else "no_onset",
        "precursor_kind": kind,
        "precursor_strength": strength,
        "precursor_start_s": start_s,
        "precursor_duration_s": rise_s,
    }
    return Script(segments, p.base_hr, meta=meta)


def _sinus_stable(rng: np.random.Generator, duration_s: float) -> Script:
    """Sinus at 45-110/min with the patient's own background ectopy and a slow drift; nothing happens."""
    p = replace(_patient(rng), base_hr=float(rng.uniform(45, 110)))
    drift = float(p.base_hr + rng.uniform(-8, 8))
    return Script([p.sinus(duration_s + 5.0, hr_bpm=(p.base_hr, drift))], p.base_hr, meta={"decoy_kind": "none"})


def _steady_ectopy(rng: np.random.Generator, duration_s: float) -> Script:
    """Frequent ectopy at a steady level (PAC up to 15 %, PVC up to 12 %, couplets, maybe an episode of bigeminy or
    trigeminy), for the whole record: a lot of what precursors show, with no trend and no onset."""
    p = _patient(rng)
    pac, pvc = float(rng.uniform(0.02, 0.15)), float(rng.uniform(0.0, 0.12))
    steady = p.sinus(
        duration_s + 5.0,
        pac_burden=(pac, pac),
        pvc_burden=(pvc, pvc),
        couplet_fraction=float(rng.uniform(0.0, 0.3)),
        atrial_runs_per_min=(0.2 * pac, 0.2 * pac),
    )
    segments = [steady]
    if rng.random() < 0.4:
        at_s, episode_s = rng.uniform(0.1, 0.8) * duration_s, rng.uniform(20.0, 90.0)
        pattern = "trigeminy" if rng.random() < 0.5 else "bigeminy"
        segments = [replace(steady, duration_s=at_s), p.sinus(episode_s, pattern=pattern), steady]
    meta = {"decoy_kind": "steady_ectopy", "pac_burden": pac, "pvc_burden": pvc}
    return Script(segments, p.base_hr, meta=meta)


SCRIPTS_V2: Final[dict[str, Callable[[np.random.Generator, float], Script]]] = {
    "af_onset": _onset("AF"),
    "flutter_onset": _onset("AFL"),
    "vt_onset": _onset("VT"),
    "sinus_stable": _sinus_stable,
    "steady_ectopy": _steady_ectopy,
    "ectopy_rise_fall": lambda rng, duration_s: _decoy_precursor(rng, duration_s, falls_back=True),
    "precursor_no_onset": lambda rng, duration_s: _decoy_precursor(rng, duration_s, falls_back=False),
    "sinus_tachy_exertion": _sinus_tachy_exertion,
}
"""Scenario name -> v2 script. Three convert; five are decoys or controls that never do."""


def _af(hr_bpm: float, amp_mv: float, irregularity: float = 0.22) -> Segment:
    return Segment("af", 0.0, (hr_bpm, hr_bpm), irregularity=irregularity, atrial_amp_mv=amp_mv)


RHYTHM_PRESETS_V2: Final[dict[str, RhythmPreset]] = {
    "sinus_rbbb": RhythmPreset(Segment("sinus", 0.0, (72.0, 72.0)), 72.0, False, "wide", True, family="rbbb"),
    "sinus_lbbb": RhythmPreset(Segment("sinus", 0.0, (72.0, 72.0)), 72.0, False, "wide", True, family="lbbb"),
    "sinus_low_voltage": RhythmPreset(
        Segment("sinus", 0.0, (72.0, 72.0)), 72.0, False, "narrow", True, family="low_voltage"
    ),
    "af_fine_slow": RhythmPreset(_af(65.0, 0.02), 65.0, True, "narrow", False),
    "af_coarse_fast": RhythmPreset(_af(150.0, 0.25, 0.15), 150.0, True, "narrow", False),
}
"""Fixed strips of what v2 adds (morphology families, AF of other rates and f-wave sizes), for the realism table."""
