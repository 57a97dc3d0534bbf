"""Per-patient waveform ring for drawing: decimated samples with their device times, plus a live heart rate.

The agent's own ring holds full-rate samples for the encoder; this one holds what a screen can show (about
``draw_hz`` samples per second, a few minutes) so pushing strips to many browsers stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.errors import SignalError
from core.measurements import detect_qrs
from core.protocol import WaveChunk

__all__ = ["Strip", "WaveRing", "heart_rate_bpm"]

PREFERRED_LEADS = ("II", "ECG", "ECG1", "I", "V1")
"""Lead used for the live heart rate and beat marks: the usual rhythm lead first."""


@dataclass(frozen=True)
class Strip:
    """A stretch of the ring: ``t`` (n,) device seconds and ``p_signal`` (n, n_sig) mV, NaN where missing."""

    fs: float
    sig_name: tuple[str, ...]
    t: npt.NDArray[np.float64]
    p_signal: npt.NDArray[np.float32]
    end_count: int  # total samples ever written when this strip was cut (a cursor for increments)

    @property
    def rhythm_lead(self) -> int:
        for name in PREFERRED_LEADS:
            if name in self.sig_name:
                return self.sig_name.index(name)
        return 0


FIRST_SLOTS = 256
"""Decimated samples a ring first allocates (about 2 s at 125 Hz); it doubles from there up to its capacity."""


class WaveRing:
    """Ring of decimated samples, at most ``capacity_s`` long; a new ``fs`` or lead set starts it afresh.

    Its arrays grow (doubling) as samples arrive, so a patient that sent one chunk costs a few kilobytes, not the
    whole ``detail_s`` ring. Until it reaches its capacity nothing has wrapped, so sample ``k`` is in slot ``k``.
    """

    def __init__(self, capacity_s: float, draw_hz: float) -> None:
        self._capacity_s = capacity_s
        self._draw_hz = draw_hz
        self.fs = 0.0
        self._source_fs = 0.0
        self.sig_name: tuple[str, ...] = ()
        self._step = 1
        self._skip = 0  # samples of the next chunk to skip to keep the decimation phase across chunks
        self._capacity = 0  # slots once fully grown
        self._t = np.zeros(0)
        self._x = np.zeros((0, 0), dtype=np.float32)
        self.count = 0  # samples written since the last reset

    @property
    def nbytes(self) -> int:
        """Bytes held by the ring's arrays now."""
        return self._t.nbytes + self._x.nbytes

    def _reset(self, chunk: WaveChunk) -> None:
        self._step = max(1, round(chunk.fs / self._draw_hz))
        self._source_fs = chunk.fs
        self.fs = chunk.fs / self._step
        self.sig_name = chunk.leads
        self._capacity = max(1, round(self._capacity_s * self.fs))
        self._t = np.zeros(0)
        self._x = np.zeros((0, len(chunk.leads)), dtype=np.float32)
        self._skip = 0
        self.count = 0

    def _reserve(self, n: int) -> None:
        """Grow the arrays so ``n`` more samples fit without overwriting any, up to the capacity."""
        needed = min(self.count + n, self._capacity)
        if needed <= self._t.size:
            return
        size = min(self._capacity, max(needed, 2 * self._t.size, FIRST_SLOTS))
        t = np.full(size, np.nan)
        x = np.full((size, len(self.sig_name)), np.nan, dtype=np.float32)
        t[: self.count] = self._t[: self.count]  # not wrapped yet: the samples are in slots 0..count-1
        x[: self.count] = self._x[: self.count]
        self._t, self._x = t, x

    def append(self, chunk: WaveChunk) -> None:
        if chunk.leads != self.sig_name or chunk.fs != self._source_fs:
            self._reset(chunk)
        idx = np.arange(self._skip, chunk.n_samples, self._step)
        self._skip = int((idx[-1] + self._step - chunk.n_samples) if idx.size else self._skip - chunk.n_samples)
        if not idx.size:
            return
        t = chunk.t0 + idx / chunk.fs
        x = chunk.samples[:, idx].T  # (n_leads, n) -> (n, n_leads)
        self._reserve(idx.size)
        slots = (self.count + np.arange(idx.size)) % self._t.size
        self._t[slots] = t
        self._x[slots] = x
        self.count += idx.size

    def last(self, seconds: float) -> Strip:
        """The newest ``seconds`` of samples, oldest first."""
        n = min(self.count, self._t.size, round(seconds * self.fs) if self.fs else 0)
        return self._cut(self.count - n)

    def since(self, cursor: int) -> Strip:
        """Samples written after ``cursor`` (an ``end_count``), bounded by what the ring still holds."""
        return self._cut(max(cursor, self.count - self._t.size, 0) if cursor <= self.count else self.count)

    def _cut(self, start: int) -> Strip:
        slots = np.arange(start, self.count) % max(self._t.size, 1)
        return Strip(self.fs, self.sig_name, self._t[slots], self._x[slots], self.count)


def heart_rate_bpm(strip: Strip, min_beats: int = 3) -> tuple[float | None, npt.NDArray[np.float64]]:
    """(mean rate over the strip's detected beats or None, beat times in device seconds) on the rhythm lead."""
    if strip.t.size < strip.fs * 2 or strip.fs < 100:
        return None, np.zeros(0)
    try:
        peaks = detect_qrs(strip.p_signal[:, strip.rhythm_lead].astype(np.float64), strip.fs)
    except SignalError:
        return None, np.zeros(0)
    beats = strip.t[peaks]
    span = float(beats[-1] - beats[0]) if beats.size else 0.0
    if beats.size < min_beats or not np.isfinite(span) or span <= 0:  # forged or jumping device clocks
        return None, beats
    return 60.0 * (beats.size - 1) / span, beats
