"""Beat times and symbols of one second-source record, from its :class:`Plan`.

The RR models are chosen to differ from the project's generator (respiratory + Mayer + drift sinus, i.i.d.
log-normal AF, fixed or cycling flutter conduction):

- **Sinus**: integral pulse-frequency modulation (IPFM). The sinus node fires whenever the integral of its rate
  reaches the next whole number; the rate is the plan's mean rate, a slow Ornstein-Uhlenbeck wander, an exertion
  bump for some decoys, times (1 + m(t)) where m is 1/f noise plus a respiratory term whose frequency random-walks.
- **Ectopy**: per sinus cycle, a PAC or PVC with probability 1 - exp(-lambda RR) where lambda is the plan's
  baseline plus its ectopy waves plus a self-exciting (Hawkes) term, so ectopy comes in clusters. A PAC resets the
  sinus node; a PVC blocks the next sinus discharge (compensatory pause).
- **AF**: a two-state Markov-switching gamma model (a fast and a slow AV-conduction mode with sticky switches,
  gamma-distributed RR within each), times a slow multiplicative Ornstein-Uhlenbeck drift.
- **Flutter**: an exactly periodic F-wave train; each conducted beat skips 2, 3 or 4 F waves, the ratio following a
  sticky Markov chain around the patient's usual ratio.
- **VT**: an AR(1) RR jitter (1-2 %) around the VT rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from simulators.second_source._plan import Episode, Plan
from simulators.second_source._templates import BeatKind

__all__ = ["Beat", "Sequence", "sequence_beats"]

_GRID_S: Final = 0.1  # IPFM integration step
_REFRACTORY_S: Final = 0.25
_AUX: Final = {"af": "(AFIB", "flutter": "(AFL", "vt": "(VT"}


@dataclass(frozen=True)
class Beat:
    """One beat: time of its main QRS deflection, MIT-BIH symbol, template kind and the RR its template is made at."""

    time_s: float
    symbol: str
    kind: BeatKind
    rr_s: float


@dataclass
class Sequence:
    """The beats, rhythm changes ``(time_s, aux)`` at the first beat of each rhythm, and atrial-activity spans."""

    beats: list[Beat] = field(default_factory=list)
    changes: list[tuple[float, str]] = field(default_factory=list)
    fibrillation: list[tuple[float, float]] = field(default_factory=list)  # AF spans (s) for f-waves
    flutter: list[tuple[float, float, float]] = field(default_factory=list)  # (first F wave s, end s, period s)
    onsets: dict[str, float] = field(default_factory=dict)

    @property
    def last(self) -> float:
        return self.beats[-1].time_s if self.beats else -math.inf


def _pink(rng: np.random.Generator, n: int, dt: float) -> npt.NDArray[np.float64]:
    """Unit-variance 1/f noise above 0.003 Hz (FFT shaping of white noise)."""
    freqs = np.fft.rfftfreq(n, dt)
    shape = np.where(freqs > 0.003, 1.0 / np.sqrt(np.maximum(freqs, 1e-9)), 0.0)
    x = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * shape, n)
    return np.asarray(x / max(float(x.std()), 1e-12), dtype=np.float64)


def _ou(rng: np.random.Generator, n: int, dt: float, tau_s: float) -> npt.NDArray[np.float64]:
    """Unit-variance Ornstein-Uhlenbeck path with time constant ``tau_s``."""
    a = math.exp(-dt / tau_s)
    steps = rng.standard_normal(n) * math.sqrt(1.0 - a * a)
    out = np.empty(n)
    level = rng.standard_normal()
    for i in range(n):
        level = a * level + steps[i]
        out[i] = level
    return out


def _sinus_phase(plan: Plan, rng: np.random.Generator) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(time grid, IPFM phase in beats) of the sinus node over the record plus a margin."""
    t = np.arange(0.0, plan.duration_s + 30.0, _GRID_S)
    hr = plan.base_hr + rng.uniform(2.0, 6.0) * _ou(rng, t.size, _GRID_S, float(rng.uniform(60.0, 300.0)))
    if plan.exertion is not None:
        centre, width, extra = plan.exertion
        hr = hr + extra * np.exp(-0.5 * ((t - centre) / width) ** 2)
    resp_hz = np.clip(0.25 + 0.03 * np.cumsum(rng.standard_normal(t.size)) * math.sqrt(_GRID_S / 60.0), 0.15, 0.4)
    resp = np.sin(2 * np.pi * np.cumsum(resp_hz) * _GRID_S)
    modulation = rng.uniform(0.01, 0.035) * _pink(rng, t.size, _GRID_S) + rng.uniform(0.01, 0.04) * resp
    rate = np.clip(hr, 35.0, 200.0) / 60.0 * np.clip(1.0 + modulation, 0.7, 1.3)
    return t, np.cumsum(rate) * _GRID_S


class _Sequencer:
    """Walks a record beat by beat; one instance per record, holding only that record's state."""

    def __init__(self, plan: Plan, rng: np.random.Generator, fs: float) -> None:
        self.plan = plan
        self.fs = fs
        self.rng = rng
        self.grid, self.phase = _sinus_phase(plan, rng)
        self.out = Sequence(changes=[(0.0, "(N")])
        self.excitation = {"A": 0.0, "V": 0.0}
        self.decay_s = float(rng.uniform(10.0, 40.0))

    def next_sinus(self, t_s: float) -> float:
        """When the sinus node fires next after firing (or being reset) at ``t_s``."""
        return float(np.interp(np.interp(t_s, self.grid, self.phase) + 1.0, self.phase, self.grid))

    def add(self, t_s: float, symbol: str, kind: BeatKind, rr_s: float) -> None:
        self.out.beats.append(Beat(t_s, symbol, kind, rr_s))

    def mark(self, t_s: float, aux: str) -> None:
        if self.out.changes[-1][1] != aux:
            self.out.changes.append((t_s, aux))

    def intensity(self, symbol: str, t_s: float, rr_s: float) -> tuple[float, float]:
        """(probability of an ectopic beat of ``symbol`` in this cycle, the excitation (beats/min) it would add).

        The excitation decays with ``decay_s``; a jump of offspring * 60 / decay_s beats/min makes each ectopic
        beat beget ``offspring`` more on average (Hawkes).
        """
        base = self.plan.pac_per_min if symbol == "A" else self.plan.pvc_per_min
        rate, offspring = base, 0.0
        for wave in self.plan.waves:
            if wave.symbol == symbol:
                r, o = wave.rate_at(t_s)
                rate, offspring = rate + r, max(offspring, o)
        self.excitation[symbol] *= math.exp(-rr_s / self.decay_s)
        rate += self.excitation[symbol]
        return 1.0 - math.exp(-rate * rr_s / 60.0), offspring * 60.0 / self.decay_s

    def run(self) -> Sequence:
        duration = self.plan.duration_s
        episodes = sorted(self.plan.episodes, key=lambda e: e.start_s)
        t_next = float(self.rng.uniform(0.2, 0.9))
        while t_next < duration:
            if episodes and t_next >= episodes[0].start_s:
                t_next = self.episode(episodes.pop(0))
                continue
            t_next = self.sinus_cycle(t_next)
        return self.out

    def sinus_cycle(self, t_sched: float) -> float:
        """One sinus cycle ending at the scheduled discharge ``t_sched``: a normal beat, a PAC or a PVC before it."""
        if not self.out.beats:
            self.add(t_sched, "N", "normal", 60.0 / self.plan.base_hr)
            return self.next_sinus(t_sched)
        rr = t_sched - self.out.last
        p_pac, jump_a = self.intensity("A", t_sched, rr)
        p_pvc, jump_v = self.intensity("V", t_sched, rr)
        if [b.symbol for b in self.out.beats[-2:]] == ["V", "V"]:
            p_pvc = 0.0  # three ventricular beats in a row would be VT, which only episodes make
        u = self.rng.random()
        if u < p_pvc:
            t_pvc = self.out.last + max(_REFRACTORY_S, rr * self.rng.uniform(0.5, 0.75))
            self.mark(t_pvc, "(N")
            self.add(t_pvc, "V", "pvc", rr)
            self.excitation["V"] += jump_v
            return self.next_sinus(t_sched)  # the discharge at t_sched is blocked: compensatory pause
        if u < p_pvc + p_pac:
            t_pac = self.out.last + max(_REFRACTORY_S, rr * self.rng.uniform(0.55, 0.8))
            self.mark(t_pac, "(N")
            self.add(t_pac, "A", "pac", t_pac - self.out.last)
            self.excitation["A"] += jump_a
            return self.next_sinus(t_pac)  # a PAC resets the sinus node
        self.mark(t_sched, "(N")
        self.add(t_sched, "N", "normal", rr)
        return self.next_sinus(t_sched)

    def episode(self, ep: Episode) -> float:
        """Beats of one AF, flutter or VT episode; returns when the sinus node fires again afterwards."""
        end = min(ep.end_s, self.plan.duration_s)
        first = len(self.out.beats)
        if ep.rhythm == "af":
            self.af(ep.start_s, end)
        elif ep.rhythm == "flutter":
            self.flutter(ep.start_s, end)
        else:
            self.vt(ep.start_s, end)
        if len(self.out.beats) == first:
            return self.out.last + 0.5
        onset = self.out.beats[first].time_s
        self.out.changes.append((onset, _AUX[ep.rhythm]))
        self.out.onsets.setdefault({"af": "AF", "flutter": "AFL", "vt": "VT"}[ep.rhythm], onset)
        sinus_rr = 60.0 / self.plan.base_hr
        return self.out.last + sinus_rr * self.rng.uniform(1.1, 1.6)  # sinus-node recovery pause

    def af(self, start: float, end: float) -> None:
        mean_rr = 60.0 / self.plan.af_rate_bpm
        modes = (mean_rr * 0.9, mean_rr * self.rng.uniform(1.1, 1.4))
        stay = self.rng.uniform(0.7, 0.95)
        shape = self.rng.uniform(10.0, 25.0)  # gamma CV 0.2-0.32 within a mode
        drift, a = 0.0, math.exp(-1.0 / 60.0)
        mode = 0
        t = max(start, self.out.last + _REFRACTORY_S)
        span_start = t - 0.2
        while t < end:
            self.add(t, "V" if self.rng.random() < 0.01 else "N", "conducted", mean_rr)
            if self.out.beats[-1].symbol == "V":
                self.out.beats[-1] = Beat(t, "V", "pvc", mean_rr)
            mode = mode if self.rng.random() < stay else 1 - mode
            drift = a * drift + math.sqrt(1 - a * a) * self.rng.standard_normal()
            rr = self.rng.gamma(shape, modes[mode] / shape) * math.exp(0.08 * drift)
            t += max(rr, 0.28)
        self.out.fibrillation.append((span_start, self.out.last + 0.3))

    def flutter(self, start: float, end: float) -> None:
        fs_period = round(self.fs * 60.0 / self.plan.flutter_rate_bpm) / self.fs  # whole samples: F waves tile
        av_delay = self.rng.uniform(0.12, 0.26)
        f0 = round(max(start, self.out.last + 0.1) * self.fs) / self.fs
        usual, stay = self.plan.flutter_block, self.rng.uniform(0.8, 1.0)
        j = 1
        while f0 + j * fs_period + av_delay < self.out.last + 0.3:
            j += 1
        ratio = usual
        while (t := f0 + j * fs_period + av_delay) < end:
            self.add(t, "N", "conducted", ratio * fs_period)
            ratio = usual if self.rng.random() < stay else int(self.rng.choice([2, 3, 4]))
            j += ratio
        self.out.flutter.append((f0, self.out.last + 0.5, fs_period))

    def vt(self, start: float, end: float) -> None:
        rr0 = 60.0 / self.plan.vt_rate_bpm
        sigma, jitter = self.rng.uniform(0.01, 0.02), 0.0
        t = max(start, self.out.last + max(_REFRACTORY_S, 0.6 * (self.out.beats[-1].rr_s if self.out.beats else 1)))
        n = 0
        while (t < end or n < 3) and t < self.plan.duration_s:  # VT is three or more ventricular beats
            self.add(t, "V", "pvc", rr0)
            n += 1
            jitter = 0.7 * jitter + sigma * self.rng.standard_normal()
            t += rr0 * (1.0 + jitter)


def sequence_beats(plan: Plan, rng: np.random.Generator, fs: float) -> Sequence:
    """All beats of a record from its plan, with ``rng`` as the only source of randomness (``fs`` quantises the
    flutter cycle to whole samples)."""
    return _Sequencer(plan, rng, fs).run()
